// Sentence embeddings (T5Embedder) against sentence-transformers on the tiny-sentence-t5 fixture: tokens, last hidden
// state, pooled vectors, final embeddings and the cosine matrix, on every CPU backend; batching, order, truncation,
// threads, cancellation, reduced-precision weights, a plain T5 folder as embedder, and each pooling mode against a
// hand computation.
using System.Text.Json;
using ManagedT5.Embeddings;
using ManagedT5.Kernels;
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Tests;

public sealed class EmbeddingTests(ITestOutputHelper output)
{
    internal const string Model = "tiny-sentence-t5";
    private const double HiddenTolerance = 1e-4;   // relative, as the forward-parity tests
    private const double VectorTolerance = 1e-5;   // absolute: pooled, embeddings, cosine matrix

    /// <summary>The fixture's reference: texts, cosine matrix (reference.json) and tensors (reference.safetensors).</summary>
    internal sealed class Reference : IDisposable
    {
        private readonly SafeTensorsFile _file = SafeTensorsFile.Open(Path.Combine(Fixtures.Model(Model), "reference.safetensors"));
        public string[] Texts { get; }
        public float[][] Cosine { get; }
        public int Batch => _file.Find("batch.input_ids")!.Shape[0];
        public int Seq => _file.Find("batch.input_ids")!.Shape[1];

