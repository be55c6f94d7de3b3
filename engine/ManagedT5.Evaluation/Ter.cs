// TER, translation edit rate (Snover et al., 2006), exactly as sacreBLEU 2.6.0 computes it: Tercom's greedy shifts
// and beam-limited edit distance, case-insensitive by default, and the reproducibility signature.
namespace ManagedT5.Evaluation;

/// <summary>Options for <see cref="Ter"/>, named as sacreBLEU's <c>TER(...)</c> arguments (normalisation and
/// punctuation removal are not offered: sacreBLEU's defaults leave them off).</summary>
public sealed record TerOptions
{
    /// <summary><c>case_sensitive</c>: compare with case (default: both sides are lowercased).</summary>
    public bool CaseSensitive { get; init; }
}

/// <summary>A TER score with its statistics.</summary>
public sealed record TerScore
{
    /// <summary>TER on the 0-100 scale (edits per reference word; lower is better; may exceed 100).</summary>
    public required double Score { get; init; }
    /// <summary>Edits (insertions, deletions, substitutions and shifts) summed over the segments.</summary>
    public required long NumEdits { get; init; }
    /// <summary>Average reference length per segment, summed.</summary>
    public required double RefLength { get; init; }
    /// <summary>The reproducibility signature, e.g. <c>nrefs:1|case:lc|tok:tercom|norm:no|punct:yes|asian:no|version:2.6.0</c>.</summary>
    public required string Signature { get; init; }

    /// <summary>sacreBLEU's one-line form, e.g. <c>TER = 54.15</c>.</summary>
    public override string ToString() => $"TER = {PythonText.FormatFixed(Score, 2)}";
}

/// <summary>
/// sacreBLEU's TER. Per segment: the fewest edits to any reference (shifts found greedily as Tercom does), and the
/// average reference length; the score is total edits / total average reference length.
/// </summary>
public sealed class Ter
{
    // Tercom's limits, and sacreBLEU's own cap on shift candidates.
    const int MaxShiftSize = 10, MaxShiftDist = 50, BeamWidth = 25, MaxShiftCandidates = 1000;
    const long Infinity = 10_000_000_000_000_000;

    readonly TerOptions _options;

    /// <summary>A TER metric (default: case-insensitive, no normalisation).</summary>
    public Ter(TerOptions? options = null) => _options = options ?? new TerOptions();

    /// <summary>One hypothesis against its references.</summary>
    public TerScore SentenceScore(string hypothesis, IReadOnlyList<string> references)
    {
        ArgumentNullException.ThrowIfNull(hypothesis);
        MetricInput.Check([hypothesis], [references]);
        return CorpusScore([hypothesis], [references]);
    }

    /// <summary>A corpus: <paramref name="references"/>[i] holds the references of segment i.</summary>
    public TerScore CorpusScore(IReadOnlyList<string> hypotheses, IReadOnlyList<IReadOnlyList<string>> references)
    {
        MetricInput.Check(hypotheses, references);
        long totalEdits = 0;
        double sumRefLengths = 0;   // summed in segment order, as sacreBLEU's sum_of_lists does
        for (int s = 0; s < hypotheses.Count; s++)
        {
            string[] hyp = Words(hypotheses[s]);
            long refLengths = 0, best = Infinity;
            foreach (string reference in references[s])
            {
                var (edits, refLen) = TranslationEditRate(hyp, Words(reference));
                refLengths += refLen;
                best = Math.Min(best, edits);
            }
            totalEdits += best;
            sumRefLengths += (double)refLengths / references[s].Count;
        }
        double score = sumRefLengths > 0 ? totalEdits / sumRefLengths : totalEdits > 0 ? 1.0 : 0.0;
        return new TerScore
        {
            Score = 100 * score,
            NumEdits = totalEdits,
            RefLength = sumRefLengths,
            Signature = $"nrefs:{MetricInput.NumRefs(references)}|case:{(_options.CaseSensitive ? "mixed" : "lc")}|tok:tercom|norm:no|punct:yes|asian:no|version:{Bleu.SacreBleuVersion}",
        };
    }

    // The tercom tokenizer with its defaults: right-strip, lowercase unless case-sensitive, split on whitespace.
    internal string[] Words(string segment)
    {
        segment = PythonText.RStrip(segment);
        if (!_options.CaseSensitive) segment = PythonText.Lower(segment);
        return PythonText.Split(segment).ToArray();
    }

