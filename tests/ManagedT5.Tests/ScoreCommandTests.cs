// managedt5 score, run as a real process on files made from the metric fixture (tests/fixtures/metrics): the corpus
// numbers must be the reference implementations' per-segment statistics added up; bad input gives one line naming
// the file (and line) and a non-zero exit.
using System.Text;
using System.Text.Json;
using ManagedT5.Evaluation;

namespace ManagedT5.Tests;

public sealed class ScoreCommandTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("managedt5-score-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    static JsonElement Metrics { get; } =
        JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Fixtures.Root, "metrics", "metric-cases.json"))).RootElement;

    // The single-reference cases whose texts fit on one line (a segment file cannot hold a newline).
    static List<JsonElement> OneLineCases() => Metrics.GetProperty("cases").EnumerateArray()
        .Where(c => c.GetProperty("refs").GetArrayLength() == 1)
        .Where(c => !(c.GetProperty("hyp").GetString()! + c.GetProperty("refs")[0].GetString()).Any(ch => ch is '\n' or '\r'))
        .ToList();

    string Write(string name, IEnumerable<string> lines)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, string.Concat(lines.Select(l => l + "\n")), new UTF8Encoding(false));
        return path;
    }

    static (int Code, string Out, string Err) Score(params string[] args) => CliTests.Run(["score", .. args]);

    [Fact]
    public void Json_holds_the_reference_statistics_of_every_metric()
    {
        List<JsonElement> cases = OneLineCases();
        string hyps = Write("hyps.txt", cases.Select(c => c.GetProperty("hyp").GetString()!));
        string refs = Write("refs.txt", cases.Select(c => c.GetProperty("refs")[0].GetString()!));
        var (code, output, error) = Score("--hyps", hyps, "--refs", refs, "--json",
            "--metrics", "bleu,chrf,chrf++,ter,rouge1,rouge2,rougeL,rougeLsum,exact");
        Assert.True(code == 0, error);
        JsonElement json = JsonDocument.Parse(output).RootElement;
        Assert.Equal(["bleu", "chrf", "chrf++", "ter", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact"], json.EnumerateObject().Select(p => p.Name));

        // BLEU: sacreBLEU's per-sentence counts, totals and lengths (13a), added up, and the score from them.
        JsonElement bleu = json.GetProperty("bleu");
        var sentences = cases.Select(c => c.GetProperty("sentence").GetProperty("bleu").GetProperty("13a")).ToList();
        long[] counts = Sum(sentences, "counts"), totals = Sum(sentences, "totals");
        long sysLen = sentences.Sum(s => s.GetProperty("sys_len").GetInt64()), refLen = sentences.Sum(s => s.GetProperty("ref_len").GetInt64());
        Assert.Equal(counts, bleu.GetProperty("counts").EnumerateArray().Select(x => x.GetInt64()));
        Assert.Equal(totals, bleu.GetProperty("totals").EnumerateArray().Select(x => x.GetInt64()));
        Assert.Equal(sysLen, bleu.GetProperty("sys_len").GetInt64());
        Assert.Equal(refLen, bleu.GetProperty("ref_len").GetInt64());
        BleuScore expected = Bleu.ComputeBleu(counts, totals, sysLen, refLen, BleuSmoothing.Exp);
        Assert.Equal(expected.Score, bleu.GetProperty("score").GetDouble());
        Assert.Equal(expected.BrevityPenalty, bleu.GetProperty("bp").GetDouble());
        Assert.Equal("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0", bleu.GetProperty("signature").GetString());

        // TER: sacreBLEU's per-sentence edits and reference lengths, added up.
        var ters = cases.Select(c => c.GetProperty("sentence").GetProperty("ter")).ToList();
        long edits = ters.Sum(t => t.GetProperty("num_edits").GetInt64());
        double refLength = 0;
        foreach (var t in ters) refLength += t.GetProperty("ref_length").GetDouble();
        Assert.Equal(edits, json.GetProperty("ter").GetProperty("num_edits").GetInt64());
        Assert.Equal(100 * (edits / refLength), json.GetProperty("ter").GetProperty("score").GetDouble());

        // chrF / chrF++: the library's corpus score over the same segments (itself checked against sacreBLEU).
        var hypList = cases.Select(c => c.GetProperty("hyp").GetString()!).ToList();
        var refList = cases.Select(c => (IReadOnlyList<string>)[c.GetProperty("refs")[0].GetString()!]).ToList();
        Assert.Equal(new Chrf().CorpusScore(hypList, refList).Score, json.GetProperty("chrf").GetProperty("score").GetDouble());
        Assert.Equal(new Chrf(ChrfOptions.ChrfPlusPlus).CorpusScore(hypList, refList).Score, json.GetProperty("chrf++").GetProperty("score").GetDouble());

        // ROUGE: the mean of rouge_score's per-case precision, recall and F; exact match: the mean of the per-case values.
        foreach (string type in new[] { "rouge1", "rouge2", "rougeL", "rougeLsum" })
            foreach (string field in new[] { "precision", "recall", "fmeasure" })
                Assert.Equal(Mean(cases, c => c.GetProperty("rouge").GetProperty("no_stemmer").GetProperty(type).GetProperty(field).GetDouble()),
                    json.GetProperty(type).GetProperty(field).GetDouble());
        Assert.Equal(Mean(cases, c => c.GetProperty("exact_match").GetProperty("strip").GetProperty("value").GetDouble()), json.GetProperty("exact").GetProperty("strict").GetDouble());
        Assert.Equal(Mean(cases, c => c.GetProperty("exact_match").GetProperty("squad").GetProperty("value").GetDouble()), json.GetProperty("exact").GetProperty("squad").GetDouble());
    }

    [Fact]
    public void Tokenizer_lowercase_and_stemmer_options_reach_the_metrics()
    {
        List<JsonElement> cases = OneLineCases();
        string hyps = Write("hyps.txt", cases.Select(c => c.GetProperty("hyp").GetString()!));
        string refs = Write("refs.txt", cases.Select(c => c.GetProperty("refs")[0].GetString()!));
        var (code, output, error) = Score("--hyps", hyps, "--refs", refs, "--json", "--metrics", "bleu,rougeL", "--tokenize", "intl", "--lowercase", "--rouge-stemmer");
        Assert.True(code == 0, error);
        JsonElement json = JsonDocument.Parse(output).RootElement;
        Assert.Equal("nrefs:1|case:lc|eff:no|tok:intl|smooth:exp|version:2.6.0", json.GetProperty("bleu").GetProperty("signature").GetString());
        Assert.Equal(Mean(cases, c => c.GetProperty("rouge").GetProperty("stemmer").GetProperty("rougeL").GetProperty("fmeasure").GetDouble()),
            json.GetProperty("rougeL").GetProperty("fmeasure").GetDouble());
    }

    [Fact]
    public void Several_reference_files_give_each_segment_several_references()
    {
        string hyps = Write("hyps.txt", ["The cat is on the mat.", "Hola mundo"]);
        string refs1 = Write("refs1.txt", ["The cat sat on the mat.", "¡Hola, mundo!"]);
        string refs2 = Write("refs2.txt", ["There is a cat on the mat.", "Hola mundo."]);
        var (code, output, error) = Score("--hyps", hyps, "--refs", refs1, "--refs", refs2, "--json", "--metrics", "bleu,ter,exact");
        Assert.True(code == 0, error);
        JsonElement json = JsonDocument.Parse(output).RootElement;
        IReadOnlyList<IReadOnlyList<string>> refs = [["The cat sat on the mat.", "There is a cat on the mat."], ["¡Hola, mundo!", "Hola mundo."]];
        BleuScore bleu = new Bleu().CorpusScore(["The cat is on the mat.", "Hola mundo"], refs);
        Assert.Equal(bleu.Score, json.GetProperty("bleu").GetProperty("score").GetDouble());
        Assert.StartsWith("nrefs:2|", json.GetProperty("bleu").GetProperty("signature").GetString());
        // Segment 2 equals only its reference from the second file ("Hola mundo."), segment 1 equals none.
        Assert.Equal(0.5, json.GetProperty("exact").GetProperty("squad").GetDouble());
    }

    [Fact]
    public void Text_output_is_sacrebleu_lines()
    {
        string hyps = Write("hyps.txt", ["The cat sat on the mat."]);
        string refs = Write("refs.txt", ["The cat sat on the mat."]);
        var (code, output, error) = Score("--hyps", hyps, "--refs", refs, "--metrics", "bleu,chrf");
        Assert.True(code == 0, error);
        Assert.StartsWith("BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 hyp_len = 7 ref_len = 7)", output);
        Assert.Contains("chrF2 = 100.00", output);
    }

    [Fact]
    public void Mismatched_line_counts_name_the_file_and_line()
    {
        string hyps = Write("hyps.txt", ["a", "b", "c"]);
        string refs = Write("refs.txt", ["a", "b"]);
        var (code, output, error) = Score("--hyps", hyps, "--refs", refs);
        AssertOneLineError(code, output, error, "--refs", "refs.txt", "line 3");
    }

    [Fact]
    public void Invalid_utf8_names_the_file_and_line()
    {
        string hyps = Write("hyps.txt", ["a", "b"]);
        string refs = Path.Combine(_dir, "refs.txt");
        File.WriteAllBytes(refs, [(byte)'a', (byte)'\n', 0xC3, 0x28, (byte)'\n']);
        var (code, output, error) = Score("--hyps", hyps, "--refs", refs);
        AssertOneLineError(code, output, error, "--refs", "refs.txt", "line 2", "UTF-8");
    }

    [Fact]
    public void Empty_and_missing_files_are_named()
    {
        string empty = Path.Combine(_dir, "empty.txt");
        File.WriteAllBytes(empty, []);
        string refs = Write("refs.txt", ["a"]);
        var (code, output, error) = Score("--hyps", empty, "--refs", refs);
        AssertOneLineError(code, output, error, "--hyps", "empty.txt", "empty");
        (code, output, error) = Score("--hyps", refs, "--refs", Path.Combine(_dir, "nope.txt"));
        AssertOneLineError(code, output, error, "--refs", "nope.txt", "does not exist");
    }

    [Theory]
    [InlineData("--metrics", "bleu,meteor", "meteor")]
    [InlineData("--tokenize", "spm", "spm")]
    [InlineData("--rouge-tokenizer", "nltk", "nltk")]
    public void Unknown_metric_or_tokenizer_is_a_usage_error(string flag, string value, string named)
    {
        string hyps = Write("hyps.txt", ["a"]);
        var (code, output, error) = Score("--hyps", hyps, "--refs", hyps, flag, value);
        Assert.Equal(2, code);
        AssertOneLineError(code, output, error, flag, named);
    }

    [Fact]
    public void Missing_refs_is_a_usage_error()
    {
        string hyps = Write("hyps.txt", ["a"]);
        var (code, _, error) = Score("--hyps", hyps);
        Assert.Equal(2, code);
        Assert.Contains("--refs", error);
    }

    static void AssertOneLineError(int code, string output, string error, params string[] mentions)
    {
        Assert.NotEqual(0, code);
        Assert.Equal("", output);
        string[] lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, error);
        Assert.StartsWith("error: ", lines[0]);
        foreach (string m in mentions) Assert.Contains(m, lines[0]);
    }

    static long[] Sum(List<JsonElement> items, string name)
    {
        var sum = new long[4];
        foreach (var item in items)
        {
            int i = 0;
            foreach (var x in item.GetProperty(name).EnumerateArray()) sum[i++] += x.GetInt64();
        }
        return sum;
    }

    static double Mean(List<JsonElement> cases, Func<JsonElement, double> value)
    {
        double sum = 0;
        foreach (var c in cases) sum += value(c);
        return sum / cases.Count;
    }
}
