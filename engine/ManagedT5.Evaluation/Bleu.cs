// BLEU (Papineni et al., 2002) exactly as sacreBLEU 2.6.0 computes it: sentence and corpus level, several references,
// smoothing exp / floor / add-k / none, effective order, and the reproducibility signature.
using System.Globalization;

namespace ManagedT5.Evaluation;

/// <summary>How BLEU treats an n-gram order with no matches (Chen and Cherry, 2014).</summary>
public enum BleuSmoothing
{
    /// <summary><c>none</c>: a zero precision stays zero (BLEU becomes 0).</summary>
    None,
    /// <summary><c>floor</c>: a zero count is replaced by <see cref="BleuOptions.SmoothValue"/> (default 0.1).</summary>
    Floor,
    /// <summary><c>add-k</c>: k (default 1) is added to the matches and totals of orders 2 and up.</summary>
    AddK,
    /// <summary><c>exp</c> (default): the NIST / mteval-v13a method; the k-th zero order gets 1/2^k of a match.</summary>
    Exp,
}

/// <summary>Options for <see cref="Bleu"/>, named as sacreBLEU's <c>BLEU(...)</c> arguments.</summary>
public sealed record BleuOptions
{
    /// <summary><c>tokenize</c>: the tokenizer (default 13a).</summary>
    public BleuTokenize Tokenize { get; init; } = BleuTokenize.Mteval13a;

    /// <summary><c>lowercase</c>: lowercase hypothesis and references first (Python's full Unicode lower()).</summary>
    public bool Lowercase { get; init; }

    /// <summary><c>smooth_method</c> (default exp).</summary>
    public BleuSmoothing Smoothing { get; init; } = BleuSmoothing.Exp;

    /// <summary><c>smooth_value</c> for floor (default 0.1) and add-k (default 1); null means that default.</summary>
    public double? SmoothValue { get; init; }

    /// <summary><c>max_ngram_order</c> (default 4).</summary>
    public int MaxNgramOrder { get; init; } = 4;

    /// <summary>
    /// <c>effective_order</c>: leave out the orders the hypothesis is too short to have. Null (default) means what
    /// sacreBLEU does: on for <see cref="Bleu.SentenceScore"/>, off for <see cref="Bleu.CorpusScore"/>.
    /// </summary>
    public bool? EffectiveOrder { get; init; }

    internal void Validate()
    {
        if (MaxNgramOrder < 1)
            throw new ArgumentException($"max_ngram_order: must be at least 1, got {MaxNgramOrder}.", "max_ngram_order");
        if (SmoothValue is double v && (double.IsNaN(v) || v < 0))
            throw new ArgumentException($"smooth_value: must be a non-negative number, got {v}.", "smooth_value");
        if (!Enum.IsDefined(Tokenize))
            throw new ArgumentException($"tokenize: unknown tokenizer {(int)Tokenize}; use 13a, intl, zh, char or none.", "tokenize");
        if (!Enum.IsDefined(Smoothing))
            throw new ArgumentException($"smooth_method: unknown smoothing {(int)Smoothing}; use exp, floor, add-k or none.", "smooth_method");
    }
}

/// <summary>A BLEU score with the statistics behind it, as sacreBLEU's <c>BLEUScore</c>.</summary>
public sealed record BleuScore
{
    /// <summary>BLEU on the 0-100 scale.</summary>
    public required double Score { get; init; }
    /// <summary>Matched n-grams per order (clipped by the references), after add-k smoothing if used.</summary>
    public required double[] Counts { get; init; }
    /// <summary>Hypothesis n-grams per order, after add-k smoothing if used.</summary>
    public required double[] Totals { get; init; }
    /// <summary>Per-order precisions on the 0-100 scale (all 0 when nothing matched).</summary>
    public required double[] Precisions { get; init; }
    /// <summary>Brevity penalty.</summary>
    public required double BrevityPenalty { get; init; }
    /// <summary>Hypothesis length in tokens.</summary>
    public required long SysLen { get; init; }
    /// <summary>Effective reference length (closest reference per segment, summed).</summary>
    public required long RefLen { get; init; }
    /// <summary>sys_len / ref_len (0 when ref_len is 0).</summary>
    public double Ratio => RefLen != 0 ? (double)SysLen / RefLen : 0;
    /// <summary>The reproducibility signature, e.g. <c>nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0</c>.</summary>
    public required string Signature { get; init; }

    /// <summary>sacreBLEU's one-line form: <c>BLEU = 36.39 73.2/39.1/28.8/21.7 (BP = 0.995 ratio = 0.995 hyp_len = 660 ref_len = 663)</c>.</summary>
    public override string ToString() =>
        $"BLEU = {PythonText.FormatFixed(Score, 2)} {string.Join('/', Precisions.Select(p => PythonText.FormatFixed(p, 1)))} " +
        $"(BP = {PythonText.FormatFixed(BrevityPenalty, 3)} ratio = {PythonText.FormatFixed(Ratio, 3)} " +
        $"hyp_len = {SysLen.ToString(CultureInfo.InvariantCulture)} ref_len = {RefLen.ToString(CultureInfo.InvariantCulture)})";
}

