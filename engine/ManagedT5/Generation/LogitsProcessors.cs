// The row arithmetic of generation: HF's logits processors and sampling warpers as functions of one row of scores
// (LogitsPipeline wraps them as the processors of one generate() call), and the row operations the strategies use:
// log-softmax, argmax, sampling, beam search's top-k, the finite check. None of them allocates.
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace ManagedT5.Generation;

/// <summary>HF's processors and warpers and the strategies' row operations, each on one row of scores given that row's
/// tokens so far where it needs them (decoder start token included, as HF's input_ids are).</summary>
public static class LogitsProcessors
{
    /// <summary>RepetitionPenaltyLogitsProcessor: every token already present is divided by the penalty when its
    /// score is positive and multiplied when negative — once, however often it occurs.</summary>
    public static void RepetitionPenalty(Span<float> scores, ReadOnlySpan<int> tokens, float penalty, Span<int> stamp, int stampValue)
    {
        foreach (int t in tokens)
        {
            if (stamp[t] == stampValue) continue;
            stamp[t] = stampValue;
            float s = scores[t];
            scores[t] = s < 0 ? s * penalty : s / penalty;
        }
    }

    /// <summary>NoRepeatNGramLogitsProcessor: bans every token that would complete an n-gram already in the row.</summary>
    public static void NoRepeatNgram(Span<float> scores, ReadOnlySpan<int> tokens, int n)
    {
        int length = tokens.Length;
        if (length + 1 < n) return;
        // The last n-1 tokens are the prefix of the n-gram the next token would complete.
        ReadOnlySpan<int> prefix = tokens.Slice(length - (n - 1), n - 1);
        for (int start = 0; start + n <= length; start++)
            if (tokens.Slice(start, n - 1).SequenceEqual(prefix))
                scores[tokens[start + n - 1]] = float.NegativeInfinity;
    }

    /// <summary>TemperatureLogitsWarper: scores / temperature.</summary>
    public static void Temperature(Span<float> scores, float temperature)
    {
        if (temperature == 1f) return;
        for (int i = 0; i < scores.Length; i++) scores[i] /= temperature;
    }

    /// <summary>TopKLogitsWarper: everything below the k-th largest score becomes -inf (ties with it are kept).</summary>
    public static void TopK(Span<float> scores, int k, Span<float> scratch)
    {
        if (k <= 0 || k >= scores.Length) return;
        scores.CopyTo(scratch);
        Span<float> copy = scratch[..scores.Length];
        float kth = KthLargest(copy, k);
        for (int i = 0; i < scores.Length; i++) if (scores[i] < kth) scores[i] = float.NegativeInfinity;
    }

    /// <summary>TopPLogitsWarper: sorts ascending, removes the low tokens whose cumulative probability is at most
    /// 1 - top_p, always keeping the best token. What remains is the smallest top set whose mass reaches top_p.</summary>
    public static void TopP(Span<float> scores, float topP, Span<float> scratchValues, Span<int> scratchIndices)
    {
        if (topP >= 1f) return;
        int n = scores.Length;
        Span<float> values = scratchValues[..n];
        Span<int> order = scratchIndices[..n];
        scores.CopyTo(values);
        for (int i = 0; i < n; i++) order[i] = i;
        values.Sort(order);                                           // ascending
        float max = values[n - 1];
        double sum = 0;
        for (int i = 0; i < n; i++) sum += Math.Exp(values[i] - max);
        double cumulative = 0, threshold = 1.0 - topP;
        for (int i = 0; i < n - 1; i++)                               // the best token is always kept
        {
            cumulative += Math.Exp(values[i] - max) / sum;
            if (cumulative > threshold) break;
            scores[order[i]] = float.NegativeInfinity;
        }
    }

