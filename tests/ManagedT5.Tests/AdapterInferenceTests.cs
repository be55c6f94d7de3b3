// Inference with a LoRA adapter: merged at load it reproduces PEFT's logits (tiny-flan-t5 + lora_final, the batch of
// step 1 of the fixture run), also in bf16/int8; kept apart on a shared base it gives exactly the merged-at-load
// results, leaves the base untouched, adds only the targeted Linears' bytes and serves requests concurrently.
using ManagedT5.Adapters;
using ManagedT5.Generation;
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu;
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Tests;

public sealed class AdapterInferenceTests(ITestOutputHelper output)
{
    private const double Tolerance = 1e-4;   // the bound for the logits with the final adapter (relative)
    private static string ModelDir => Fixtures.Model("tiny-flan-t5");
    private static string Final => AdapterFormatTests.Lora("lora_final");

    /// <summary>The batch of step 1 (grads.safetensors) laid out by HF's rules: decoder_input_ids = labels shifted
    /// right, start token 0, -100 -> 0.</summary>
    private sealed record Batch(int[] InputIds, int[] Mask, int[] DecoderIds, int Rows, int Steps);

    private static Batch StepOneBatch()
    {
        using var file = SafeTensorsFile.Open(Path.Combine(Fixtures.Root, "training", "tiny-flan-t5", "grads.safetensors"));
        int[] I(string name) => file.GetTensor(name).ToInt64Array().Select(v => (int)v).ToArray();
        int[] labels = I("batch.labels");
        int rows = file.Find("batch.labels")!.Shape[0], steps = file.Find("batch.labels")!.Shape[1];
        var decoder = new int[labels.Length];
        for (int b = 0; b < rows; b++)
            for (int t = 1; t < steps; t++)
                decoder[b * steps + t] = Math.Max(labels[b * steps + t - 1], 0);   // -100 -> 0 (pad); t = 0 stays 0 (start)
        return new Batch(I("batch.input_ids"), I("batch.attention_mask"), decoder, rows, steps);
    }

    private static float[] ReferenceLogits()
    {
        using var file = SafeTensorsFile.Open(Path.Combine(Fixtures.Root, "training", "tiny-flan-t5", "lora.safetensors"));
        return file.GetTensor("final.batch0.logits").ToSingleArray();
    }

    /// <summary>Teacher-forced logits of the batch: [rows, steps, vocab].</summary>
    private static float[] Logits(T5Model model, Batch batch)
    {
        using EncoderOutput encoded = model.Encode(batch.InputIds, batch.Mask, batch.Rows);
        using DecoderState state = model.StartDecoder(encoded, batch.Steps, maxTokensPerCall: batch.Steps);
        model.Decode(state, batch.DecoderIds, batch.Steps);
        var logits = new float[batch.Rows * batch.Steps * model.Config.VocabSize];
        model.Backend.Download(state.Logits, logits);
        return logits;
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("reference")]
    public void MergedAtLoadMatchesPeftLogits(string backendName)
    {
        using IBackend backend = Backends.Factories[backendName]();
        Batch batch = StepOneBatch();
        float[] expected = ReferenceLogits();
        using T5Model merged = T5Model.Load(ModelDir, backend, new T5ModelOptions { Adapter = LoraAdapter.Load(Final) });
        using T5Model plain = T5Model.Load(ModelDir, backend);
        double error = Errors.RelativeError(expected, Logits(merged, batch));
        double baseError = Errors.RelativeError(expected, Logits(plain, batch));
        output.WriteLine($"{backendName}: logits with lora_final merged: rel err {error:E2}; the base model's: {baseError:E2}");
        Assert.True(error <= Tolerance, $"logits error {error:E3} exceeds {Tolerance}");
        Assert.True(baseError > 100 * Tolerance, "the adapter changes the logits (else this test could not fail)");
        Assert.NotNull(merged.Adapter);
        Assert.Null(plain.Adapter);
    }