/// <summary>
/// sacreBLEU's BLEU. Each segment is lowercased (optional), right-stripped and tokenized; its n-grams up to
/// <see cref="BleuOptions.MaxNgramOrder"/> are clipped by the maximum count in any reference; the reference length
/// is the closest one (the shorter on a tie). Corpus BLEU adds up every segment's statistics before the score.
/// </summary>
public sealed class Bleu
{
    /// <summary>The sacreBLEU version whose numbers this reproduces, as the signatures show it.</summary>
    public const string SacreBleuVersion = "2.6.0";

    readonly BleuOptions _options;

    /// <summary>A BLEU metric with the given options (defaults: 13a, mixed case, exp smoothing).</summary>
    public Bleu(BleuOptions? options = null)
    {
        _options = options ?? new BleuOptions();
        _options.Validate();
    }

    /// <summary>sacrebleu.sentence_bleu: one hypothesis against its references (effective order on by default).</summary>
    public BleuScore SentenceScore(string hypothesis, IReadOnlyList<string> references)
    {
        ArgumentNullException.ThrowIfNull(hypothesis);
        MetricInput.Check([hypothesis], [references]);
        return Compute([hypothesis], [references], _options.EffectiveOrder ?? true);
    }

    /// <summary>
    /// sacrebleu.corpus_bleu over segments: <paramref name="references"/>[i] holds the references of segment i (one or
    /// more; the count may vary, which the signature shows as <c>nrefs:var</c>).
    /// </summary>
    public BleuScore CorpusScore(IReadOnlyList<string> hypotheses, IReadOnlyList<IReadOnlyList<string>> references)
    {
        MetricInput.Check(hypotheses, references);
        return Compute(hypotheses, references, _options.EffectiveOrder ?? false);
    }

    BleuScore Compute(IReadOnlyList<string> hypotheses, IReadOnlyList<IReadOnlyList<string>> references, bool effectiveOrder)
    {
        int maxOrder = _options.MaxNgramOrder;
        long sysLen = 0, refLen = 0;
        var correct = new long[maxOrder];
        var total = new long[maxOrder];
        for (int s = 0; s < hypotheses.Count; s++)
        {
            // The references' n-grams: for each n-gram the largest count in any one reference.
            var refNgrams = new Dictionary<string, int>(StringComparer.Ordinal);
            var refLens = new List<int>();
            foreach (string reference in references[s])
            {
                var (ngrams, length) = WordNgrams(Preprocess(reference), maxOrder);
                refLens.Add(length);
                foreach (var (ngram, count) in ngrams)
                    refNgrams[ngram] = Math.Max(refNgrams.GetValueOrDefault(ngram), count);
            }

            var (hypNgrams, hypLen) = WordNgrams(Preprocess(hypotheses[s]), maxOrder);
            sysLen += hypLen;
            refLen += ClosestRefLength(hypLen, refLens);
            foreach (var (ngram, count) in hypNgrams)
            {
                int n = NgramOrder(ngram) - 1;
                total[n] += count;
                if (refNgrams.TryGetValue(ngram, out int refCount)) correct[n] += Math.Min(count, refCount);
            }
        }
        var score = ComputeBleu(correct, total, sysLen, refLen, _options.Smoothing, _options.SmoothValue, effectiveOrder, maxOrder);
        return score with { Signature = Signature(references, effectiveOrder) };
    }

    internal string Preprocess(string segment)
    {
        if (_options.Lowercase) segment = PythonText.Lower(segment);
        return BleuTokenizer.Tokenize(PythonText.RStrip(segment), _options.Tokenize);
    }

    // N-grams are keyed as their tokens joined by one space (tokens never hold whitespace), so the order is the
    // number of spaces plus one.
    static int NgramOrder(string ngram) => ngram.AsSpan().Count(' ') + 1;

