// chrF, chrF++ and TER against sacreBLEU 2.6.0: per-order statistics, scores, formatted lines and signatures of the
// 48 fixture cases, and the corpus scores.
using System.Text.Json;
using static ManagedT5.Evaluation.Tests.MetricFixtures;

namespace ManagedT5.Evaluation.Tests;

public class ChrfTerTests
{
    public static TheoryData<string> Ids => CaseIds();

    static readonly (string Key, ChrfOptions Options)[] ChrfConfigs = [("chrf", new ChrfOptions()), ("chrf++", ChrfOptions.ChrfPlusPlus)];

    [Theory]
    [MemberData(nameof(Ids))]
    public void Sentence_chrf_matches_sacrebleu(string id)
    {
        JsonElement c = Case(id);
        foreach (var (key, options) in ChrfConfigs)
            AssertChrf(c.GetProperty("sentence").GetProperty("chrf").GetProperty(key), new Chrf(options).SentenceScore(Hyp(c), Refs(c)), $"{id} {key}");
    }

    [Theory]
    [MemberData(nameof(Ids))]
    public void Sentence_ter_matches_sacrebleu(string id)
    {
        JsonElement c = Case(id);
        var ter = new Ter();
        JsonElement tokens = c.GetProperty("tokens");
        Assert.Equal(tokens.GetProperty("hyp").GetProperty("sacrebleu").GetProperty("ter").GetString(), string.Join(' ', ter.Words(Hyp(c))));
        string[] refs = Refs(c);
        for (int r = 0; r < refs.Length; r++)
            Assert.Equal(tokens.GetProperty("refs")[r].GetProperty("sacrebleu").GetProperty("ter").GetString(), string.Join(' ', ter.Words(refs[r])));
        AssertTer(c.GetProperty("sentence").GetProperty("ter"), ter.SentenceScore(Hyp(c), refs), id);
    }

    [Theory]
    [InlineData("all")]
    [InlineData("single_ref")]
    public void Corpus_chrf_and_ter_match_sacrebleu(string block)
    {
        JsonElement corpus = Json.GetProperty("corpus").GetProperty(block);
        var (hyps, refs) = BleuTests.CorpusSegments(corpus);
        foreach (var (key, options) in ChrfConfigs)
            AssertChrf(corpus.GetProperty("chrf").GetProperty(key), new Chrf(options).CorpusScore(hyps, refs), $"corpus {block} {key}");
        AssertTer(corpus.GetProperty("ter"), new Ter().CorpusScore(hyps, refs), $"corpus {block}");
    }

    static void AssertChrf(JsonElement expected, ChrfScore actual, string what)
    {
        Assert.Equal(Longs(expected, "stats"), actual.Stats);
        Exact(D(expected, "score"), actual.Score, what + " score");
        Assert.Equal(expected.GetProperty("formatted").GetString(), actual.ToString());
        Assert.Equal(expected.GetProperty("signature").GetString(), actual.Signature);
    }

    static void AssertTer(JsonElement expected, TerScore actual, string what)
    {
        Assert.Equal(expected.GetProperty("num_edits").GetInt64(), actual.NumEdits);
        Exact(D(expected, "ref_length"), actual.RefLength, what + " ref_length");
        Exact(D(expected, "score"), actual.Score, what + " score");
        Assert.Equal(expected.GetProperty("formatted").GetString(), actual.ToString());
        Assert.Equal(expected.GetProperty("signature").GetString(), actual.Signature);
    }

    [Fact]
    public void Ter_counts_a_shift_as_one_edit()
    {
        // Moving "on the mat" to the front is one shift, not three deletions and three insertions.
        var score = new Ter().SentenceScore("on the mat the cat sat", ["the cat sat on the mat"]);
        Assert.Equal(1, score.NumEdits);
    }

    [Fact]
    public void Ter_is_case_sensitive_on_request()
    {
        Assert.Equal(0, new Ter().SentenceScore("The Cat", ["the cat"]).NumEdits);
        var sensitive = new Ter(new TerOptions { CaseSensitive = true }).SentenceScore("The Cat", ["the cat"]);
        Assert.Equal(2, sensitive.NumEdits);
        Assert.StartsWith("nrefs:1|case:mixed|", sensitive.Signature);
    }
}
