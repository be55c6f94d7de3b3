// Where the training fixtures live (tests/fixtures in the repository, found by walking up from the test binary), and
// reference.json's per-step logs, for the outer loop's tests (optimizer, schedules, data, trainer, checkpoints).
using System.Text.Json;

namespace ManagedT5.Training.Tests;

internal static class TrainerFixtures
{
    public static string Root { get; } = FindRoot();

    public static string Model(string name) => Path.Combine(Root, "models", name);
    public static string Training(string name) => Path.Combine(Root, "training", name);
    public static string Instructions => Training("instructions.jsonl");

    /// <summary>reference.json of a model's training fixture.</summary>
    public static JsonElement Reference(string model) =>
        JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Training(model), "reference.json"))).RootElement;

    /// <summary>The per-step log of a run ("full_ft" or "lora"): (step, loss, lr, grad_norm).</summary>
    public static (int Step, double Loss, double Lr, double GradNorm)[] Log(string model, string run) =>
        Reference(model).GetProperty(run).GetProperty("log").EnumerateArray()
            .Select(e => (e.GetProperty("step").GetInt32(), e.GetProperty("loss").GetDouble(), e.GetProperty("lr").GetDouble(), e.GetProperty("grad_norm").GetDouble()))
            .ToArray();

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
