// sentence_transformers.models.Pooling: the encoder's token vectors [batch, seq, d_model] to one vector per text,
// over the tokens the attention mask keeps. The modes and their order are sentence-transformers': cls, max, mean,
// mean_sqrt_len, weightedmean, lasttoken; several modes at once are concatenated in that order.
using System.Text.Json;
using ManagedT5.IO;

namespace ManagedT5.Embeddings;

/// <summary>1_Pooling/config.json: which poolings run (their outputs are concatenated in this order).</summary>
public sealed record PoolingConfig
{
    /// <summary>File name of the config in the module's folder.</summary>
    public const string FileName = "config.json";

    /// <summary>word_embedding_dimension: the width of the token vectors (T5's d_model).</summary>
    public int WordEmbeddingDimension { get; init; }
    /// <summary>pooling_mode_cls_token: the first token's vector (T5 has no CLS; this is the first word piece).</summary>
    public bool ClsToken { get; init; }
    /// <summary>pooling_mode_max_tokens: per dimension, the largest value over the kept tokens.</summary>
    public bool MaxTokens { get; init; }
    /// <summary>pooling_mode_mean_tokens: the mean over the kept tokens.</summary>
    public bool MeanTokens { get; init; }
    /// <summary>pooling_mode_mean_sqrt_len_tokens: the sum over the kept tokens divided by sqrt(their count).</summary>
    public bool MeanSqrtLenTokens { get; init; }
    /// <summary>pooling_mode_weightedmean_tokens: the mean weighted by position (1, 2, ..., seq).</summary>
    public bool WeightedMeanTokens { get; init; }
    /// <summary>pooling_mode_lasttoken: the last kept token's vector (&lt;/s&gt; for T5).</summary>
    public bool LastToken { get; init; }

    /// <summary>How many poolings are concatenated.</summary>
    public int ModeCount => (ClsToken ? 1 : 0) + (MaxTokens ? 1 : 0) + (MeanTokens ? 1 : 0) + (MeanSqrtLenTokens ? 1 : 0) +
                            (WeightedMeanTokens ? 1 : 0) + (LastToken ? 1 : 0);

    /// <summary>Width of the pooled vector: word_embedding_dimension x the modes.</summary>
    public int OutputDimension => WordEmbeddingDimension * ModeCount;

    /// <summary>Mean pooling over <paramref name="dModel"/>-wide tokens: what a plain T5 folder gets.</summary>
    public static PoolingConfig Mean(int dModel) => new() { WordEmbeddingDimension = dModel, MeanTokens = true };

    private static readonly string[] s_modeKeys =
    [
        "pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_tokens", "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken",
    ];

