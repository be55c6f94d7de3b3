// The training set: JSONL examples ({"input": ..., "target": ...}, field names configurable) read with line numbers,
// tokenized and truncated as HF's T5Tokenizer(truncation=True) does, and handed out as batches from an endless stream
// of examples: epoch e is the file order (no shuffle) or a seeded permutation, and micro-batch j takes stream positions
// j*B .. j*B+B-1, so batches are always full and wrap around the file (the fixtures' rule), and the stream position is
// a function of the step, which is what makes a resumed run identical to a straight one.
using System.Text;
using System.Text.Json;
using ManagedT5.Tokenizer;

namespace ManagedT5.Training;

/// <summary>One example as read: the line it is on and its two texts.</summary>
public sealed record TrainingExample(int Line, string Input, string Target);

/// <summary>Reads instruction data files.</summary>
public static class TrainingDataFile
{
    /// <summary>Largest data file read (1 GiB of JSONL).</summary>
    public const long MaxBytes = 1L << 30;

    /// <summary>
    /// The examples of a JSONL file: one JSON object per line with string fields <paramref name="inputField"/> and
    /// <paramref name="targetField"/>; blank lines are skipped. Every problem is an <see cref="ArgumentException"/> whose
    /// ParamName is <paramref name="option"/> and whose message names the file and the line.
    /// </summary>
    public static List<TrainingExample> ReadJsonLines(string path, string inputField = "input", string targetField = "target", string option = "data")
    {
        ArgumentNullException.ThrowIfNull(path);
        byte[] bytes = ManagedT5.IO.InputFile.ReadAllBytes(path, MaxBytes, out string? problem);
        if (problem is not null) throw new ArgumentException($"{option}: {problem}", option);
        string text = ManagedT5.IO.InputFile.DecodeUtf8(bytes, $"'{path}'", out string? notUtf8)
            ?? throw new ArgumentException($"{option}: {notUtf8}", option);
        var examples = new List<TrainingExample>();
        string[] lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i].TrimEnd('\r');
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonElement root;
            try
            {
                using var doc = JsonDocument.Parse(line);
                root = doc.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new ArgumentException($"{option}: line {i + 1} of '{path}' is not valid JSON ({e.Message.Split(" LineNumber")[0].TrimEnd('.')}); " +
                                            "give one JSON object per line.", option);
            }
            if (root.ValueKind != JsonValueKind.Object)
                throw new ArgumentException($"{option}: line {i + 1} of '{path}' is a JSON {root.ValueKind.ToString().ToLowerInvariant()}, not an object; " +
                                            $"give one object per line such as {{\"{inputField}\": \"...\", \"{targetField}\": \"...\"}}.", option);
            examples.Add(new TrainingExample(i + 1, Field(root, inputField, i + 1, path, option, inputField), Field(root, targetField, i + 1, path, option, inputField)));
        }
        if (examples.Count == 0)
            throw new ArgumentException($"{option}: '{path}' holds no examples; give at least one JSON object per line with \"{inputField}\" and \"{targetField}\".", option);
        return examples;
    }

    private static string Field(JsonElement root, string name, int line, string path, string option, string inputFieldName)
    {
        if (!root.TryGetProperty(name, out JsonElement value))
            throw new ArgumentException($"{option}: line {line} of '{path}' has no field \"{name}\"; add it, or name the field that holds " +
                                        $"the {(name == inputFieldName ? "input" : "target")} with {(name == inputFieldName ? "input_field" : "target_field")}.", option);
        if (value.ValueKind != JsonValueKind.String)
            throw new ArgumentException($"{option}: line {line} of '{path}': field \"{name}\" is a JSON {value.ValueKind.ToString().ToLowerInvariant()}, not a string.", option);
        return value.GetString()!;
    }
}

/// <summary>Tokenized examples and the batches of the training stream.</summary>
public sealed class TrainingData
{
    private readonly int[][] _inputs, _targets;
    private readonly int[] _lines;
    private int[]? _order;
    private long _orderEpoch = -1;

