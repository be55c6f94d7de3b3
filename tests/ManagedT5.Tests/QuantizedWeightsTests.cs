// bf16 and int8 weights on the fixtures: logits error against the fp32 reference and greedy top-1 agreement,
// asserted with the bounds measured here (printed by the test). F32 checkpoints are converted on load.
using ManagedT5.Generation;
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu;
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Tests;

public sealed class QuantizedWeightsTests(ITestOutputHelper output)
{
    [Theory]
    // model, format, max logits error (rel. to max |ref|), min top-1 agreement over all (row, step) positions
    [InlineData("tiny-flan-t5", WeightFormat.BF16, 0.02, 0.95)]
    [InlineData("tiny-flan-t5", WeightFormat.Int8, 0.03, 0.90)]
    [InlineData("tiny-t5-v1_0", WeightFormat.BF16, 0.02, 0.95)]
    [InlineData("tiny-t5-v1_0", WeightFormat.Int8, 0.03, 0.90)]
    public void LogitsStayCloseToFp32(string modelName, WeightFormat format, double maxError, double minAgreement)
    {
        using var backend = new CpuBackend();
        using T5Model model = T5Model.Load(Fixtures.Model(modelName), backend, new T5ModelOptions { WeightFormat = format });
        using var file = SafeTensorsFile.Open(Path.Combine(Fixtures.Model(modelName), "reference.safetensors"));
        int[] ids = file.GetTensor("batch.input_ids").ToInt64Array().Select(v => (int)v).ToArray();
        int[] mask = file.GetTensor("batch.attention_mask").ToInt64Array().Select(v => (int)v).ToArray();
        int[] decoderIds = file.GetTensor("batch.decoder_input_ids").ToInt64Array().Select(v => (int)v).ToArray();
        float[] expected = file.GetTensor("batch.logits").ToSingleArray();
        int batch = file.Find("batch.input_ids")!.Shape[0], steps = file.Find("batch.decoder_input_ids")!.Shape[1];
        int vocab = model.Config.VocabSize;

        using EncoderOutput encoded = model.Encode(ids, mask, batch);
        using DecoderState state = model.StartDecoder(encoded, steps, maxTokensPerCall: steps);
        model.Decode(state, decoderIds, steps);
        var logits = new float[batch * steps * vocab];
        backend.Download(state.Logits, logits);

        double error = Errors.RelativeError(expected, logits);
        int agree = 0, positions = batch * steps;
        for (int p = 0; p < positions; p++)
            if (LogitsProcessors.ArgMax(logits.AsSpan(p * vocab, vocab)) == LogitsProcessors.ArgMax(expected.AsSpan(p * vocab, vocab))) agree++;
        double agreement = (double)agree / positions;
        output.WriteLine($"{modelName} {format}: logits rel err {error:E2} (bound {maxError}), top-1 agreement {agree}/{positions} (bound {minAgreement:P0})");
        Assert.True(error <= maxError, $"logits error {error:E3} exceeds {maxError}");
        Assert.True(error > 1e-6, "a quantized model that matches fp32 exactly means the format was not applied");
        Assert.True(agreement >= minAgreement, $"top-1 agreement {agreement:P1} below {minAgreement:P0}");
    }
}