    /// <summary>Reads <c>folder/config.json</c> as sentence-transformers writes it (the boolean pooling_mode_* keys,
    /// or a "pooling_mode" string such as "mean").</summary>
    /// <exception cref="ModelLoadException">A missing file, a non-boolean mode, an unknown mode switched on, or no mode.</exception>
    public static PoolingConfig Load(string folder)
    {
        string path = Path.Combine(folder, FileName);
        using JsonDocument doc = SentenceTransformerFolder.ReadJson(path);
        JsonElement root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
            throw new ModelLoadException($"'{path}' must be a JSON object with word_embedding_dimension and pooling_mode_* keys.", path);
        if (!root.TryGetProperty("word_embedding_dimension", out JsonElement dim) || !dim.TryGetInt32(out int width) || width < 1)
            throw new ModelLoadException($"'{path}': word_embedding_dimension must be a positive whole number (the model's d_model).", path);
        var modes = new Dictionary<string, bool>(StringComparer.Ordinal);
        foreach (JsonProperty p in root.EnumerateObject())
        {
            if (!p.Name.StartsWith("pooling_mode", StringComparison.Ordinal) || p.Name == "pooling_mode") continue;
            if (p.Value.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                throw new ModelLoadException($"'{path}': {p.Name} is {p.Value.GetRawText()}; it must be true or false.", path);
            if (!s_modeKeys.Contains(p.Name) && p.Value.ValueKind == JsonValueKind.True)
                throw new ModelLoadException($"'{path}': {p.Name} is not a pooling ManagedT5 knows; use one of {string.Join(", ", s_modeKeys)}.", path);
            modes[p.Name] = p.Value.ValueKind == JsonValueKind.True;
        }
        if (root.TryGetProperty("pooling_mode", out JsonElement named) && named.ValueKind == JsonValueKind.String)
        {
            string key = named.GetString() switch
            {
                "cls" => s_modeKeys[0], "max" => s_modeKeys[1], "mean" => s_modeKeys[2], "mean_sqrt_len_tokens" => s_modeKeys[3],
                "weightedmean" => s_modeKeys[4], "lasttoken" => s_modeKeys[5],
                var other => throw new ModelLoadException(
                    $"'{path}': pooling_mode {InputFile.Escaped(other ?? "")} is not one of cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken.", path),
            };
            modes[key] = true;
        }
        var config = new PoolingConfig
        {
            WordEmbeddingDimension = width,
            ClsToken = modes.GetValueOrDefault(s_modeKeys[0]),
            MaxTokens = modes.GetValueOrDefault(s_modeKeys[1]),
            MeanTokens = modes.GetValueOrDefault(s_modeKeys[2]),
            MeanSqrtLenTokens = modes.GetValueOrDefault(s_modeKeys[3]),
            WeightedMeanTokens = modes.GetValueOrDefault(s_modeKeys[4]),
            LastToken = modes.GetValueOrDefault(s_modeKeys[5]),
        };
        if (config.ModeCount == 0)
            throw new ModelLoadException($"'{path}' switches no pooling on; set one of {string.Join(", ", s_modeKeys)} to true.", path);
        return config;
    }
}

/// <summary>The pooling computation, on the host.</summary>
public static class Pooling
{
    /// <summary>
    /// Pools one batch: <paramref name="hidden"/> [batch, seq, d] and <paramref name="mask"/> [batch, seq] (1 keep, 0
    /// padding; every row keeps at least one token, right-padded) into <paramref name="output"/> [batch,
    /// config.OutputDimension]. Sums are taken in float in token order, as torch does for these sizes.
    /// </summary>
    public static void Pool(PoolingConfig config, ReadOnlySpan<float> hidden, ReadOnlySpan<int> mask, int batch, int seq, Span<float> output)
    {
        int d = config.WordEmbeddingDimension, outDim = config.OutputDimension;
        if (hidden.Length != (long)batch * seq * d || mask.Length != (long)batch * seq || output.Length != (long)batch * outDim)
            throw new ArgumentException($"Pool: expected hidden [{batch}, {seq}, {d}], mask [{batch}, {seq}], output [{batch}, {outDim}].", nameof(hidden));
        float[] sum = new float[d], weighted = new float[d];
        for (int b = 0; b < batch; b++)
        {
            ReadOnlySpan<float> x = hidden.Slice(b * seq * d, seq * d);              // x: [seq, d]
            ReadOnlySpan<int> m = mask.Slice(b * seq, seq);
            Span<float> o = output.Slice(b * outDim, outDim);
            int at = 0, count = 0, last = 0;
            float weightSum = 0;
            sum.AsSpan().Clear();
            weighted.AsSpan().Clear();
            for (int t = 0; t < seq; t++)
            {
                if (m[t] == 0) continue;
                count++;
                last = t;
                weightSum += t + 1;
                ReadOnlySpan<float> row = x.Slice(t * d, d);
                for (int j = 0; j < d; j++)
                {
                    sum[j] += row[j];
                    weighted[j] += row[j] * (t + 1);
                }
            }
            if (config.ClsToken) { x[..d].CopyTo(o.Slice(at, d)); at += d; }
            if (config.MaxTokens)
            {
                Span<float> max = o.Slice(at, d);
                max.Fill(float.NegativeInfinity);
                for (int t = 0; t < seq; t++)
                    if (m[t] != 0)
                        for (int j = 0; j < d; j++) max[j] = Math.Max(max[j], x[t * d + j]);
                at += d;
            }
            float n = Math.Max(count, 1e-9f);
            if (config.MeanTokens) { for (int j = 0; j < d; j++) o[at + j] = sum[j] / n; at += d; }
            if (config.MeanSqrtLenTokens) { float r = MathF.Sqrt(n); for (int j = 0; j < d; j++) o[at + j] = sum[j] / r; at += d; }
            if (config.WeightedMeanTokens) { float w = Math.Max(weightSum, 1e-9f); for (int j = 0; j < d; j++) o[at + j] = weighted[j] / w; at += d; }
            if (config.LastToken) { x.Slice(last * d, d).CopyTo(o.Slice(at, d)); at += d; }
        }
    }
}
