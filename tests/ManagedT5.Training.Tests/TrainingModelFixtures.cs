// The training references (tests/fixtures/training) and models (tests/fixtures/models) as the gradient, LoRA and
// model tests read them: the step-1 batch of a reference file and reference scalars.
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
