// ROUGE against rouge_score (with NLTK 3.8's Porter stemmer) and exact match against the fixture's definitions:
// tokens, per-reference and best-reference scores of the 48 cases, corpus means, and the Unicode-aware variant.
using System.Text.Json;
using static ManagedT5.Evaluation.Tests.MetricFixtures;

namespace ManagedT5.Evaluation.Tests;

public class RougeExactMatchTests
{
    public static TheoryData<string> Ids => CaseIds();
    static readonly string[] Types = ["rouge1", "rouge2", "rougeL", "rougeLsum"];
    static readonly (string Key, bool Stem)[] StemConfigs = [("no_stemmer", false), ("stemmer", true)];

    [Theory]
    [MemberData(nameof(Ids))]
    public void Rouge_matches_rouge_score(string id)
    {
        JsonElement c = Case(id);
        string[] refs = Refs(c);
        foreach (var (key, stem) in StemConfigs)
        {
            var rouge = new Rouge(new RougeOptions { UseStemmer = stem });
            JsonElement tokens = c.GetProperty("tokens");
            Assert.Equal(tokens.GetProperty("hyp").GetProperty("rouge").GetProperty(key).EnumerateArray().Select(t => t.GetString()), rouge.Tokenize(Hyp(c)));
            for (int r = 0; r < refs.Length; r++)
                Assert.Equal(tokens.GetProperty("refs")[r].GetProperty("rouge").GetProperty(key).EnumerateArray().Select(t => t.GetString()), rouge.Tokenize(refs[r]));

            JsonElement expected = c.GetProperty("rouge").GetProperty(key);
            var best = rouge.ScoreMulti(refs, Hyp(c), Types);
            foreach (string type in Types) AssertRouge(expected.GetProperty(type), best[type], $"{id} {key} {type}");
            if (expected.TryGetProperty("per_reference", out JsonElement perReference))
                for (int r = 0; r < refs.Length; r++)
                {
                    var single = rouge.Score(refs[r], Hyp(c), Types);
                    foreach (string type in Types) AssertRouge(perReference[r].GetProperty(type), single[type], $"{id} {key} ref {r} {type}");
                }
        }
    }

    static void AssertRouge(JsonElement expected, RougeScore actual, string what)
    {
        Exact(D(expected, "precision"), actual.Precision, what + " precision");
        Exact(D(expected, "recall"), actual.Recall, what + " recall");
        Exact(D(expected, "fmeasure"), actual.Fmeasure, what + " fmeasure");
    }

    [Theory]
    [MemberData(nameof(Ids))]
    public void Exact_match_matches_the_definitions(string id)
    {
        JsonElement c = Case(id);
        string[] refs = Refs(c);
        JsonElement em = c.GetProperty("exact_match");
        Exact(D(em.GetProperty("strip"), "value"), ExactMatch.Strict(Hyp(c), refs), id + " strict");
        Exact(D(em.GetProperty("squad"), "value"), ExactMatch.Squad(Hyp(c), refs), id + " squad");
        Assert.Equal(em.GetProperty("squad").GetProperty("hyp_normalized").GetString(), ExactMatch.SquadNormalize(Hyp(c)));
        for (int r = 0; r < refs.Length; r++)
            Assert.Equal(em.GetProperty("squad").GetProperty("refs_normalized")[r].GetString(), ExactMatch.SquadNormalize(refs[r]));
    }

    [Theory]
    [InlineData("all")]
    [InlineData("single_ref")]
    public void Corpus_means_match(string block)
    {
        JsonElement corpus = Json.GetProperty("corpus").GetProperty(block);
        var (hyps, refs) = BleuTests.CorpusSegments(corpus);
        foreach (var (key, stem) in StemConfigs)
        {
            var rouge = new Rouge(new RougeOptions { UseStemmer = stem });
            var scores = hyps.Select((h, i) => rouge.ScoreMulti(refs[i], h, Types)).ToList();
            foreach (string type in Types)
            {
                double sum = 0;
                foreach (var s in scores) sum += s[type].Fmeasure;
                Exact(D(corpus.GetProperty("rouge_mean_fmeasure").GetProperty(key), type), sum / scores.Count, $"corpus {block} {key} {type}");
            }
        }
        JsonElement accuracy = corpus.GetProperty("exact_match_accuracy");
        Exact(D(accuracy, "strip"), hyps.Select((h, i) => ExactMatch.Strict(h, refs[i])).Sum() / hyps.Count, "strict accuracy");
        Exact(D(accuracy, "squad"), hyps.Select((h, i) => ExactMatch.Squad(h, refs[i])).Sum() / hyps.Count, "squad accuracy");
    }

    [Fact]
    public void Rouge_score_tokenization_scores_identical_chinese_zero_the_unicode_variant_does_not()
    {
        string text = "我喜欢机器学习。";
        Assert.Equal(0.0, new Rouge().Score(text, text, ["rouge1"])["rouge1"].Fmeasure);
        var unicode = new Rouge(new RougeOptions { Tokenization = RougeTokenization.Unicode });
        Assert.Equal(["我", "喜", "欢", "机", "器", "学", "习"], unicode.Tokenize(text));
        Assert.Equal(1.0, unicode.Score(text, text, ["rouge1", "rougeL"])["rougeL"].Fmeasure);
        Assert.Equal(["straße", "réussi", "привет", "мир"], unicode.Tokenize("Straße réussi — Привет, мир!"));
    }

    [Theory]
    [InlineData("caresses", "caress")]
    [InlineData("ponies", "poni")]
    [InlineData("ties", "tie")]
    [InlineData("agreed", "agre")]
    [InlineData("hopping", "hop")]
    [InlineData("happy", "happi")]
    [InlineData("relational", "relat")]
    [InlineData("generalization", "gener")]
    [InlineData("dying", "die")]
    [InlineData("controll", "control")]
    [InlineData("quickly", "quickli")]
    [InlineData("company", "compani")]
    public void Porter_stemmer_gives_nltk_stems(string word, string stem) => Assert.Equal(stem, PorterStemmer.Stem(word));

    [Fact]
    public void Unknown_rouge_type_names_the_option()
    {
        var e = Assert.Throws<ArgumentException>(() => new Rouge().Score("a", "a", ["rougeX"]));
        Assert.Equal("rouge_types", e.ParamName);
    }
}
