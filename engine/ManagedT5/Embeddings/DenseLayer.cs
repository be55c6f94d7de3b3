// sentence_transformers.models.Dense: y = activation(x W^T + b) on the pooled vector. 2_Dense/config.json gives
// in_features, out_features, bias and activation_function (torch's class path: Identity or Tanh); the weights are
// linear.weight [out_features, in_features] and linear.bias [out_features] in 2_Dense/model.safetensors. Kept in fp32
// on the host: even sentence-t5-xxl's Dense is 768 x 1024, tiny beside the encoder.
using System.Numerics.Tensors;
using System.Text.Json;
using ManagedT5.IO;
using ManagedT5.Loading;

namespace ManagedT5.Embeddings;

/// <summary>Activations a Dense module may apply.</summary>
public enum DenseActivation
{
    /// <summary>torch.nn.modules.linear.Identity.</summary>
    Identity,
    /// <summary>torch.nn.modules.activation.Tanh.</summary>
    Tanh,
}

/// <summary>A loaded Dense module.</summary>
public sealed class DenseLayer
{
    /// <summary>Weights file sentence-transformers 3 writes.</summary>
    public const string WeightsFile = "model.safetensors";

    private readonly float[] _weight;   // W: [out_features, in_features]
    private readonly float[]? _bias;    // b: [out_features]

    /// <summary>in_features.</summary>
    public int InFeatures { get; }
    /// <summary>out_features.</summary>
    public int OutFeatures { get; }
    /// <summary>activation_function.</summary>
    public DenseActivation Activation { get; }

    /// <summary>A Dense from its parts (weight [out, in] row-major, optional bias [out]).</summary>
    public DenseLayer(int inFeatures, int outFeatures, float[] weight, float[]? bias, DenseActivation activation)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(inFeatures, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(outFeatures, 1);
        if (weight.Length != (long)inFeatures * outFeatures) throw new ArgumentException($"weight: expected [{outFeatures}, {inFeatures}].", nameof(weight));
        if (bias is not null && bias.Length != outFeatures) throw new ArgumentException($"bias: expected [{outFeatures}].", nameof(bias));
        (InFeatures, OutFeatures, _weight, _bias, Activation) = (inFeatures, outFeatures, weight, bias, activation);
    }

    /// <summary>Loads the module in <paramref name="folder"/>; <paramref name="inputDimension"/> is the width of what
    /// reaches it (the pooled vector, or the previous Dense's output), which in_features must equal.</summary>
    /// <exception cref="ModelLoadException">A bad config, an in_features that does not match, a pytorch .bin only, or
    /// weights of the wrong name or shape.</exception>
    public static DenseLayer Load(string folder, int inputDimension)
    {
        string path = Path.Combine(folder, "config.json");
        using JsonDocument doc = SentenceTransformerFolder.ReadJson(path);
        JsonElement root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
            throw new ModelLoadException($"'{path}' must be a JSON object with in_features, out_features, bias and activation_function.", path);
        int inFeatures = PositiveInt(root, "in_features", path), outFeatures = PositiveInt(root, "out_features", path);
        if (inFeatures != inputDimension)
            throw new ModelLoadException(
                $"'{path}': in_features is {inFeatures}, but the vector reaching this Dense has {inputDimension} values (the model's d_model " +
                "times the pooling modes, or the previous Dense's out_features). The module does not belong to this model.", path);
        bool hasBias = !root.TryGetProperty("bias", out JsonElement b) || b.ValueKind != JsonValueKind.False;
        string activationName = root.TryGetProperty("activation_function", out JsonElement a) && a.ValueKind == JsonValueKind.String
            ? a.GetString()! : "torch.nn.modules.activation.Tanh";   // sentence-transformers' default
        DenseActivation activation = activationName switch
        {
            "torch.nn.modules.linear.Identity" or "torch.nn.Identity" or "Identity" => DenseActivation.Identity,
            "torch.nn.modules.activation.Tanh" or "torch.nn.Tanh" or "Tanh" => DenseActivation.Tanh,
            _ => throw new ModelLoadException($"'{path}': activation_function {InputFile.Escaped(activationName)} is not supported; " +
                                              "ManagedT5 runs torch.nn.modules.linear.Identity and torch.nn.modules.activation.Tanh.", path),
        };

        string weights = Path.Combine(folder, WeightsFile);
        if (!File.Exists(weights) && new FileInfo(weights).LinkTarget is null)
        {
            bool bin = File.Exists(Path.Combine(folder, "pytorch_model.bin"));
            throw new ModelLoadException(
                bin ? $"'{folder}' holds pytorch_model.bin, which ManagedT5 cannot read (it is a Python pickle); convert it to '{weights}' " +
                      "with sentence-transformers 3 or later (SentenceTransformer(path).save(path, safe_serialization=True))."
                    : $"'{weights}' does not exist: the Dense module needs its linear.weight. Download the module's folder again.", weights);
        }
        using SafeTensorsFile file = SafeTensorsFile.Open(weights);
        float[] w = Tensor(file, "linear.weight", [outFeatures, inFeatures], path);
        float[]? bias = null;
        if (hasBias) bias = Tensor(file, "linear.bias", [outFeatures], path);
        return new DenseLayer(inFeatures, outFeatures, w, bias, activation);
    }

    private static float[] Tensor(SafeTensorsFile file, string name, int[] shape, string configPath)
    {
        SafeTensorInfo info = file.Find(name) ?? throw new ModelLoadException(
            $"'{file.Path}' has no tensor '{name}'{(name.EndsWith("bias", StringComparison.Ordinal) ? $" although '{configPath}' says bias: true" : "")}; " +
            $"it holds {string.Join(", ", file.Tensors.Select(t => t.Name))}.", file.Path);
        if (!info.Shape.SequenceEqual(shape))
            throw new ModelLoadException($"'{file.Path}': '{name}' is [{string.Join(", ", info.Shape)}], but '{configPath}' " +
                                         $"(in_features, out_features) makes it [{string.Join(", ", shape)}].", file.Path);
        if (info.DType is not (Kernels.DType.F32 or Kernels.DType.F16 or Kernels.DType.BF16))
            throw new ModelLoadException($"'{file.Path}': '{name}' is {info.DType}; a Dense weight must be F32, F16 or BF16.", file.Path);
        return file.GetTensor(name).ToSingleArray();
    }

    private static int PositiveInt(JsonElement root, string name, string path) =>
        root.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int n) && n >= 1 ? n
            : throw new ModelLoadException($"'{path}': {name} must be a positive whole number.", path);

    /// <summary>output[r] = activation(W input[r] + b) for each of <paramref name="rows"/> rows: input [rows,
    /// in_features], output [rows, out_features].</summary>
    public void Forward(ReadOnlySpan<float> input, Span<float> output, int rows)
    {
        if (input.Length != (long)rows * InFeatures || output.Length != (long)rows * OutFeatures)
            throw new ArgumentException($"Dense: expected input [{rows}, {InFeatures}] and output [{rows}, {OutFeatures}].", nameof(input));
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> x = input.Slice(r * InFeatures, InFeatures);
            Span<float> y = output.Slice(r * OutFeatures, OutFeatures);
            for (int o = 0; o < OutFeatures; o++)
                y[o] = TensorPrimitives.Dot(x, _weight.AsSpan(o * InFeatures, InFeatures)) + (_bias?[o] ?? 0f);
            if (Activation == DenseActivation.Tanh) TensorPrimitives.Tanh(y, y);
        }
    }
}
