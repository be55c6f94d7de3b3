// BLEU against sacreBLEU 2.6.0: every tokenizer's output, every sentence-level statistic, score, formatted line and
// signature of the 48 fixture cases, corpus BLEU over all of them, and the smoothing methods and options.
using System.Text.Json;
using static ManagedT5.Evaluation.Tests.MetricFixtures;

namespace ManagedT5.Evaluation.Tests;

public class BleuTests
{
    public static TheoryData<string> Ids => CaseIds();

    [Theory]
    [MemberData(nameof(Ids))]
    public void Tokenizers_match_sacrebleu(string id)
    {
        JsonElement c = Case(id);
        JsonElement tokens = c.GetProperty("tokens");
        string[] refs = Refs(c);
        foreach (var (key, tokenize, lowercase) in BleuConfigs)
        {
            var bleu = new Bleu(new BleuOptions { Tokenize = tokenize, Lowercase = lowercase });
            Assert.Equal(tokens.GetProperty("hyp").GetProperty("sacrebleu").GetProperty(key).GetString(), bleu.Preprocess(Hyp(c)));
            for (int r = 0; r < refs.Length; r++)
                Assert.Equal(tokens.GetProperty("refs")[r].GetProperty("sacrebleu").GetProperty(key).GetString(), bleu.Preprocess(refs[r]));
        }
    }

    [Theory]
    [MemberData(nameof(Ids))]
    public void Sentence_bleu_matches_sacrebleu(string id)
    {
        JsonElement c = Case(id);
        foreach (var (key, tokenize, lowercase) in BleuConfigs)
        {
            JsonElement expected = c.GetProperty("sentence").GetProperty("bleu").GetProperty(key);
            BleuScore actual = new Bleu(new BleuOptions { Tokenize = tokenize, Lowercase = lowercase }).SentenceScore(Hyp(c), Refs(c));
            AssertBleu(expected, actual, $"{id} {key}");
        }
    }

    [Theory]
    [InlineData("all")]
    [InlineData("single_ref")]
    public void Corpus_bleu_matches_sacrebleu(string block)
    {
        JsonElement corpus = Json.GetProperty("corpus").GetProperty(block);
        var (hyps, refs) = CorpusSegments(corpus);
        foreach (var (key, tokenize, lowercase) in BleuConfigs)
        {
            BleuScore actual = new Bleu(new BleuOptions { Tokenize = tokenize, Lowercase = lowercase }).CorpusScore(hyps, refs);
            AssertBleu(corpus.GetProperty("bleu").GetProperty(key), actual, $"corpus {block} {key}");
        }
    }

    /// <summary>The corpus block's hypotheses and per-segment references, in the block's case order.</summary>
    public static (List<string> Hyps, List<IReadOnlyList<string>> Refs) CorpusSegments(JsonElement corpus)
    {
        var hyps = new List<string>();
        var refs = new List<IReadOnlyList<string>>();
        foreach (JsonElement id in corpus.GetProperty("case_ids").EnumerateArray())
        {
            JsonElement c = Case(id.GetString()!);
            hyps.Add(Hyp(c));
            refs.Add(Refs(c));
        }
        return (hyps, refs);
    }

    static void AssertBleu(JsonElement expected, BleuScore actual, string what)
    {
        Assert.Equal(Longs(expected, "counts").Select(x => (double)x), actual.Counts);
        Assert.Equal(Longs(expected, "totals").Select(x => (double)x), actual.Totals);
        double[] precisions = Doubles(expected, "precisions");
        for (int n = 0; n < precisions.Length; n++) Exact(precisions[n], actual.Precisions[n], $"{what} precision {n + 1}");
        Assert.Equal(expected.GetProperty("sys_len").GetInt64(), actual.SysLen);
        Assert.Equal(expected.GetProperty("ref_len").GetInt64(), actual.RefLen);
        Exact(D(expected, "ratio"), actual.Ratio, $"{what} ratio");
        ExactViaLibm(D(expected, "bp"), actual.BrevityPenalty, $"{what} bp");
        ExactViaLibm(D(expected, "score"), actual.Score, $"{what} score");
        Assert.Equal(expected.GetProperty("formatted").GetString(), actual.ToString());
        Assert.Equal(expected.GetProperty("signature").GetString(), actual.Signature);
    }