    /// <summary>Edits turning <paramref name="hyp"/> into <paramref name="reference"/>, and the reference length.</summary>
    internal static (long Edits, int RefLength) TranslationEditRate(string[] hyp, string[] reference)
    {
        if (reference.Length == 0) return (hyp.Length, 0);
        var distance = new BeamEditDistance(reference);
        long shifts = 0;
        string[] input = hyp;
        int checkedCandidates = 0;
        while (true)
        {
            // Shift while a shift lowers the edit distance (and the candidate budget lasts).
            (long delta, string[] shifted, checkedCandidates) = BestShift(input, reference, distance, checkedCandidates);
            if (checkedCandidates >= MaxShiftCandidates || delta <= 0) break;
            shifts++;
            input = shifted;
        }
        return (shifts + distance.Compute(input).Distance, reference.Length);
    }

    // The shift that lowers the edit distance most; ties go to the longer, then earlier, then earlier-target shift.
    static (long Delta, string[] Words, int Checked) BestShift(string[] hyp, string[] reference, BeamEditDistance distance, int checkedCandidates)
    {
        var (preScore, inverseTrace) = distance.Compute(hyp);
        // The trace rewrites the hypothesis into the reference; flipping insertions and deletions gives the
        // reference-to-hypothesis alignment.
        var (align, refErr, hypErr) = TraceToAlignment(Flip(inverseTrace));

        (long Score, int Length, int NegStart, int NegIdx, string[] Words)? best = null;
        foreach (var (startH, startR, length) in ShiftedPairs(hyp, reference))
        {
            // Only shift words that are wrong where they are and that do not already match where they would go.
            if (Sum(hypErr, startH, length) == 0 || Sum(refErr, startR, length) == 0) continue;
            if (startH <= align[startR] && align[startR] < startH + length) continue;

            int prevIdx = -1;
            for (int offset = -1; offset < length; offset++)
            {
                int idx;
                if (startR + offset == -1) idx = 0;
                else if (align.TryGetValue(startR + offset, out int a)) idx = a + 1;   // insert before, unlike Tercom's after
                else break;
                if (idx == prevIdx) continue;
                prevIdx = idx;

                string[] shifted = PerformShift(hyp, startH, length, idx);
                var candidate = (preScore - distance.Compute(shifted).Distance, length, -startH, -idx, shifted);
                checkedCandidates++;
                if (best is not { } b || IsGreater(candidate, b)) best = candidate;
            }
            if (checkedCandidates >= MaxShiftCandidates) break;
        }
        return best is { } chosen ? (chosen.Score, chosen.Words, checkedCandidates) : (0, hyp, checkedCandidates);
    }

    static bool IsGreater((long, int, int, int, string[]) x, (long, int, int, int, string[]) y)
    {
        if (x.Item1 != y.Item1) return x.Item1 > y.Item1;
        if (x.Item2 != y.Item2) return x.Item2 > y.Item2;
        if (x.Item3 != y.Item3) return x.Item3 > y.Item3;
        return x.Item4 > y.Item4;   // equal keys mean the same shift, hence the same words
    }

    static int Sum(List<int> values, int start, int length)
    {
        int sum = 0;
        for (int i = start; i < Math.Min(values.Count, start + length); i++) sum += values[i];
        return sum;
    }

    static string[] PerformShift(string[] words, int start, int length, int target)
    {
        IEnumerable<string> result;
        if (target < start)
            result = words[..target].Concat(words[start..(start + length)]).Concat(words[target..start]).Concat(words[(start + length)..]);
        else if (target > start + length)
            result = words[..start].Concat(words[(start + length)..target]).Concat(words[start..(start + length)]).Concat(words[target..]);
        else
            result = words[..start].Concat(words[(start + length)..(length + target)]).Concat(words[start..(start + length)]).Concat(words[(length + target)..]);
        return result.ToArray();
    }

    // Matching word runs (up to MaxShiftSize long) that start at different places no more than MaxShiftDist apart,
    // in Tercom's order: by hypothesis start, reference start, then length.
    static IEnumerable<(int StartH, int StartR, int Length)> ShiftedPairs(string[] h, string[] r)
    {
        for (int startH = 0; startH < h.Length; startH++)
            for (int startR = 0; startR < r.Length; startR++)
            {
                if (Math.Abs(startR - startH) > MaxShiftDist) continue;
                int length = 0;
                while (h[startH + length] == r[startR + length] && length < MaxShiftSize)
                {
                    length++;
                    yield return (startH, startR, length);
                    if (h.Length == startH + length || r.Length == startR + length) break;
                }
            }
    }

