// chrF (Popović, 2015) and chrF++ (Popović, 2017) exactly as sacreBLEU 2.6.0 computes them: character n-grams
// without whitespace, optional word n-grams, best reference per segment, and the reproducibility signature.
using System.Globalization;

namespace ManagedT5.Evaluation;

/// <summary>Options for <see cref="Chrf"/>, named as sacreBLEU's <c>CHRF(...)</c> arguments.</summary>
public sealed record ChrfOptions
{
    /// <summary><c>char_order</c>: character n-gram order (default 6).</summary>
    public int CharOrder { get; init; } = 6;
    /// <summary><c>word_order</c>: word n-gram order; 0 is chrF (default), 2 is chrF++.</summary>
    public int WordOrder { get; init; }
    /// <summary><c>beta</c>: recall is beta times as important as precision (default 2).</summary>
    public int Beta { get; init; } = 2;
    /// <summary><c>lowercase</c>: compare case-insensitively (Python's lower()).</summary>
    public bool Lowercase { get; init; }
    /// <summary><c>whitespace</c>: keep whitespace inside character n-grams (default: removed).</summary>
    public bool Whitespace { get; init; }
    /// <summary><c>eps_smoothing</c>: chrF++.py / Moses / NLTK smoothing instead of sacreBLEU's effective order.</summary>
    public bool EpsSmoothing { get; init; }

    /// <summary>chrF++ with sacreBLEU's defaults (word order 2).</summary>
    public static ChrfOptions ChrfPlusPlus => new() { WordOrder = 2 };

    internal void Validate()
    {
        if (CharOrder < 0) throw new ArgumentException($"char_order: must be 0 or more, got {CharOrder}.", "char_order");
        if (WordOrder < 0) throw new ArgumentException($"word_order: must be 0 or more, got {WordOrder}.", "word_order");
        if (CharOrder + WordOrder == 0) throw new ArgumentException("char_order: char_order and word_order cannot both be 0.", "char_order");
        if (Beta < 0) throw new ArgumentException($"beta: must be 0 or more, got {Beta}.", "beta");
    }
}

/// <summary>A chrF score with its statistics.</summary>
public sealed record ChrfScore
{
    /// <summary>chrF on the 0-100 scale.</summary>
    public required double Score { get; init; }
    /// <summary>[hypothesis, reference, matched] n-gram counts for each order: character orders, then word orders.</summary>
    public required long[] Stats { get; init; }
    /// <summary>The metric's name: chrF2, or chrF2++ with word order 2.</summary>
    public required string Name { get; init; }
    /// <summary>The reproducibility signature, e.g. <c>nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0</c>.</summary>
    public required string Signature { get; init; }

    /// <summary>sacreBLEU's one-line form, e.g. <c>chrF2++ = 61.96</c>.</summary>
    public override string ToString() => $"{Name} = {PythonText.FormatFixed(Score, 2)}";
}

/// <summary>
/// sacreBLEU's chrF / chrF++: an F-beta score over character n-grams (whitespace removed) and, for chrF++, word
/// n-grams (punctuation split off word ends). With several references a segment keeps the statistics of its
/// best-scoring reference; the corpus score is computed from the summed statistics.
/// </summary>
public sealed class Chrf
{
    static readonly string Puncts = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    readonly ChrfOptions _options;

    /// <summary>A chrF metric (defaults: chrF2, character order 6, no word n-grams).</summary>
    public Chrf(ChrfOptions? options = null)
    {
        _options = options ?? new ChrfOptions();
        _options.Validate();
    }

    /// <summary>One hypothesis against its references.</summary>
    public ChrfScore SentenceScore(string hypothesis, IReadOnlyList<string> references)
    {
        ArgumentNullException.ThrowIfNull(hypothesis);
        MetricInput.Check([hypothesis], [references]);
        return CorpusScore([hypothesis], [references]);
    }

    /// <summary>A corpus: <paramref name="references"/>[i] holds the references of segment i.</summary>
    public ChrfScore CorpusScore(IReadOnlyList<string> hypotheses, IReadOnlyList<IReadOnlyList<string>> references)
    {
        MetricInput.Check(hypotheses, references);
        int order = _options.CharOrder + _options.WordOrder;
        var sum = new long[3 * order];
        for (int s = 0; s < hypotheses.Count; s++)
        {
            long[] stats = SegmentStatistics(hypotheses[s], references[s]);
            for (int i = 0; i < sum.Length; i++) sum[i] += stats[i];
        }
        return new ChrfScore
        {
            Score = FScore(sum),
            Stats = sum,
            Name = "chrF" + _options.Beta.ToString(CultureInfo.InvariantCulture) + new string('+', _options.WordOrder),
            Signature = $"nrefs:{MetricInput.NumRefs(references)}|case:{(_options.Lowercase ? "lc" : "mixed")}|eff:{(_options.EpsSmoothing ? "no" : "yes")}" +
                        $"|nc:{_options.CharOrder}|nw:{_options.WordOrder}|space:{(_options.Whitespace ? "yes" : "no")}|version:{Bleu.SacreBleuVersion}",
        };
    }

