// The training references (tests/fixtures/training) and models (tests/fixtures/models) as the gradient, LoRA and
// model tests read them: the step-1 batch of a grads file, reference tensors by name, and PEFT adapters.
using ManagedT5.Kernels;
using ManagedT5.Loading;

namespace ManagedT5.Training.Tests;

internal static class TrainingModelFixtures
{
    /// <summary>tests/fixtures, found by walking up from the test binary.</summary>
    public static string Root { get; } = FindRoot();

    public static string Model(string name) => Path.Combine(Root, "models", name);
    public static string Training(string name) => Path.Combine(Root, "training", name);

    /// <summary>The batch of step 1 stored in a reference file (batch.input_ids, batch.attention_mask, batch.labels; I64).</summary>
    public static TrainingBatch Batch(SafeTensorsFile file)
    {
        HostTensor ids = file.GetTensor("batch.input_ids"), mask = file.GetTensor("batch.attention_mask"), labels = file.GetTensor("batch.labels");
        int[] Ints(HostTensor t) => [.. t.ToInt64Array().Select(v => checked((int)v))];
        return TrainingBatch.FromPadded(ids.Shape[0], ids.Shape[1], labels.Shape[1], Ints(ids), Ints(mask), Ints(labels), decoderStartTokenId: 0);
    }

    /// <summary>A scalar reference value (e.g. loss) stored as a tensor.</summary>
    public static float Scalar(SafeTensorsFile file, string name) => file.GetTensor(name).GetSingle(0);

    /// <summary>A PEFT adapter folder read directly: (module, A, B) per LoRA'd Linear in file order, rank and scale.</summary>
    public static (List<(string Module, float[] A, float[] B)> Modules, int Rank, float Scale) Lora(string directory)
    {
        string json = File.ReadAllText(Path.Combine(directory, "adapter_config.json"));
        using var config = System.Text.Json.JsonDocument.Parse(json);
        int rank = config.RootElement.GetProperty("r").GetInt32();
        double alpha = config.RootElement.GetProperty("lora_alpha").GetDouble();
        using SafeTensorsFile file = SafeTensorsFile.Open(Path.Combine(directory, "adapter_model.safetensors"));
        var modules = new List<(string, float[], float[])>();
        const string prefix = "base_model.model.", suffixA = ".lora_A.weight";
        foreach (SafeTensorInfo t in file.Tensors.Where(t => t.Name.EndsWith(suffixA, StringComparison.Ordinal)))
        {
            string module = t.Name[prefix.Length..^suffixA.Length];
            modules.Add((module, file.GetTensor(t.Name).ToSingleArray(), file.GetTensor(prefix + module + ".lora_B.weight").ToSingleArray()));
        }
        return (modules, rank, (float)(alpha / rank));
    }

    private static string FindRoot()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "tests", "fixtures");
            if (Directory.Exists(Path.Combine(candidate, "training"))) return candidate;
        }
        throw new DirectoryNotFoundException("tests/fixtures not found above " + AppContext.BaseDirectory);
    }
}