        public Reference()
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Model(Model), "reference.json")));
            Texts = doc.RootElement.GetProperty("texts").EnumerateArray().Select(t => t.GetString()!).ToArray();
            Cosine = doc.RootElement.GetProperty("cosine_matrix").EnumerateArray()
                .Select(r => r.EnumerateArray().Select(v => v.GetSingle()).ToArray()).ToArray();
        }

        public float[] F(string name) => _file.GetTensor(name).ToSingleArray();
        public int[] I(string name) => _file.GetTensor(name).ToInt64Array().Select(v => (int)v).ToArray();
        public float[][] Rows(string name) => F(name).Chunk(F(name).Length / Batch).ToArray();

        /// <summary>Each text's ids without padding.</summary>
        public int[][] Ids()
        {
            int[] ids = I("batch.input_ids"), mask = I("batch.attention_mask");
            return Enumerable.Range(0, Batch).Select(b => ids.Skip(b * Seq).Take(Seq).Where((_, t) => mask[b * Seq + t] == 1).ToArray()).ToArray();
        }

        public void Dispose() => _file.Dispose();
    }

    private static double MaxAbs(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        return expected.Zip(actual, (e, a) => Math.Abs((double)e - a)).Max();
    }

    private void CheckAbs(string what, float[][] expected, float[][] actual, double tolerance = VectorTolerance)
    {
        Assert.Equal(expected.Length, actual.Length);
        double error = expected.Zip(actual, MaxAbs).Max();
        output.WriteLine($"{what,-40} max abs err {error:E2}");
        Assert.True(error <= tolerance, $"{what}: max abs error {error:E3} exceeds {tolerance:E0}");
    }

    internal static float[][] CosineMatrix(float[][] v) =>
        v.Select(a => v.Select(b => T5Embedder.Cosine(a, b)).ToArray()).ToArray();

    [Theory]
    [InlineData("reference")]
    [InlineData("cpu")]
    public void EmbeddingsMatchSentenceTransformers(string device)
    {
        using var reference = new Reference();
        using T5Embedder embedder = T5Embedder.Load(Fixtures.Model(Model), new T5EmbedderOptions { Device = device });
        Assert.True(embedder.IsSentenceTransformers);
        Assert.Equal(24, embedder.Dimension);
        Assert.Equal(256, embedder.MaxSeqLength);
        Assert.True(embedder.Normalizes);
        Assert.True(embedder.Pooling.MeanTokens);

        // Tokens: special-token spellings as text, </s> appended, as the reference's tokenizer did.
        var (ids, truncated) = embedder.Tokenize(reference.Texts);
        Assert.Equal(0, truncated);
        Assert.Equal(reference.Ids(), ids);

        // Last hidden state of the padded reference batch.
        using (EncoderOutput encoded = embedder.Model.Encode(reference.I("batch.input_ids"), reference.I("batch.attention_mask"), reference.Batch))
        {
            var hidden = new float[encoded.Hidden.Length];
            embedder.Model.Backend.Download(encoded.Hidden, hidden);
            double error = Errors.RelativeError(reference.F("batch.last_hidden_state"), hidden);
            output.WriteLine($"{"last_hidden_state",-40} rel err {error:E2}");
            Assert.True(error <= HiddenTolerance, $"last_hidden_state: relative error {error:E3} exceeds {HiddenTolerance:E0}");
        }

        var pooled = new float[ids.Length][];
        float[][] embeddings = embedder.Run(ids, null, CancellationToken.None, pooled);
        CheckAbs("pooled (mean over the mask)", reference.Rows("batch.pooled"), pooled);
        CheckAbs("embeddings (Dense, normalize)", reference.Rows("batch.embeddings"), embeddings);
        CheckAbs("cosine matrix", reference.Cosine, CosineMatrix(embeddings));

        EmbeddingBatchResult result = embedder.Embed(reference.Texts);
        CheckAbs("Embed(texts)", reference.Rows("batch.embeddings"), result.Embeddings);
        Assert.Equal(ids.Select(r => r.Length), result.TokenCounts);
        Assert.Equal(0, result.TruncatedTexts);
        Assert.All(result.Embeddings, e => Assert.Equal(1.0, Math.Sqrt(e.Sum(x => (double)x * x)), 5));
    }

    [Fact]
    public void BatchSizeAndSortingDoNotChangeResultsOrOrder()
    {
        using var reference = new Reference();
        string[] texts = [.. reference.Texts, "a", reference.Texts[1] + " " + reference.Texts[0], "Hello world"];
        using T5Embedder one = T5Embedder.Load(Fixtures.Model(Model), new T5EmbedderOptions { BatchSize = 1 });
        using T5Embedder three = T5Embedder.Load(Fixtures.Model(Model), new T5EmbedderOptions { BatchSize = 3 });
        float[][] single = texts.Select(t => one.Embed([t]).Embeddings[0]).ToArray();
        CheckAbs("batch size 1 vs one call per text", single, one.Embed(texts).Embeddings);
        CheckAbs("batch size 3 vs one call per text", single, three.Embed(texts).Embeddings);
        CheckAbs("reference rows in input order", reference.Rows("batch.embeddings"), three.Embed(texts).Embeddings[..5]);
        Assert.Equal(single[2], single[^1]);   // the same text twice
    }

    [Fact]
    public void LongTextsAreTruncatedToMaxSeqLengthAndCounted()
    {
        using T5Embedder embedder = T5Embedder.Load(Fixtures.Model(Model), new T5EmbedderOptions { MaxSeqLength = 6 });
        Assert.Equal(6, embedder.MaxSeqLength);
        string longText = string.Join(' ', Enumerable.Repeat("The quick brown fox jumps over the lazy dog.", 40));
        EmbeddingBatchResult result = embedder.Embed(["Hi", longText, longText + " again"]);
        Assert.Equal(2, result.TruncatedTexts);
        Assert.Equal(6, result.TokenCounts[1]);
        Assert.True(result.TokenCounts[0] < 6);
        var (ids, _) = embedder.Tokenize([longText]);
        Assert.Equal(embedder.Tokenizer.EosId, ids[0][^1]);                                // HF truncation keeps </s> last
        Assert.Equal(embedder.Tokenizer.Encode(longText, parseSpecialTokens: false)[..5], ids[0][..5]);
        // Cut texts embed as their first 5 tokens + </s>: both long texts share those.
        CheckAbs("two texts cut to the same tokens", [result.Embeddings[1]], [result.Embeddings[2]]);

        // The default comes from sentence_bert_config.json (256); a 400-token text is cut there.
        using T5Embedder defaults = T5Embedder.Load(Fixtures.Model(Model));
        EmbeddingBatchResult cut = defaults.Embed([longText]);
        Assert.Equal(256, cut.TokenCounts[0]);
        Assert.Equal(1, cut.TruncatedTexts);
    }

    [Fact]
    public void SpecialTokenSpellingsInTextArePlainText()
    {
        using T5Embedder embedder = T5Embedder.Load(Fixtures.Model(Model));
        var (ids, _) = embedder.Tokenize(["Hello </s> <extra_id_0> world"]);
        Assert.Equal(1, ids[0].Count(i => i == embedder.Tokenizer.EosId));       // only the appended </s>
        Assert.DoesNotContain(embedder.Tokenizer.SentinelId(0), ids[0]);
        // An empty text is </s> alone, as sentence-transformers embeds it.
        Assert.Equal([embedder.Tokenizer.EosId], embedder.Tokenize([""]).Ids[0]);
    }

    [Fact]
    public void OneEmbedderServesManyThreads()
    {
        using var reference = new Reference();
        using T5Embedder embedder = T5Embedder.Load(Fixtures.Model(Model), new T5EmbedderOptions { BatchSize = 2 });
        float[][] expected = embedder.Embed(reference.Texts).Embeddings;
        var results = new float[8][][];
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            string[] rotated = [.. reference.Texts.Skip(i % 5), .. reference.Texts.Take(i % 5)];
            float[][] got = embedder.EmbedAsync(rotated).GetAwaiter().GetResult().Embeddings;
            results[i] = [.. got.Skip(5 - i % 5), .. got.Take(5 - i % 5)];
        });
        foreach (float[][] r in results) CheckAbs("concurrent call", expected, r);
    }

    [Fact]
    public async Task CancellationStopsBetweenBatches()
    {
        using T5Embedder embedder = T5Embedder.Load(Fixtures.Model(Model), new T5EmbedderOptions { BatchSize = 1 });
        using var cts = new CancellationTokenSource();
        int reports = 0;
        var progress = new SyncProgress(done => { reports = done; if (done == 2) cts.Cancel(); });
        Assert.Throws<OperationCanceledException>(() => embedder.Embed(["a", "b", "c", "d"], progress, cts.Token));
        Assert.Equal(2, reports);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => embedder.EmbedAsync(["a"], cts.Token));
    }

    private sealed class SyncProgress(Action<int> report) : IProgress<int>
    {
        public void Report(int value) => report(value);
    }

    [Theory]
    [InlineData(WeightFormat.BF16, 1e-2)]
    [InlineData(WeightFormat.Int8, 2e-2)]
    public void ReducedPrecisionWeightsStayCloseToTheReference(WeightFormat format, double tolerance)
    {
        // bf16 keeps 8 mantissa bits and int8 one scale per row: measured errors are printed; the bound is what
        // reduced precision allows (measured here: bf16 4.7e-3, int8 1.5e-2 on the cosine matrix); f32 carries the 1e-5 parity.
        using var reference = new Reference();
        using T5Embedder embedder = T5Embedder.Load(Fixtures.Model(Model), new T5EmbedderOptions { WeightFormat = format });
        Assert.Equal(format, embedder.Model.Weights.Encoder[0].SelfAttention.Q.Format);
        float[][] embeddings = embedder.Embed(reference.Texts).Embeddings;
        CheckAbs($"{format} embeddings", reference.Rows("batch.embeddings"), embeddings, tolerance);
        CheckAbs($"{format} cosine matrix", reference.Cosine, CosineMatrix(embeddings), tolerance);
    }

    [Fact]
    public void APlainT5FolderEmbedsWithEncoderAndMeanPooling()
    {
        using T5Embedder embedder = T5Embedder.Load(Fixtures.Model("tiny-flan-t5"));
        Assert.False(embedder.IsSentenceTransformers);
        Assert.False(embedder.Normalizes);
        Assert.Empty(embedder.DenseLayers);
        Assert.Equal(512, embedder.MaxSeqLength);
        Assert.Equal(embedder.Model.Config.DModel, embedder.Dimension);
        Assert.False(embedder.Model.HasDecoder);                                   // the decoder is never bound

        // Against the generator's own encoder: mean over the tokens of encoder_last_hidden_state.
        using T5TextGenerator generator = T5TextGenerator.Load(Fixtures.Model("tiny-flan-t5"));
        int[] ids = generator.Tokenizer.Encode("Hello world", parseSpecialTokens: false);
        using EncoderOutput encoded = generator.Model.Encode(ids, Enumerable.Repeat(1, ids.Length).ToArray(), 1);
        var hidden = new float[encoded.Hidden.Length];
        generator.Model.Backend.Download(encoded.Hidden, hidden);
        int d = generator.Model.Config.DModel;
        float[] mean = Enumerable.Range(0, d).Select(j => Enumerable.Range(0, ids.Length).Sum(t => hidden[t * d + j]) / ids.Length).ToArray();
        CheckAbs("plain T5: mean pooling", [mean], embedder.Embed(["Hello world"]).Embeddings);

        using T5Embedder normalized = T5Embedder.Load(Fixtures.Model("tiny-flan-t5"), new T5EmbedderOptions { Normalize = true });
        Assert.Equal(1.0, Math.Sqrt(normalized.Embed(["Hello world"]).Embeddings[0].Sum(x => (double)x * x)), 5);
    }

    [Fact]
    public void NormalizeFalseSkipsTheNormalizeModule()
    {
        using var reference = new Reference();
        using T5Embedder embedder = T5Embedder.Load(Fixtures.Model(Model), new T5EmbedderOptions { Normalize = false });
        Assert.False(embedder.Normalizes);
        float[][] raw = embedder.Embed(reference.Texts).Embeddings;
        foreach (float[] r in raw) T5Embedder.NormalizeL2(r);
        CheckAbs("unnormalized, then normalized", reference.Rows("batch.embeddings"), raw);
    }

    [Fact]
    public void EveryPoolingModeMatchesAHandComputation()
    {
        // batch 2, seq 3, d 2; row 1 has one padding position whose values must not count.
        float[] h = [1, 2, 3, -4, 5, 6, /* row 1 */ -1, 0, 7, 2, 100, 100];
        int[] mask = [1, 1, 1, 1, 1, 0];
        var all = new PoolingConfig
        {
            WordEmbeddingDimension = 2, ClsToken = true, MaxTokens = true, MeanTokens = true, MeanSqrtLenTokens = true,
            WeightedMeanTokens = true, LastToken = true,
        };
        var o = new float[2 * 12];
        Pooling.Pool(all, h, mask, 2, 3, o);
        float[] row0 =
        [
            1, 2,                                            // cls
            5, 6,                                            // max
            3, 4f / 3,                                       // mean
            9 / MathF.Sqrt(3), 4 / MathF.Sqrt(3),           // mean_sqrt_len
            (1 + 6 + 15) / 6f, (2 - 8 + 18) / 6f,            // weightedmean (weights 1, 2, 3)
            5, 6,                                            // lasttoken
        ];
        float[] row1 = [-1, 0, 7, 2, 3, 1, 6 / MathF.Sqrt(2), 2 / MathF.Sqrt(2), 13 / 3f, 4 / 3f, 7, 2];
        CheckAbs("pooling modes", [row0, row1], [o[..12], o[12..]], 1e-6);
    }

    [Fact]
    public void DenseAppliesBiasAndTanh()
    {
        var dense = new DenseLayer(2, 3, [1, 0, 0, 1, 1, 1], [0.5f, 0, -1], DenseActivation.Tanh);
        var y = new float[3];
        dense.Forward([0.25f, -0.5f], y, 1);
        CheckAbs("tanh(W x + b)", [[MathF.Tanh(0.75f), MathF.Tanh(-0.5f), MathF.Tanh(-1.25f)]], [y], 1e-7);
    }
}
