// Forward-pass parity with HuggingFace transformers on the three fixture models, on every backend:
// encoder/decoder hidden states, logits, position biases, the long prompt; KV-cache decoding vs teacher forcing; and
// the encoder-only checkpoint (T5EncoderModel). Tensor names come from the model's module tree (T5Modules).
using ManagedT5.Kernels;
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Tests;

/// <summary>Collects observed tensors as host arrays.</summary>
internal sealed class Recorder(IBackend backend) : ITensorObserver
{
    public readonly Dictionary<string, float[]> Tensors = new();

    public void Observe(string name, IBuffer buffer, int[] shape)
    {
        var data = new float[shape.Aggregate(1, (a, d) => a * d)];
        backend.Download(buffer, data);
        Tensors[name] = data;
    }
}

public sealed class ForwardParityTests(ITestOutputHelper output)
{
    private const double Tolerance = 1e-4;   // max abs diff / max abs of the reference, per tensor
    /// <summary>A T5EncoderModel checkpoint (no decoder weights) whose reference holds HF's encoder output.</summary>
    internal const string EncoderOnlyModel = "tiny-sentence-t5";

    private sealed record Reference(SafeTensorsFile File)
    {
        public float[] F(string name) => File.GetTensor(name).ToSingleArray();
        public int[] I(string name) => File.GetTensor(name).ToInt64Array().Select(v => (int)v).ToArray();
        public int[] Shape(string name) => File.Find(name)!.Shape;
    }

    /// <summary>A backend, the fixture model on it, and its reference tensors, disposed together.</summary>
    private sealed class Opened(IBackend backend, T5Model model, SafeTensorsFile file) : IDisposable
    {
        public IBackend Backend => backend;
        public T5Model Model => model;
        public Reference Reference { get; } = new(file);
        public void Dispose() { model.Dispose(); file.Dispose(); backend.Dispose(); }
    }

    private static Opened Open(string modelName, string backendName)
    {
        IBackend backend = Backends.Factories[backendName]();
        T5Model model = T5Model.Load(Fixtures.Model(modelName), backend);
        return new Opened(backend, model, SafeTensorsFile.Open(Path.Combine(Fixtures.Model(modelName), "reference.safetensors")));
    }