    // The statistics of the reference with the best F score (the first one on a tie).
    long[] SegmentStatistics(string hypothesis, IReadOnlyList<string> references)
    {
        List<Dictionary<string, int>> hypNgrams = Ngrams(Preprocess(hypothesis));
        long[] best = [];
        double bestF = -1.0;
        foreach (string reference in references)
        {
            List<Dictionary<string, int>> refNgrams = Ngrams(Preprocess(reference));
            var stats = new long[3 * hypNgrams.Count];
            for (int o = 0; o < hypNgrams.Count; o++)
            {
                long hypCount = 0, match = 0;
                foreach (var (ngram, count) in hypNgrams[o])
                {
                    hypCount += count;
                    if (refNgrams[o].TryGetValue(ngram, out int refCount)) match += Math.Min(count, refCount);
                }
                // No hits are counted for an order the reference has no n-gram of.
                stats[3 * o] = refNgrams[o].Count > 0 ? hypCount : 0;
                stats[3 * o + 1] = refNgrams[o].Values.Sum();
                stats[3 * o + 2] = match;
            }
            double f = FScore(stats);
            if (f > bestF) { bestF = f; best = stats; }
        }
        return best;
    }

    string Preprocess(string s) => _options.Lowercase ? PythonText.Lower(s) : s;

    // Character n-gram counters for orders 1..CharOrder, then word n-gram counters for orders 1..WordOrder.
    List<Dictionary<string, int>> Ngrams(string line)
    {
        var result = new List<Dictionary<string, int>>();
        string chars = _options.Whitespace ? line : string.Concat(PythonText.Split(line));
        int[] cps = PythonText.CodePoints(chars);
        for (int n = 1; n <= _options.CharOrder; n++)
        {
            var counter = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i + n <= cps.Length; i++)
            {
                string key = PythonText.FromCodePoints(cps, i, n);
                counter[key] = counter.GetValueOrDefault(key) + 1;
            }
            result.Add(counter);
        }
        if (_options.WordOrder > 0)
        {
            List<string> words = SplitPunctuation(line);
            for (int n = 1; n <= _options.WordOrder; n++)
            {
                var counter = new Dictionary<string, int>(StringComparer.Ordinal);
                for (int i = 0; i + n <= words.Count; i++)
                {
                    string key = string.Join(' ', words.GetRange(i, n));
                    counter[key] = counter.GetValueOrDefault(key) + 1;
                }
                result.Add(counter);
            }
        }
        return result;
    }

    // chrF++'s word split: whitespace words; one ASCII punctuation mark is split off the end, or else off the start
    // ("(hi)" gives "(hi" and ")"). One-character words stay whole.
    static List<string> SplitPunctuation(string sentence)
    {
        var words = new List<string>();
        foreach (string w in PythonText.Split(sentence))
        {
            int[] cps = PythonText.CodePoints(w);
            if (cps.Length == 1) words.Add(w);
            else if (IsPunct(cps[^1])) { words.Add(PythonText.FromCodePoints(cps, 0, cps.Length - 1)); words.Add(((char)cps[^1]).ToString()); }
            else if (IsPunct(cps[0])) { words.Add(((char)cps[0]).ToString()); words.Add(PythonText.FromCodePoints(cps, 1, cps.Length - 1)); }
            else words.Add(w);
        }
        return words;
    }

    static bool IsPunct(int c) => c < 0x80 && Puncts.Contains((char)c);

    // sacreBLEU's _compute_f_score: by default the average precision and recall over the orders both sides have,
    // then F-beta; with eps_smoothing the mean of per-order F-beta with 1e-16 for empty orders.
    double FScore(long[] stats)
    {
        const double eps = 1e-16;
        int order = stats.Length / 3;
        double factor = (double)_options.Beta * _options.Beta;
        double score = 0.0, avgPrec = 0.0, avgRec = 0.0;
        int effectiveOrder = 0;
        for (int i = 0; i < order; i++)
        {
            long nHyp = stats[3 * i], nRef = stats[3 * i + 1], nMatch = stats[3 * i + 2];
            double prec = nHyp > 0 ? (double)nMatch / nHyp : eps;
            double rec = nRef > 0 ? (double)nMatch / nRef : eps;
            double denom = factor * prec + rec;
            score += denom > 0 ? (1 + factor) * prec * rec / denom : eps;
            if (nHyp > 0 && nRef > 0)
            {
                avgPrec += prec;
                avgRec += rec;
                effectiveOrder++;
            }
        }
        if (_options.EpsSmoothing) return 100 * score / order;
        if (effectiveOrder == 0) avgPrec = avgRec = 0.0;
        else
        {
            avgPrec /= effectiveOrder;
            avgRec /= effectiveOrder;
        }
        if (avgPrec + avgRec != 0)
        {
            double f = (1 + factor) * avgPrec * avgRec;
            f /= factor * avgPrec + avgRec;
            return 100 * f;
        }
        return 0.0;
    }
}