    static (Dictionary<string, int> Ngrams, int Length) WordNgrams(string line, int maxOrder)
    {
        List<string> tokens = PythonText.Split(line);
        var ngrams = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int n = 1; n <= maxOrder; n++)
            for (int i = 0; i + n <= tokens.Count; i++)
            {
                string key = string.Join(' ', tokens.GetRange(i, n));
                ngrams[key] = ngrams.GetValueOrDefault(key) + 1;
            }
        return (ngrams, tokens.Count);
    }

    // The reference length closest to the hypothesis length; the shorter one on a tie.
    static int ClosestRefLength(int hypLen, List<int> refLens)
    {
        int closestDiff = -1, closestLen = -1;
        foreach (int len in refLens)
        {
            int diff = Math.Abs(hypLen - len);
            if (closestDiff == -1 || diff < closestDiff) { closestDiff = diff; closestLen = len; }
            else if (diff == closestDiff && len < closestLen) closestLen = len;
        }
        return closestLen;
    }

    /// <summary>
    /// BLEU from its sufficient statistics (sacreBLEU's <c>compute_bleu</c>), in sacreBLEU's order of operations so
    /// that the double is the same: bp = exp(1 - ref/sys); p_n = 100 * correct / total; score = bp * exp(Σ log p_n / N).
    /// </summary>
    public static BleuScore ComputeBleu(IReadOnlyList<long> correct, IReadOnlyList<long> total, long sysLen, long refLen,
        BleuSmoothing smoothing = BleuSmoothing.None, double? smoothValue = null, bool effectiveOrder = false, int maxNgramOrder = 4)
    {
        double k = smoothValue ?? smoothing switch { BleuSmoothing.Floor => 0.1, BleuSmoothing.AddK => 1, _ => 0 };
        double[] counts = correct.Select(c => (double)c).ToArray();
        double[] totals = total.Select(t => (double)t).ToArray();

        double bp = 1.0;
        if (sysLen < refLen) bp = sysLen > 0 ? Math.Exp(1 - (double)refLen / sysLen) : 0.0;

        var precisions = new double[maxNgramOrder];
        if (counts.All(c => c == 0))   // no match at all: 0, precisions reported as 0 (sacreBLEU #141)
            return new BleuScore { Score = 0.0, Counts = counts, Totals = totals, Precisions = precisions, BrevityPenalty = bp, SysLen = sysLen, RefLen = refLen, Signature = "" };

        double smoothMteval = 1.0;
        int effOrder = maxNgramOrder;
        for (int n = 1; n <= maxNgramOrder; n++)
        {
            if (smoothing == BleuSmoothing.AddK && n > 1)
            {
                counts[n - 1] += k;
                totals[n - 1] += k;
            }
            if (totals[n - 1] == 0) break;
            if (effectiveOrder) effOrder = n;

            if (counts[n - 1] == 0)
            {
                if (smoothing == BleuSmoothing.Exp)
                {
                    smoothMteval *= 2;
                    precisions[n - 1] = 100.0 / (smoothMteval * totals[n - 1]);
                }
                else if (smoothing == BleuSmoothing.Floor)
                    precisions[n - 1] = 100.0 * k / totals[n - 1];
            }
            else precisions[n - 1] = 100.0 * counts[n - 1] / totals[n - 1];
        }

        double sumLog = 0;
        for (int n = 0; n < effOrder; n++) sumLog += precisions[n] == 0.0 ? -9999999999 : Math.Log(precisions[n]);
        double score = bp * Math.Exp(sumLog / effOrder);
        return new BleuScore { Score = score, Counts = counts, Totals = totals, Precisions = precisions, BrevityPenalty = bp, SysLen = sysLen, RefLen = refLen, Signature = "" };
    }

    string Signature(IReadOnlyList<IReadOnlyList<string>> references, bool effectiveOrder)
    {
        string smooth = _options.Smoothing switch
        {
            BleuSmoothing.None => "none",
            BleuSmoothing.Exp => "exp",
            BleuSmoothing.Floor => "floor[" + PythonText.FormatFixed(_options.SmoothValue ?? 0.1, 2) + "]",
            _ => "add-k[" + PythonText.FormatFixed(_options.SmoothValue ?? 1, 2) + "]",
        };
        return $"nrefs:{MetricInput.NumRefs(references)}|case:{(_options.Lowercase ? "lc" : "mixed")}|eff:{(effectiveOrder ? "yes" : "no")}" +
               $"|tok:{BleuTokenizer.Name(_options.Tokenize)}|smooth:{smooth}|version:{SacreBleuVersion}";
    }
}

/// <summary>Checks shared by the corpus-level metrics.</summary>
internal static class MetricInput
{
    public static void Check(IReadOnlyList<string> hypotheses, IReadOnlyList<IReadOnlyList<string>> references)
    {
        ArgumentNullException.ThrowIfNull(hypotheses);
        ArgumentNullException.ThrowIfNull(references);
        if (hypotheses.Count != references.Count)
            throw new ArgumentException($"references: {references.Count} reference lists for {hypotheses.Count} hypotheses; give one list per hypothesis.", "references");
        for (int i = 0; i < hypotheses.Count; i++)
        {
            if (hypotheses[i] is null) throw new ArgumentException($"hypotheses: segment {i} is null.", "hypotheses");
            if (references[i] is null || references[i].Count == 0)
                throw new ArgumentException($"references: segment {i} has no reference; give at least one.", "references");
            if (references[i].Any(r => r is null)) throw new ArgumentException($"references: segment {i} has a null reference.", "references");
        }
    }

    /// <summary>The signature's nrefs: the reference count when every segment has the same, else "var".</summary>
    public static string NumRefs(IReadOnlyList<IReadOnlyList<string>> references)
    {
        var counts = references.Select(r => r.Count).Distinct().ToList();
        return counts.Count == 1 ? counts[0].ToString(CultureInfo.InvariantCulture) : "var";
    }
}