    private void Check(string what, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        double error = Errors.RelativeError(expected, actual);
        output.WriteLine($"{what,-48} rel err {error:E2}");
        Assert.True(error <= Tolerance, $"{what}: relative error {error:E3} exceeds {Tolerance:E0}");
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.SlowModelsByBackend), MemberType = typeof(Backends))]
    [Trait("Category", "Slow")]
    public void SlowBackendsMatchHuggingFaceOnEveryModel(string modelName, string backendName)
    {
        BatchForwardMatchesHuggingFace(modelName, backendName);
        StepByStepDecodingEqualsTeacherForcing(modelName, backendName);
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.ModelsByBackend), MemberType = typeof(Backends))]
    public void BatchForwardMatchesHuggingFace(string modelName, string backendName)
    {
        using var f = Open(modelName, backendName);
        var (backend, model, reference) = (f.Backend, f.Model, f.Reference);
        T5Config c = model.Config;

        int[] ids = reference.I("batch.input_ids"), mask = reference.I("batch.attention_mask");
        int batch = reference.Shape("batch.input_ids")[0], seq = reference.Shape("batch.input_ids")[1];
        var recorder = new Recorder(backend);
        using EncoderOutput encoded = model.Encode(ids, mask, batch, recorder);

        // Encoder: embeddings, each block's output, final norm (HF's encoder_hidden_states layout).
        float[] encoderStates = reference.F("batch.encoder_hidden_states");
        int stateSize = batch * seq * c.DModel;
        IReadOnlyList<string> encoderNames = model.Modules.Encoder.HiddenStates;
        Assert.Equal(c.NumLayers + 1, encoderNames.Count);
        for (int i = 0; i < encoderNames.Count; i++)
            Check($"{modelName} encoder_hidden_states[{i}]", recorder.Tensors[encoderNames[i]], encoderStates.AsSpan(i * stateSize, stateSize));
        var last = new float[stateSize];
        backend.Download(encoded.Hidden, last);
        Check($"{modelName} encoder_last_hidden_state", last, reference.F("batch.encoder_last_hidden_state"));
        Check($"{modelName} encoder_position_bias", recorder.Tensors[model.Modules.Encoder.Blocks[0].SelfAttention.PositionBias],
            reference.F("batch.encoder_position_bias"));

        // Decoder, teacher-forced over decoder_input_ids.
        int[] decoderIds = reference.I("batch.decoder_input_ids");
        int steps = reference.Shape("batch.decoder_input_ids")[1];
        using DecoderState state = model.StartDecoder(encoded, capacity: steps, maxTokensPerCall: steps);
        recorder.Tensors.Clear();
        model.Decode(state, decoderIds, steps, recorder);

        float[] decoderStates = reference.F("batch.decoder_hidden_states");
        int decSize = batch * steps * c.DModel;
        IReadOnlyList<string> decoderNames = model.Modules.Decoder!.HiddenStates;
        Assert.Equal(c.NumDecoderLayers + 1, decoderNames.Count);
        for (int i = 0; i < decoderNames.Count; i++)
            Check($"{modelName} decoder_hidden_states[{i}]", recorder.Tensors[decoderNames[i]], decoderStates.AsSpan(i * decSize, decSize));
        Check($"{modelName} decoder_position_bias", recorder.Tensors[model.Modules.Decoder.Blocks[0].SelfAttention.PositionBias],
            reference.F("batch.decoder_position_bias"));
        var logits = new float[batch * steps * c.VocabSize];
        backend.Download(state.Logits, logits);
        Check($"{modelName} logits", logits, reference.F("batch.logits"));
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.ModelsByBackend), MemberType = typeof(Backends))]
    public void LongPromptEncoderMatchesHuggingFace(string modelName, string backendName)
    {
        using var f = Open(modelName, backendName);
        var (backend, model, reference) = (f.Backend, f.Model, f.Reference);
        int[] ids = ReferenceJson.Load(modelName).LongInputIds;
        Assert.True(ids.Length > model.Config.RelativeAttentionMaxDistance, "the long prompt must exceed max_distance");
        var recorder = new Recorder(backend);
        using EncoderOutput encoded = model.Encode(ids, Enumerable.Repeat(1, ids.Length).ToArray(), 1, recorder);
        var hidden = new float[ids.Length * model.Config.DModel];
        backend.Download(encoded.Hidden, hidden);
        Check($"{modelName} long.encoder_last_hidden_state", hidden, reference.F("long.encoder_last_hidden_state"));
        Check($"{modelName} long.encoder_position_bias", recorder.Tensors[model.Modules.Encoder.Blocks[0].SelfAttention.PositionBias],
            reference.F("long.encoder_position_bias"));
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.Names), MemberType = typeof(Backends))]
    public void EncoderOnlyCheckpointMatchesHuggingFace(string backendName)
    {
        // tiny-sentence-t5: a T5EncoderModel checkpoint (shared.weight and encoder.* only; its config still says
        // num_decoder_layers 2). HF's last_hidden_state is after the encoder's final layer norm.
        using var f = Open(EncoderOnlyModel, backendName);
        var (backend, model, reference) = (f.Backend, f.Model, f.Reference);
        Assert.False(model.HasDecoder);
        Assert.Empty(model.UnexpectedTensors);
        int[] ids = reference.I("batch.input_ids"), mask = reference.I("batch.attention_mask");
        int batch = reference.Shape("batch.input_ids")[0];
        using EncoderOutput encoded = model.Encode(ids, mask, batch);
        var hidden = new float[ids.Length * model.Config.DModel];
        backend.Download(encoded.Hidden, hidden);
        Check($"{EncoderOnlyModel} last_hidden_state", hidden, reference.F("batch.last_hidden_state"));
    }

    [SkippableTheory]
    [MemberData(nameof(Backends.ModelsByBackend), MemberType = typeof(Backends))]
    public void StepByStepDecodingEqualsTeacherForcing(string modelName, string backendName)
    {
        using var f = Open(modelName, backendName);
        var (backend, model, reference) = (f.Backend, f.Model, f.Reference);
        int[] ids = reference.I("batch.input_ids"), mask = reference.I("batch.attention_mask");
        int batch = reference.Shape("batch.input_ids")[0];
        int[] decoderIds = reference.I("batch.decoder_input_ids");
        int steps = reference.Shape("batch.decoder_input_ids")[1], vocab = model.Config.VocabSize;

        using EncoderOutput encoded = model.Encode(ids, mask, batch);
        using DecoderState forced = model.StartDecoder(encoded, steps, maxTokensPerCall: steps);
        model.Decode(forced, decoderIds, steps);
        var all = new float[batch * steps * vocab];
        backend.Download(forced.Logits, all);

        using DecoderState stepwise = model.StartDecoder(encoded, steps);
        var token = new int[batch];
        var row = new float[batch * vocab];
        double worst = 0;
        for (int t = 0; t < steps; t++)
        {
            for (int b = 0; b < batch; b++) token[b] = decoderIds[b * steps + t];
            model.Decode(stepwise, token, 1);
            backend.Download(stepwise.Logits, row);
            for (int b = 0; b < batch; b++)
            {
                double e = Errors.RelativeError(all.AsSpan((b * steps + t) * vocab, vocab), row.AsSpan(b * vocab, vocab));
                worst = Math.Max(worst, e);
            }
        }
        output.WriteLine($"{modelName} on {backendName}: step-by-step vs teacher-forced logits rel err {worst:E2}");
        Assert.True(worst <= 1e-5, $"cached decoding differs from teacher forcing by {worst:E3}");
    }
}