    /// <summary>Examples in the set.</summary>
    public int Count => _inputs.Length;

    private readonly Dictionary<(int Batch, int Source, int Target), TrainingBatch> _layouts = [];
    /// <summary>Examples whose input was cut to max_source_length.</summary>
    public int TruncatedInputs { get; }
    /// <summary>Examples whose target was cut to max_target_length.</summary>
    public int TruncatedTargets { get; }
    /// <summary>Where the examples came from (for messages).</summary>
    public string Source { get; }
    /// <summary>decoder_start_token_id used to shift the labels.</summary>
    public int DecoderStartTokenId { get; }
    /// <summary>Whether each epoch is a seeded permutation (false: file order).</summary>
    public bool Shuffle { get; }
    /// <summary>The shuffle seed.</summary>
    public int Seed { get; }

    /// <summary>Tokenizes <paramref name="examples"/> as HF does: the tokenizer's ids with &lt;/s&gt;, special tokens written
    /// in the text parsed (HF's from_pretrained tokenizer), and rows longer than the limits cut to limit - 1 ids plus
    /// &lt;/s&gt; (truncation=True), each cut counted.</summary>
    public TrainingData(IReadOnlyList<TrainingExample> examples, T5Tokenizer tokenizer, int maxSourceLength, int maxTargetLength,
                        int decoderStartTokenId, bool shuffle, int seed, string source = "data")
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (maxSourceLength < 2) throw new ArgumentException($"max_source_length: give at least 2 (got {maxSourceLength}).", "max_source_length");
        if (maxTargetLength < 2) throw new ArgumentException($"max_target_length: give at least 2 (got {maxTargetLength}).", "max_target_length");
        if (examples.Count == 0) throw new ArgumentException($"data: {source} holds no examples; give at least one.", "data");
        _inputs = new int[examples.Count][];
        _targets = new int[examples.Count][];
        _lines = new int[examples.Count];
        for (int i = 0; i < examples.Count; i++)
        {
            _lines[i] = examples[i].Line;
            _inputs[i] = Truncate(tokenizer.Encode(examples[i].Input), maxSourceLength, tokenizer.EosId, out bool cutInput);
            _targets[i] = Truncate(tokenizer.Encode(examples[i].Target), maxTargetLength, tokenizer.EosId, out bool cutTarget);
            if (cutInput) TruncatedInputs++;
            if (cutTarget) TruncatedTargets++;
        }
        Source = source;
        DecoderStartTokenId = decoderStartTokenId;
        Shuffle = shuffle;
        Seed = seed;
    }

    /// <summary>HF's truncation=True for one sequence with &lt;/s&gt; appended: the first max - 1 ids, then &lt;/s&gt;.</summary>
    internal static int[] Truncate(int[] ids, int max, int eos, out bool cut)
    {
        cut = ids.Length > max;
        return cut ? [.. ids.AsSpan(0, max - 1), eos] : ids;
    }

    /// <summary>The example index at stream position <paramref name="position"/> (epoch = position / Count).</summary>
    public int ExampleAt(long position)
    {
        long epoch = position / Count;
        int index = (int)(position % Count);
        if (!Shuffle) return index;
        if (_orderEpoch != epoch)
        {
            _order ??= new int[Count];
            Permute(_order, Seed, epoch);
            _orderEpoch = epoch;
        }
        return _order![index];
    }

    /// <summary>The file line of example <paramref name="index"/>.</summary>
    public int LineOf(int index) => _lines[index];

    /// <summary>Micro-batch <paramref name="microBatch"/> (0-based) of <paramref name="batchSize"/> rows: stream positions
    /// microBatch * batchSize onwards. <paramref name="examples"/> receives the example indices (for messages).</summary>
    public TrainingBatch Batch(long microBatch, int batchSize, int[]? examples = null)
    {
        var inputs = new int[batchSize][];
        var labels = new int[batchSize][];
        for (int r = 0; r < batchSize; r++)
        {
            int i = ExampleAt(microBatch * batchSize + r);
            if (examples is not null) examples[r] = i;
            inputs[r] = _inputs[i];
            labels[r] = _targets[i];
        }
        return TrainingBatch.FromIds(inputs, labels, DecoderStartTokenId);
    }

    /// <summary>
    /// <see cref="Batch"/> laid out into arrays kept per batch shape (rows, padded source and target length), so that a
    /// training loop allocates nothing once it has seen its shapes. The batch returned is overwritten by the next call
    /// with the same shape. <paramref name="examples"/> receives the example indices.
    /// </summary>
    internal TrainingBatch ReusedBatch(long microBatch, int batchSize, int[] examples)
    {
        int source = 0, target = 0;
        for (int r = 0; r < batchSize; r++)
        {
            int i = examples[r] = ExampleAt(microBatch * batchSize + r);
            source = Math.Max(source, _inputs[i].Length);
            target = Math.Max(target, _targets[i].Length);
        }
        if (!_layouts.TryGetValue((batchSize, source, target), out TrainingBatch? b))
        {
            var mask = new int[batchSize * source];
            Array.Fill(mask, 1);   // FromPadded refuses a row without tokens; the rows are filled in below
            _layouts[(batchSize, source, target)] = b = TrainingBatch.FromPadded(batchSize, source, target,
                new int[batchSize * source], mask, new int[batchSize * target], DecoderStartTokenId);
        }
        Array.Clear(b.InputIds);
        Array.Clear(b.AttentionMask);
        Array.Fill(b.Labels, TrainingBatch.IgnoreIndex);
        for (int r = 0; r < batchSize; r++)
        {
            int[] input = _inputs[examples[r]], label = _targets[examples[r]];
            input.CopyTo(b.InputIds, r * source);
            b.AttentionMask.AsSpan(r * source, input.Length).Fill(1);
            label.CopyTo(b.Labels, r * target);
            // decoder_input_ids: labels shifted right after decoder_start_token_id, -100 -> 0 (as FromPadded).
            b.DecoderInputIds[r * target] = DecoderStartTokenId;
            for (int t = 1; t < target; t++)
            {
                int l = b.Labels[r * target + t - 1];
                b.DecoderInputIds[r * target + t] = l == TrainingBatch.IgnoreIndex ? 0 : l;
            }
        }
        return b;
    }

    /// <summary>The whole set in file order as batches of up to <paramref name="batchSize"/> rows (evaluation).</summary>
    public IEnumerable<TrainingBatch> Sequential(int batchSize)
    {
        for (int start = 0; start < Count; start += batchSize)
        {
            int n = Math.Min(batchSize, Count - start);
            yield return TrainingBatch.FromIds(_inputs[start..(start + n)], _targets[start..(start + n)], DecoderStartTokenId);
        }
    }

    /// <summary>A seeded Fisher-Yates permutation of 0..n-1 for one epoch (SplitMix64: the same on every platform and
    /// .NET version, so a checkpoint resumes on another machine with the same order).</summary>
    public static int[] Permutation(int n, int seed, long epoch)
    {
        var order = new int[n];
        Permute(order, seed, epoch);
        return order;
    }

    // Permutation into an existing array (the trainer's per-epoch order, allocated once).
    private static void Permute(int[] order, int seed, long epoch)
    {
        int n = order.Length;
        for (int i = 0; i < n; i++) order[i] = i;
        ulong state = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL ^ (ulong)epoch * 0xD1B54A32D192ED03UL);
        for (int i = n - 1; i > 0; i--)
        {
            int j = (int)(SplitMix64(ref state) % (ulong)(i + 1));
            (order[i], order[j]) = (order[j], order[i]);
        }
    }

    private static ulong SplitMix64(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