    [Theory]
    // Bounds from this test's measurements (bf16 5.7e-3, int8 3.2e-2: the formats' own rounding, as in
    // QuantizedWeightsTests); the base model in the same format is 0.34 away, so the adapter was merged.
    [InlineData(WeightFormat.BF16, 0.01)]
    [InlineData(WeightFormat.Int8, 0.04)]
    public void MergedBeforeConversionToBf16AndInt8(WeightFormat format, double bound)
    {
        using var backend = new CpuBackend();
        Batch batch = StepOneBatch();
        float[] expected = ReferenceLogits();
        using T5Model merged = T5Model.Load(ModelDir, backend, new T5ModelOptions { WeightFormat = format, Adapter = LoraAdapter.Load(Final) });
        using T5Model plain = T5Model.Load(ModelDir, backend, new T5ModelOptions { WeightFormat = format });
        double error = Errors.RelativeError(expected, Logits(merged, batch));
        double baseError = Errors.RelativeError(expected, Logits(plain, batch));
        output.WriteLine($"{format}: lora_final merged then converted: rel err {error:E2}; the base in {format}: {baseError:E2}");
        Assert.True(error <= bound, $"logits error {error:E3} exceeds {bound}");
        Assert.True(error < baseError / 10, "the merged model is much closer to the adapter's logits than the base");
        Assert.Equal(plain.WeightBytes, merged.WeightBytes);   // same format, same sizes

        // And it generates, through the public API (--adapter with --dtype).
        using T5TextGenerator generator = T5TextGenerator.Load(ModelDir, new T5LoadOptions { WeightFormat = format, Adapter = Final });
        GenerationResult result = generator.Generate("translate English to German: How old are you?", new GenerationOptions { MaxNewTokens = 8 });
        Assert.True(result.TokenIds.Length > 1);
    }

    private static readonly string[] Prompts =
    [
        "translate English to Spanish: Hello world",
        "translate English to German: How old are you?",
        "translate English to French: The weather is nice today.",
        "Summarize: the cat sat on the mat and looked at the dog for a long time.",
    ];

    [Fact]
    public void KeptApartEqualsMergedAtLoadAndLeavesTheBaseAlone()
    {
        var greedy = new GenerationOptions { MaxNewTokens = 10 };
        int[][] Tokens(T5TextGenerator g) => g.Generate(Prompts, greedy).Select(r => r.TokenIds).ToArray();
        int[][] baseTokens, mergedTokens;
        using (T5TextGenerator plain = T5TextGenerator.Load(ModelDir)) baseTokens = Tokens(plain);
        using (T5TextGenerator merged = T5TextGenerator.Load(ModelDir, new T5LoadOptions { Adapter = Final })) mergedTokens = Tokens(merged);
        Assert.NotEqual(baseTokens, mergedTokens);   // the adapter changes what is generated

        using T5TextGenerator generator = T5TextGenerator.Load(ModelDir);
        long baseBytes = generator.Model.WeightBytes;
        T5TextGenerator final = generator.AddAdapter("final", Final);
        T5TextGenerator initial = generator.AddAdapter("initial", AdapterFormatTests.Lora("lora_initial"));
        Assert.Same(final, generator.ForAdapter("final"));
        Assert.Same(generator, generator.ForAdapter(null));
        Assert.Same(generator, final.ForAdapter(null));
        Assert.Equal(["final", "initial"], generator.AdapterNames.Order());

        Assert.Equal(mergedTokens, Tokens(final));
        Assert.Equal(baseTokens, Tokens(generator));
        Assert.NotEqual(mergedTokens, Tokens(initial));

        // Memory: a view owns only its 14 merged q/v Linears ([48, 32] f32 each); everything else is the base's.
        Assert.Equal(14L * 48 * 32 * sizeof(float), final.Model.OwnedWeightBytes);
        Assert.Equal(baseBytes, final.Model.WeightBytes);
        Assert.Equal(baseBytes, generator.Model.WeightBytes);
        Assert.Same(generator.Model.Weights.Shared, final.Model.Weights.Shared);
        Assert.Same(generator.Model.Weights.Encoder[0].SelfAttention.K, final.Model.Weights.Encoder[0].SelfAttention.K);
        Assert.NotSame(generator.Model.Weights.Encoder[0].SelfAttention.Q, final.Model.Weights.Encoder[0].SelfAttention.Q);

        var e = Assert.Throws<ArgumentException>(() => generator.ForAdapter("nope"));
        Assert.Equal("adapter", e.ParamName);
        Assert.Contains("final, initial", e.Message);
        Assert.Throws<ArgumentException>(() => generator.AddAdapter("final", Final));
    }