    /// <summary>In-place log-softmax of a row: scores - max - log(sum exp(scores - max)), the sum taken in fp32 over
    /// blocks of 1,024 and in double across them (a 4 KB stack block keeps the exps in L1 and allocates nothing). A row
    /// of only -inf is left as it is.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void LogSoftmax(Span<float> scores)
    {
        if (scores.IsEmpty) return;
        float max = TensorPrimitives.Max(scores);
        if (float.IsNegativeInfinity(max) || float.IsNaN(max)) return;
        const int block = 1024;
        Span<float> exps = stackalloc float[block];
        double sum = 0;
        for (int i = 0; i < scores.Length; i += block)
        {
            Span<float> e = exps[..Math.Min(block, scores.Length - i)];
            TensorPrimitives.Subtract(scores.Slice(i, e.Length), max, e);
            TensorPrimitives.Exp(e, e);
            sum += TensorPrimitives.Sum(e);
        }
        TensorPrimitives.Add(scores, -max - (float)Math.Log(sum), scores);
    }

    /// <summary>Draws an index from softmax(scores) with a uniform number in [0, 1).</summary>
    public static int Sample(ReadOnlySpan<float> scores, double uniform)
    {
        float max = float.NegativeInfinity;
        foreach (float s in scores) max = MathF.Max(max, s);
        double sum = 0;
        foreach (float s in scores) sum += Math.Exp(s - max);
        double target = uniform * sum, cumulative = 0;
        int last = -1;
        for (int i = 0; i < scores.Length; i++)
        {
            if (float.IsNegativeInfinity(scores[i])) continue;
            cumulative += Math.Exp(scores[i] - max);
            last = i;
            if (cumulative > target) return i;
        }
        return last;
    }

    /// <summary>The topScores.Length best (score, index) of <paramref name="scores"/>, best first (earlier index first
    /// on ties): beam search's candidate selection over num_beams x vocab scores.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void TopK(ReadOnlySpan<float> scores, Span<float> topScores, Span<int> topIndices)
    {
        int k = topScores.Length, filled = 0, width = Vector<float>.Count;
        for (int i = 0; i < scores.Length; i++)
        {
            // Once k are held, skip whole vectors that hold nothing above the k-th best (almost all of a vocabulary).
            if (filled == k && i % width == 0 && i <= scores.Length - width
                && !Vector.GreaterThanAny(new Vector<float>(scores.Slice(i, width)), new Vector<float>(topScores[k - 1])))
            {
                i += width - 1;
                continue;
            }
            float s = scores[i];
            if (filled == k && !(s > topScores[k - 1])) continue;
            int j = filled < k ? filled++ : k - 1;
            while (j > 0 && topScores[j - 1] < s) { topScores[j] = topScores[j - 1]; topIndices[j] = topIndices[j - 1]; j--; }
            topScores[j] = s;
            topIndices[j] = i;
        }
    }

    /// <summary>True when no score is NaN or infinite: the check the generation loop makes on the model's raw logits
    /// (before any processor writes -inf) once per row and step. One vector pass, no allocation.</summary>
    public static bool AllFinite(ReadOnlySpan<float> scores) => TensorPrimitives.IsFiniteAll(scores);

    /// <summary>Index of the largest score (first on ties).</summary>
    public static int ArgMax(ReadOnlySpan<float> scores)
    {
        int best = 0;
        for (int i = 1; i < scores.Length; i++) if (scores[i] > scores[best]) best = i;
        return best;
    }

    private static float KthLargest(Span<float> values, int k)
    {
        // Quickselect for the (n - k)-th smallest: linear on average, no allocation.
        int target = values.Length - k, lo = 0, hi = values.Length - 1;
        while (lo < hi)
        {
            float pivot = values[(lo + hi) >>> 1];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (values[i] < pivot) i++;
                while (values[j] > pivot) j--;
                if (i <= j) { (values[i], values[j]) = (values[j], values[i]); i++; j--; }
            }
            if (target <= j) hi = j;
            else if (target >= i) lo = i;
            else break;
        }
        return values[target];
    }
}
