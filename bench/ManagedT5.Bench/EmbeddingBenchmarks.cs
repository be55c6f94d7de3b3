// Sentence-embedding throughput: a sentence-t5-base-shaped encoder (d_model 768, 12 layers, 12 heads, d_ff 3072, ReLU;
// random weights) with mean pooling, a 768 x 768 Dense and Normalize, embedding 32 texts of 128 tokens per call, with
// f32, bf16 and int8 weights. `--quick-embed [threads] [folder] [f32,bf16,int8]` prints embeddings/s per weight format (folder: a
// sentence-transformers folder to time instead; one that does not exist is written with the random model first, so
// bench/ort-embed/export_embed_onnx.py can export the same weights for ONNX Runtime).
using BenchmarkDotNet.Attributes;
using ManagedT5.Benchmarks;
using ManagedT5.Embeddings;
using ManagedT5.Kernels;
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Bench;

/// <summary>BenchmarkDotNet: one Embed call of 32 x 128 tokens per weight format.</summary>
public class EmbeddingBenchmarks
{
    private T5Embedder _embedder = null!;
    private string[] _texts = [];

    /// <summary>How the encoder's matrices are kept.</summary>
    [Params(WeightFormat.F32, WeightFormat.BF16, WeightFormat.Int8)]
    public WeightFormat Format { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _embedder = T5Embedder.Load(EmbeddingThroughput.Folder, EmbeddingThroughput.Options(Format, threads: 0));
        _texts = EmbeddingThroughput.Texts(EmbeddingThroughput.Batch);
    }

    [GlobalCleanup]
    public void Cleanup() => _embedder.Dispose();

    /// <summary>32 texts of 128 tokens.</summary>
    [Benchmark]
    public EmbeddingBatchResult Embed32x128() => _embedder.Embed(_texts);
}

/// <summary>The model, the texts and the quick report.</summary>
public static class EmbeddingThroughput
{
    public const int Batch = 32, Tokens = 128;

    /// <summary>The random sentence-t5-base-shaped folder (written once per process).</summary>
    public static string Folder => s_folder.Value;
    private static readonly Lazy<string> s_folder = new(() => WriteRandomSentenceT5(Directory.CreateTempSubdirectory("managedt5-embed-bench-").FullName));

    public static T5EmbedderOptions Options(WeightFormat format, int threads) =>
        new() { WeightFormat = format, Threads = threads, BatchSize = Batch, MaxSeqLength = Tokens };

    /// <summary>Texts that tokenize to more than 128 tokens, so each is cut to exactly 128 (&lt;/s&gt; included).</summary>
    public static string[] Texts(int count) =>
        Enumerable.Range(0, count).Select(i => string.Join(' ', Enumerable.Range(0, 160).Select(j => $"w{(i * 7919 + j * 104729) % 9973}"))).ToArray();

    /// <summary>Prints embeddings/s for f32, bf16 and int8 weights.</summary>
    public static void Quick(int threads, string? folder, IReadOnlyList<WeightFormat>? formats = null)
    {
        if (folder is not null && !Directory.Exists(folder)) WriteRandomSentenceT5(Directory.CreateDirectory(folder).FullName);
        folder ??= Folder;
        string[] texts = Texts(Batch);
        Console.WriteLine($"embeddings: {Batch} texts x {Tokens} tokens per call, model {folder}, {Environment.ProcessorCount} cores, " +
                          $"threads {(threads == 0 ? "all" : threads)}, {System.Runtime.InteropServices.RuntimeInformation.OSArchitecture}");
        foreach (WeightFormat format in formats ?? [WeightFormat.F32, WeightFormat.BF16, WeightFormat.Int8])
        {
            using T5Embedder embedder = T5Embedder.Load(folder, Options(format, threads));
            EmbeddingBatchResult warm = embedder.Embed(texts);                      // warm-up (JIT, pools)
            if (warm.TokenCounts.Any(n => n != Tokens)) throw new InvalidOperationException("the texts did not make 128 tokens each");
            var times = new List<double>();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (times.Count < 3 || (clock.Elapsed.TotalSeconds < 20 && times.Count < 10))
            {
                long start = System.Diagnostics.Stopwatch.GetTimestamp();
                embedder.Embed(texts);
                times.Add(System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds);
            }
            times.Sort();
            double median = times[times.Count / 2];
            Console.WriteLine($"  {format,-5} {Batch / median,8:F1} embeddings/s  (median of {times.Count} calls: {median * 1000:F0} ms; " +
                              $"best {Batch / times[0]:F1}/s; weights {embedder.Model.WeightBytes / (1 << 20)} MiB)");
        }
    }

    /// <summary>sentence-t5-base's shapes with random weights (as the CLI bench's: norms ones, matrices normals scaled by
    /// 1/sqrt(in_features), embedding and bias tables unit normals), mean pooling, Dense 768 -> 768 without bias,
    /// Normalize; the T5 tokenizer from tests/fixtures.</summary>
    public static string WriteRandomSentenceT5(string dir)
    {
        const string config = """
            {"architectures": ["T5EncoderModel"], "d_ff": 3072, "d_kv": 64, "d_model": 768, "dropout_rate": 0.1,
             "eos_token_id": 1, "feed_forward_proj": "relu", "is_encoder_decoder": true, "layer_norm_epsilon": 1e-06,
             "model_type": "t5", "num_decoder_layers": 12, "num_heads": 12, "num_layers": 12, "pad_token_id": 0,
             "relative_attention_max_distance": 128, "relative_attention_num_buckets": 32, "tie_word_embeddings": true,
             "vocab_size": 32128}
            """;
        File.WriteAllText(Path.Combine(dir, "config.json"), config);
        var weights = new RandomWeights(seed: 0);
        weights.WriteCheckpoint(new T5Modules(T5Config.Parse(config)), Path.Combine(dir, "model.safetensors"));
        File.WriteAllText(Path.Combine(dir, "modules.json"), """
            [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
             {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
             {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"}]
            """);
        File.WriteAllText(Path.Combine(dir, "sentence_bert_config.json"), """{"max_seq_length": 256, "do_lower_case": false}""");
        Directory.CreateDirectory(Path.Combine(dir, "1_Pooling"));
        File.WriteAllText(Path.Combine(dir, "1_Pooling", "config.json"), """{"word_embedding_dimension": 768, "pooling_mode_mean_tokens": true}""");
        Directory.CreateDirectory(Path.Combine(dir, "2_Dense"));
        File.WriteAllText(Path.Combine(dir, "2_Dense", "config.json"),
            """{"in_features": 768, "out_features": 768, "bias": false, "activation_function": "torch.nn.modules.linear.Identity"}""");
        var dense = new SafeTensorsWriter();
        dense.Add("linear.weight", weights.Normal(768, 768, scaled: true), 768, 768);
        dense.Save(Path.Combine(dir, "2_Dense", "model.safetensors"));
        File.Copy(FindSpiece(), Path.Combine(dir, "spiece.model"));
        return dir;
    }

    private static string FindSpiece()
    {
        foreach (string start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
            for (DirectoryInfo? d = new(start); d != null; d = d.Parent)
            {
                string candidate = Path.Combine(d.FullName, "tests", "fixtures", "tokenizer", "spiece.model");
                if (File.Exists(candidate)) return candidate;
            }
        throw new FileNotFoundException("tests/fixtures/tokenizer/spiece.model not found above the bench; run it from the repository.");
    }
}
