// reference.json of a fixture model: prompts, ids and HF's generate() outputs for each decoding setting.
using System.Text.Json;

namespace ManagedT5.Tests;

internal sealed record GenerationCase(string Name, JsonElement Settings, int[][] Sequences, double[]? SequencesScores,
    string[] Texts, double? MinTop2Gap);

internal sealed record ReferenceJson(string[] Texts, int[][] InputIds, int[] LongInputIds, IReadOnlyList<GenerationCase> Cases)
{
    public static ReferenceJson Load(string modelName)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Model(modelName), "reference.json")));
        JsonElement r = doc.RootElement;
        static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
        var cases = new List<GenerationCase>();
        foreach (JsonProperty c in r.GetProperty("cases").EnumerateObject())
        {
            JsonElement v = c.Value;
            cases.Add(new GenerationCase(c.Name, v.GetProperty("settings").Clone(),
                v.GetProperty("sequences").EnumerateArray().Select(Ints).ToArray(),
                v.TryGetProperty("sequences_scores", out JsonElement s) ? s.EnumerateArray().Select(x => x.GetDouble()).ToArray() : null,
                v.TryGetProperty("texts", out JsonElement t) ? t.EnumerateArray().Select(x => x.GetString()!).ToArray() : [],
                v.TryGetProperty("min_top2_gap", out JsonElement g) && g.ValueKind == JsonValueKind.Number ? g.GetDouble() : null));
        }
        return new ReferenceJson(
            r.GetProperty("texts").EnumerateArray().Select(x => x.GetString()!).ToArray(),
            r.GetProperty("input_ids").EnumerateArray().Select(Ints).ToArray(),
            Ints(r.GetProperty("long_input_ids")),
            cases);
    }
}
