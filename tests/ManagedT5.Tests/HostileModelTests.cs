// Hostile model folders and options: sizes from config.json or options that overflow or cannot be allocated, special
// files as config.json / generation_config.json, malformed values, NaN weights. Each must end in one clear error
// naming the key, option or file: never a crash, an overflow, a hang or a silently wrong answer.
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using ManagedT5.Generation;
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu;
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Tests;

public sealed class HostileModelTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "managedt5-hostile-" + Guid.NewGuid().ToString("N"));

    public HostileModelTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A copy of tiny-flan-t5 (links to its large files) with config.json edited by <paramref name="edit"/>.</summary>
    private string ModelWithConfig(Action<JsonObject> edit)
    {
        string source = Fixtures.Model("tiny-flan-t5");
        foreach (string file in Directory.GetFiles(source))
            if (Path.GetFileName(file) != "config.json") File.Copy(file, Path.Combine(_dir, Path.GetFileName(file)));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!.AsObject();
        edit(config);
        File.WriteAllText(Path.Combine(_dir, "config.json"), config.ToJsonString());
        return _dir;
    }

    private static ModelLoadException LoadFails(string dir)
    {
        using var backend = new CpuBackend(1);
        return Assert.Throws<ModelLoadException>(() => T5Model.Load(dir, backend).Dispose());
    }

    // ---------------------------------------------------------------- config.json sizes (issue 14 items 1, 2, 5)

    [Fact]
    public void HeadsTimesDKvThatWrapsIsRefusedNamingTheKeys()
    {
        // 6 x 715827883 = 2^32 + 2: in 32 bits that is 2, which passed the shape checks against [2, 32] weights and let
        // the attention kernel read out of bounds.
        string dir = ModelWithConfig(c => c["d_kv"] = 715827883);
        var e = Assert.Throws<ModelLoadException>(() => T5Config.Load(Path.Combine(dir, "config.json")));
        Assert.Contains("num_heads (6) x d_kv (715827883)", e.Message);
        Assert.Contains("config.json", e.Message);
        Assert.Contains("num_heads (6) x d_kv (715827883)", LoadFails(dir).Message);
    }

    [Fact]
    public void InnerDimOfAConfigBuiltInCodeIsChecked()
    {
        T5Config c = T5Config.Parse("""{"d_model": 32, "d_kv": 8, "d_ff": 80, "num_layers": 1, "num_heads": 6, "vocab_size": 100}""");
        Assert.Equal(48, c.InnerDim);
        Assert.Throws<OverflowException>(() => (c with { DKv = 715827883 }).InnerDim);
    }

    [Theory]
    [InlineData("num_layers", 1_000_000_000, "num_layers is 1000000000", "3 encoder block")]
    [InlineData("num_layers", 2, "num_layers is 2", "3 encoder block")]
    [InlineData("num_decoder_layers", 5, "num_decoder_layers is 5", "2 decoder block")]
    public void LayerCountsMustMatchTheCheckpointsBlocks(string key, int value, string named, string found)
    {
        string dir = ModelWithConfig(c => c[key] = value);
        var started = DateTime.UtcNow;
        ModelLoadException e = LoadFails(dir);
        Assert.Contains(named, e.Message);
        Assert.Contains(found, e.Message);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(10), "refused only after allocating per-layer arrays");
    }

    [Fact]
    public void NumLayersAsAFloatIsAClearError()
    {
        string dir = ModelWithConfig(c => c["num_layers"] = JsonNode.Parse("1e9"));
        ModelLoadException e = LoadFails(dir);
        Assert.Contains("'num_layers' must be an integer", e.Message);
        Assert.Contains("config.json", e.Message);
    }

    [Theory]
    [InlineData("1e300")]    // a finite double, an infinite float
    [InlineData("1e-50")]    // a positive double, a float zero
    public void LayerNormEpsilonMustBeAPositiveFiniteFloat(string value)
    {
        var e = Assert.Throws<ModelLoadException>(() => T5Config.Parse(
            """{"d_model": 8, "d_kv": 2, "d_ff": 16, "num_layers": 2, "num_heads": 4, "vocab_size": 100, "layer_norm_epsilon": """ + value + "}"));
        Assert.Contains("layer_norm_epsilon", e.Message);
    }

    [Theory]
    [InlineData("""{"model_type": "\ud800", "d_model": 8, "d_kv": 2, "d_ff": 16, "num_layers": 2, "num_heads": 4, "vocab_size": 100}""")]
    [InlineData("""{"d_model": 8, "d_kv": 2, "d_ff": 16, "num_layers": 2, "num_heads": 4, "vocab_size": 100, "feed_forward_proj": "gated-\udfff"}""")]
    [InlineData("""[1, 2]""")]
    [InlineData("""{"d_model": 8""")]
    public void MalformedConfigJsonNamesTheFile(string json)
    {
        string path = Path.Combine(_dir, "config.json");
        File.WriteAllText(path, json);
        var e = Assert.Throws<ModelLoadException>(() => T5Config.Load(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void ConfigWithAByteOrderMarkStillLoads()
    {
        string path = Path.Combine(_dir, "config.json");
        File.WriteAllText(path, File.ReadAllText(Path.Combine(Fixtures.Model("tiny-flan-t5"), "config.json")), new System.Text.UTF8Encoding(true));
        Assert.Equal(48, T5Config.Load(path).InnerDim);
    }

    // ---------------------------------------------------------------- special files (issue 14 item 7, engine side)

    [DllImport("libc", SetLastError = true)]
    private static extern int mkfifo(string path, uint mode);

    [Theory]
    [InlineData("config.json")]
    [InlineData("generation_config.json")]
    public async Task AFifoOrDevZeroBehindALinkIsOneErrorNotAHang(string file)
    {
        if (OperatingSystem.IsWindows()) return;
        string fifo = Path.Combine(_dir, "pipe"), zero = Path.Combine(_dir, "zero-" + file), viaFifo = Path.Combine(_dir, "fifo-" + file);
        Assert.Equal(0, mkfifo(fifo, 0x180));
        File.CreateSymbolicLink(viaFifo, fifo);
        File.CreateSymbolicLink(zero, "/dev/zero");
        foreach (string path in new[] { viaFifo, zero, fifo })
        {
            Func<object> load = file == "config.json" ? () => T5Config.Load(path) : () => GenerationOptions.FromGenerationConfig(path);
            Task<object> task = Task.Run(load);
            Assert.True(await Task.WhenAny(task, Task.Delay(TimeSpan.FromSeconds(10))) == task, $"reading {path} hangs");
            var e = await Assert.ThrowsAsync<ModelLoadException>(() => task);
            Assert.Contains(path, e.Message);
        }
    }

    // ---------------------------------------------------------------- generation_config.json (issue 14 item 2)

    [Theory]
    [InlineData("""[{"num_beams": 4}]""", "JSON object")]
    [InlineData("""{"num_beams": 1e12}""", "num_beams")]
    [InlineData("""{"num_beams": 4.5}""", "num_beams")]
    [InlineData("""{"num_beams": "4"}""", "num_beams")]
    [InlineData("""{"num_beams": 0}""", "num_beams")]
    [InlineData("""{"max_new_tokens": 2147483647}""", "max_new_tokens")]
    [InlineData("""{"top_p": 2}""", "top_p")]
    [InlineData("""{"length_penalty": 1e39}""", "length_penalty")]
    [InlineData("""{"do_sample": "yes"}""", "do_sample")]
    [InlineData("""{"early_stopping": "sometimes"}""", "early_stopping")]
    [InlineData("""{"eos_token_id": [1, 2]}""", "eos_token_id")]
    [InlineData("""{"eos_token_id": -1}""", "eos_token_id")]
    [InlineData("""{"\ud800": 1, "pad_token_id": "\ud800"}""", "generation_config.json")]
    public void BadGenerationConfigNamesTheFileAndKey(string json, string named)
    {
        string path = Path.Combine(_dir, "generation_config.json");
        File.WriteAllText(path, json);
        var e = Assert.Throws<ModelLoadException>(() => GenerationOptions.FromGenerationConfig(path));
        Assert.Contains(path, e.Message);
        Assert.Contains(named, e.Message);
    }

    [Fact]
    public void GenerationConfigReadsHfValuesAndIgnoresOthers()
    {
        string path = Path.Combine(_dir, "generation_config.json");
        File.WriteAllText(path, """
            {"decoder_start_token_id": 0, "eos_token_id": [1], "pad_token_id": 0, "num_beams": 4, "early_stopping": "never",
             "max_new_tokens": null, "length_penalty": 2.0, "transformers_version": "4.57.1", "foo": {"bar": [1]}}
            """);
        GenerationOptions o = GenerationOptions.FromGenerationConfig(path);
        Assert.Equal((1, 0, 0, 4, EarlyStopping.Never, 2f), (o.EosTokenId, o.PadTokenId, o.DecoderStartTokenId, o.NumBeams, o.EarlyStopping, o.LengthPenalty));
        Assert.Null(o.MaxNewTokens);
        Assert.Equal(new GenerationOptions(), GenerationOptions.FromGenerationConfig(Path.Combine(_dir, "absent.json")));
    }

    // ---------------------------------------------------------------- threads (issue 14 item 2)

    [Fact]
    public void ThreadCountsBeyondAFewPerCoreAreRefusedNamingThreads()
    {
        foreach (int threads in new[] { CpuBackend.MaxThreads + 1, 100_000, -1 })
        {
            var e = Assert.ThrowsAny<ArgumentException>(() => BackendFactory.Create("cpu", threads).Dispose());
            Assert.Equal("threads", e.ParamName);
            Assert.StartsWith("threads: ", e.Message);
            Assert.ThrowsAny<ArgumentException>(() => new T5LoadOptions { Threads = threads } is var o
                ? T5TextGenerator.Load(Fixtures.Model("tiny-flan-t5"), o) : null);
        }
        BackendFactory.Create("cpu", CpuBackend.MaxThreads).Dispose();
    }
}

/// <summary>Options whose buffers cannot be allocated are refused up front naming the option (on the loaded fixture).</summary>
public sealed class RequestSizeTests(RequestSizeTests.Model model) : IClassFixture<RequestSizeTests.Model>
{
    public sealed class Model : IDisposable
    {
        public readonly T5Model T5 = T5Model.Load(Fixtures.Model("tiny-flan-t5"), new CpuBackend(2), ownsBackend: true);
        public void Dispose() => T5.Dispose();
    }

    private readonly T5Model _model = model.T5;
    private static readonly int[] Prompt = [13959, 1566, 12, 2968, 10, 571, 1];

    public static TheoryData<GenerationOptions, int, string> TooBig => new()
    {
        { new GenerationOptions { NumBeams = 70_000, MaxNewTokens = 4 }, 1, "num_beams" },                                // rows x vocab
        { new GenerationOptions { NumBeams = 200, NumReturnSequences = 100, MaxNewTokens = 4 }, 400, "num_beams" },       // prompts x beams x vocab
        { new GenerationOptions { DoSample = true, NumReturnSequences = 100_000, MaxNewTokens = 4 }, 1, "num_return_sequences" },
        { new GenerationOptions { MaxInputTokens = 200_000, MaxNewTokens = 4 }, 60_000, "max_input_tokens" },             // heads x seq^2
        { new GenerationOptions { NumBeams = 2_000, MaxNewTokens = 60_000 }, 1, "max_new_tokens" },                       // the KV cache
        { new GenerationOptions { MaxNewTokens = int.MaxValue }, 1, "max_new_tokens" },
    };

    [Theory]
    [MemberData(nameof(TooBig))]
    public void BuffersThatCannotBeAllocatedNameTheOption(GenerationOptions options, int promptTokensOrPrompts, string option)
    {
        IReadOnlyList<int[]> prompts = options.MaxInputTokens > 4096
            ? [Enumerable.Repeat(5, promptTokensOrPrompts - 1).Append(1).ToArray()]
            : Enumerable.Repeat(Prompt, promptTokensOrPrompts).ToArray();
        var e = Assert.ThrowsAny<ArgumentException>(() => Generator.Generate(_model, prompts, options));
        Assert.Equal(option, e.ParamName);
        Assert.StartsWith(option + ": ", e.Message);
    }

    [Fact]
    public void TheModelsOwnEntryPointsCheckTooWithoutOverflowing()
    {
        int seq = 60_000;
        var ids = Enumerable.Repeat(5, seq).ToArray();
        var e = Assert.ThrowsAny<ArgumentException>(() => _model.Encode(ids, Enumerable.Repeat(1, seq).ToArray(), 1));
        Assert.Contains("attention scores", e.Message);
        using EncoderOutput encoded = _model.Encode(Prompt, Enumerable.Repeat(1, Prompt.Length).ToArray(), 1);
        Assert.ThrowsAny<ArgumentException>(() => _model.StartDecoder(encoded, capacity: 8, expand: 70_000));
        Assert.ThrowsAny<ArgumentException>(() => _model.StartDecoder(encoded, capacity: 1 << 20, expand: 1 << 12));
    }
}

/// <summary>NaN / Inf in the weights: generation stops with an error that says so instead of empty text or scores that
/// no JSON can hold (issue 14 item 5).</summary>
public sealed class NonFiniteLogitsTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "managedt5-nan-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    /// <summary>tiny-flan-t5 with one weight tensor overwritten by <paramref name="value"/>.</summary>
    private string ModelWith(string tensor, float value)
    {
        string source = Fixtures.Model("tiny-flan-t5");
        Directory.CreateDirectory(_dir);
        foreach (string file in Directory.GetFiles(source))
            if (Path.GetFileName(file) != "model.safetensors") File.Copy(file, Path.Combine(_dir, Path.GetFileName(file)));
        var writer = new SafeTensorsWriter();
        using (Checkpoint checkpoint = Checkpoint.Open(source))
            foreach (string name in checkpoint.Names)
            {
                HostTensor t = checkpoint.GetTensor(name);
                float[] values = t.ToSingleArray();
                if (name == tensor) Array.Fill(values, value);
                writer.Add(name, values, t.Shape.ToArray());
            }
        writer.Save(Path.Combine(_dir, "model.safetensors"));
        return _dir;
    }

    public static TheoryData<string, float, string> Cases => new()
    {
        { "decoder.final_layer_norm.weight", float.NaN, "greedy" },
        { "decoder.final_layer_norm.weight", float.NaN, "processed" },
        { "decoder.final_layer_norm.weight", float.NaN, "sample" },
        { "decoder.final_layer_norm.weight", float.NaN, "beam" },
        { "shared.weight", float.PositiveInfinity, "greedy" },
        { "lm_head.weight", float.PositiveInfinity, "beam" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void NonFiniteLogitsStopGenerationSayingSo(string tensor, float value, string mode)
    {
        using T5TextGenerator t5 = T5TextGenerator.Load(ModelWith(tensor, value));
        var o = new GenerationOptions { MaxNewTokens = 5 };
        o = mode switch
        {
            "processed" => o with { RepetitionPenalty = 1.3f },
            "sample" => o with { DoSample = true, Seed = 1 },
            "beam" => o with { NumBeams = 3, NumReturnSequences = 2 },
            _ => o,
        };
        var e = Assert.Throws<InvalidOperationException>(() => t5.Generate("translate English to German: Hello.", o));
        Assert.Contains("NaN or infinite logits", e.Message);
        Assert.Contains("step 1", e.Message);
    }
}