    static string Flip(string trace) => string.Create(trace.Length, trace, (span, t) =>
    {
        for (int i = 0; i < t.Length; i++) span[i] = t[i] switch { 'i' => 'd', 'd' => 'i', var c => c };
    });

    // Trace ops: ' ' no change, 's' substitution, 'i' insertion, 'd' deletion (rewriting the first sequence into the second).
    static (Dictionary<int, int> Align, List<int> RefErr, List<int> HypErr) TraceToAlignment(string trace)
    {
        int posHyp = -1, posRef = -1;
        var hypErr = new List<int>();
        var refErr = new List<int>();
        var align = new Dictionary<int, int>();
        foreach (char op in trace)
        {
            switch (op)
            {
                case ' ': posHyp++; posRef++; align[posRef] = posHyp; hypErr.Add(0); refErr.Add(0); break;
                case 's': posHyp++; posRef++; align[posRef] = posHyp; hypErr.Add(1); refErr.Add(1); break;
                case 'i': posHyp++; hypErr.Add(1); break;
                case 'd': posRef++; align[posRef] = posHyp; refErr.Add(1); break;
                default: throw new InvalidOperationException($"TER: unknown edit operation '{op}'.");
            }
        }
        return (align, refErr, hypErr);
    }

    /// <summary>
    /// Word-level Levenshtein distance to a fixed reference, computed only in a band around the (length-scaled)
    /// diagonal as sacreBLEU does, with the trace of operations. sacreBLEU also caches rows by hypothesis prefix;
    /// every hypothesis it sees has the same length, so the cache never changes a result and is left out here.
    /// </summary>
    sealed class BeamEditDistance(string[] reference)
    {
        public (long Distance, string Trace) Compute(string[] hyp)
        {
            int nH = hyp.Length, nR = reference.Length;
            var cost = new long[nH + 1, nR + 1];
            var op = new char[nH + 1, nR + 1];
            for (int j = 0; j <= nR; j++) { cost[0, j] = j; op[0, j] = 'i'; }
            for (int i = 1; i <= nH; i++)
                for (int j = 0; j <= nR; j++) { cost[i, j] = Infinity; op[i, j] = 'x'; }

            double lengthRatio = nH > 0 ? (double)nR / nH : 1;
            // In very unequal lengths the band could miss the previous row entirely; widen it.
            int beamWidth = BeamWidth < lengthRatio / 2 ? (int)Math.Ceiling(lengthRatio / 2 + BeamWidth) : BeamWidth;

            for (int i = 1; i <= nH; i++)
            {
                int pseudoDiag = (int)Math.Floor(i * lengthRatio);
                int minJ = Math.Max(0, pseudoDiag - beamWidth);
                int maxJ = i == nH ? nR + 1 : Math.Min(nR + 1, pseudoDiag + beamWidth);
                for (int j = minJ; j < maxJ; j++)
                {
                    if (j == 0) { cost[i, 0] = cost[i - 1, 0] + 1; op[i, 0] = 'd'; continue; }
                    bool same = hyp[i - 1] == reference[j - 1];
                    // Tercom prefers no-op/substitution, then insertion, then deletion; the trace is flipped
                    // afterwards, so deletion is tried before insertion here.
                    Relax(cost, op, i, j, cost[i - 1, j - 1] + (same ? 0 : 1), same ? ' ' : 's');
                    Relax(cost, op, i, j, cost[i - 1, j] + 1, 'd');
                    Relax(cost, op, i, j, cost[i, j - 1] + 1, 'i');
                }
            }

            var trace = new System.Text.StringBuilder();
            for (int i = nH, j = nR; i > 0 || j > 0;)
            {
                char o = op[i, j];
                trace.Insert(0, o);
                switch (o)
                {
                    case ' ' or 's': i--; j--; break;
                    case 'i': j--; break;
                    case 'd': i--; break;
                    default: throw new InvalidOperationException($"TER: unknown edit operation '{o}'.");
                }
            }
            return (cost[nH, nR], trace.ToString());
        }

        static void Relax(long[,] cost, char[,] op, int i, int j, long candidate, char name)
        {
            if (cost[i, j] > candidate) { cost[i, j] = candidate; op[i, j] = name; }
        }
    }
}
