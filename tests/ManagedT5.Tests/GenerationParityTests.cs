// generate() against HF's outputs in reference.json: every case of every fixture model, exact sequences, beam
// scores within 1e-4, on every backend.
using System.Text.Json;
using ManagedT5.Generation;
using ManagedT5.Kernels;
using ManagedT5.Model;

namespace ManagedT5.Tests;

public sealed class GenerationParityTests(ITestOutputHelper output)
{
    /// <summary>Every case of every model on the fast backends; the slow backends run greedy and beam4 of the main
    /// model by default and the rest under the "Slow" trait.</summary>
    public static IEnumerable<object[]> Cases() => AllCases().Where(c => !IsSlow(c));

    public static IEnumerable<object[]> SlowCases() => AllCases().Where(IsSlow);

    /// <summary>The case name standing for every case of a model whose folder is not in this tree: its cases come from
    /// its reference.json, so it gets this one case, which skips naming the folder.</summary>
    internal const string AbsentModelCase = "(fixture absent)";

    private static IEnumerable<object[]> AllCases() =>
        from b in Backends.Selected
        from m in Fixtures.ModelNames
        from c in Fixtures.Has(m) ? ReferenceJson.Load(m).Cases.Select(c => c.Name) : [AbsentModelCase]
        select new object[] { m, c, b };

    private static bool IsSlow(object[] c) =>
        Backends.SlowBackends.Contains((string)c[2]) && !((string)c[0] == Fixtures.ModelNames[0] && (string)c[1] is "greedy" or "beam4");

    [SkippableTheory]
    [MemberData(nameof(SlowCases))]
    [Trait("Category", "Slow")]
    public void GenerateMatchesHuggingFaceOnSlowBackends(string modelName, string caseName, string backendName) =>
        GenerateMatchesHuggingFace(modelName, caseName, backendName);

    /// <summary>HF generate() settings from reference.json as our options, through the option table every caller uses.</summary>
    internal static GenerationOptions OptionsFrom(JsonElement s)
    {
        var o = new GenerationOptions();
        foreach (JsonProperty p in s.EnumerateObject())
            o = GenerationOptionTable.Find(p.Name) is { } option && option.TryConvert(p.Value, out object? value)
                ? option.Set(o, value)
                : throw new InvalidOperationException($"setting {p.Name} = {p.Value.GetRawText()} not mapped");
        return o;
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void GenerateMatchesHuggingFace(string modelName, string caseName, string backendName)
    {
        ReferenceJson reference = ReferenceJson.Load(modelName);
        GenerationCase expected = reference.Cases.Single(c => c.Name == caseName);
        using IBackend backend = Backends.Factories[backendName]();
        using T5Model model = T5Model.Load(Fixtures.Model(modelName), backend);
        int[][] prompts = caseName.StartsWith("long") ? [reference.LongInputIds] : reference.InputIds;

        GenerationOutput result = Generator.Generate(model, prompts, OptionsFrom(expected.Settings));

        AssertSequences(expected.Sequences, result.Sequences, model.Config.PadTokenId);
        if (expected.SequencesScores is { } scores)
        {
            Assert.NotNull(result.SequencesScores);
            double worst = scores.Select((s, i) => Math.Abs(s - result.SequencesScores![i])).Max();
            output.WriteLine($"{modelName}/{caseName}: max |sequences_scores diff| = {worst:E2}");
            Assert.True(worst <= 1e-4, $"beam scores differ by {worst:E3}");
        }
    }

    /// <summary>Exact equality of every row; HF rows may carry trailing padding that ours omit, or vice versa.</summary>
    internal static void AssertSequences(int[][] expected, int[][] actual, int pad)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            int[] e = TrimPad(expected[i], pad), a = TrimPad(actual[i], pad);
            Assert.True(e.SequenceEqual(a), $"row {i}: expected [{string.Join(", ", e)}]\n        got [{string.Join(", ", a)}]");
        }
    }

    private static int[] TrimPad(int[] row, int pad)
    {
        int n = row.Length;
        while (n > 1 && row[n - 1] == pad) n--;
        return row[..n];
    }
}