    [Fact]
    public void KeptApartLogitsAreTheMergedOnesExactlyInEveryFormat()
    {
        using var backend = new CpuBackend();
        Batch batch = StepOneBatch();
        LoraAdapter adapter = LoraAdapter.Load(Final);
        foreach (WeightFormat? format in new WeightFormat?[] { null, WeightFormat.BF16, WeightFormat.Int8 })
        {
            using T5Model merged = T5Model.Load(ModelDir, backend, new T5ModelOptions { WeightFormat = format, Adapter = adapter });
            using T5Model baseModel = T5Model.Load(ModelDir, backend, new T5ModelOptions { WeightFormat = format });
            float[] before = Logits(baseModel, batch);
            using (T5Model view = baseModel.WithAdapter(adapter))
            {
                Assert.Equal(Logits(merged, batch), Logits(view, batch));
                Assert.True(view.OwnedWeightBytes < baseModel.WeightBytes / 10, $"{format}: {view.OwnedWeightBytes} of {baseModel.WeightBytes} bytes");
                Assert.Throws<InvalidOperationException>(() => view.WithAdapter(adapter));
            }
            Assert.Equal(before, Logits(baseModel, batch));   // disposing the view left the base whole
        }
    }

    [Fact]
    public async Task RequestsWithDifferentAdaptersRunConcurrently()
    {
        var greedy = new GenerationOptions { MaxNewTokens = 10 };
        using T5TextGenerator generator = T5TextGenerator.Load(ModelDir);
        generator.AddAdapter("final", Final);
        generator.AddAdapter("initial", AdapterFormatTests.Lora("lora_initial"));
        string?[] names = [null, "final", "initial"];
        var expected = names.ToDictionary(n => n ?? "", n => generator.ForAdapter(n).Generate(Prompts, greedy).Select(r => r.Text).ToArray());
        var tasks = Enumerable.Range(0, 12).Select(i => (Name: names[i % 3], Task: generator.ForAdapter(names[i % 3]).GenerateAsync(Prompts, greedy))).ToArray();
        await Task.WhenAll(tasks.Select(t => t.Task));
        foreach (var (name, task) in tasks) Assert.Equal(expected[name ?? ""], (await task).Select(r => r.Text).ToArray());
    }

    [Fact]
    public void AdapterThatDoesNotFitFailsNamingModulesAndShapes()
    {
        string dir = Path.Combine(Path.GetTempPath(), "mt5-adapter-fit-" + Guid.NewGuid().ToString("N"));
        try
        {
            // lora_final with its decoder.block.1 modules renamed to block 5, which this 2-block decoder lacks.
            LoraAdapter final = LoraAdapter.Load(Final);
            new LoraAdapter(final.Config, final.Modules.Select(m => m with { Module = m.Module.Replace("decoder.block.1.", "decoder.block.5.") })).Save(dir);
            var e = Assert.Throws<ModelLoadException>(() => T5TextGenerator.Load(ModelDir, new T5LoadOptions { Adapter = dir }));
            Assert.Contains("decoder.block.5.layer.0.SelfAttention.q' is not in the model", e.Message);
            Assert.Contains("decoder.block.1.layer.1.EncDecAttention.v' is selected by target_modules", e.Message);
            Assert.Contains(dir, e.Message);

            using T5TextGenerator generator = T5TextGenerator.Load(ModelDir);
            e = Assert.Throws<ModelLoadException>(() => generator.AddAdapter("bad", dir));
            Assert.Contains("is not in the model", e.Message);
            Assert.Empty(generator.AdapterNames);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