    [Fact]
    public void Identical_sentences_score_the_sacrebleu_rounding_not_100()
    {
        var score = new Bleu().SentenceScore("The cat sat on the mat.", ["The cat sat on the mat."]);
        Assert.Equal(100.00000000000004, score.Score);
    }

    // Values from sacreBLEU 2.6.0's compute_bleu on these statistics, worked by hand from its formula:
    // floor: p2 = 100*0.1/3; add-k: orders 2..4 get +1 match and +1 total; none: a zero order makes BLEU ~0.
    [Fact]
    public void Smoothing_methods_follow_sacrebleu_compute_bleu()
    {
        long[] correct = [3, 0, 0, 0], total = [4, 3, 2, 1];
        var floor = Bleu.ComputeBleu(correct, total, 4, 4, BleuSmoothing.Floor);
        Assert.Equal(new[] { 75.0, 100.0 * 0.1 / 3, 100.0 * 0.1 / 2, 100.0 * 0.1 / 1 }, floor.Precisions);
        Assert.Equal(Math.Exp((Math.Log(75.0) + Math.Log(100.0 * 0.1 / 3) + Math.Log(100.0 * 0.1 / 2) + Math.Log(100.0 * 0.1)) / 4), floor.Score);

        var addK = Bleu.ComputeBleu(correct, total, 4, 4, BleuSmoothing.AddK);
        Assert.Equal(new double[] { 3, 1, 1, 1 }, addK.Counts);
        Assert.Equal(new double[] { 4, 4, 3, 2 }, addK.Totals);
        Assert.Equal(new[] { 75.0, 25.0, 100.0 * 1 / 3, 50.0 }, addK.Precisions);

        var exp = Bleu.ComputeBleu(correct, total, 4, 4, BleuSmoothing.Exp);
        Assert.Equal(new[] { 75.0, 100.0 / (2 * 3), 100.0 / (4 * 2), 100.0 / (8 * 1) }, exp.Precisions);

        var none = Bleu.ComputeBleu(correct, total, 4, 4, BleuSmoothing.None);
        Assert.Equal(0.0, none.Score);
        Assert.Equal(new[] { 75.0, 0, 0, 0 }, none.Precisions);
    }

    [Fact]
    public void Effective_order_drops_orders_the_hypothesis_is_too_short_for()
    {
        // Two tokens: orders 3 and 4 have no n-grams; with effective order BLEU is the mean over orders 1..2.
        var sentence = new Bleu().SentenceScore("a b", ["a b"]);
        Assert.Equal(100.0, sentence.Score, 12);
        var corpus = new Bleu().CorpusScore(["a b"], [["a b"]]);
        Assert.Equal(0.0, corpus.Score, 12);
        Assert.Contains("eff:no", corpus.Signature);
    }

    [Fact]
    public void Signature_names_smoothing_values_as_sacrebleu_does()
    {
        Assert.Equal("nrefs:1|case:mixed|eff:yes|tok:13a|smooth:floor[0.10]|version:2.6.0",
            new Bleu(new BleuOptions { Smoothing = BleuSmoothing.Floor }).SentenceScore("a", ["a"]).Signature);
        Assert.Equal("nrefs:2|case:lc|eff:no|tok:intl|smooth:add-k[1.00]|version:2.6.0",
            new Bleu(new BleuOptions { Smoothing = BleuSmoothing.AddK, Lowercase = true, Tokenize = BleuTokenize.Intl }).CorpusScore(["a"], [["a", "b"]]).Signature);
    }

    [Fact]
    public void Bad_arguments_name_the_option()
    {
        var e = Assert.Throws<ArgumentException>(() => new Bleu(new BleuOptions { MaxNgramOrder = 0 }));
        Assert.Equal("max_ngram_order", e.ParamName);
        var m = Assert.Throws<ArgumentException>(() => new Bleu().CorpusScore(["a", "b"], [["a"]]));
        Assert.Equal("references", m.ParamName);
        Assert.Throws<ArgumentException>(() => new Bleu().SentenceScore("a", []));
    }
}
