// ROUGE-N, ROUGE-L and ROUGE-Lsum exactly as Google's rouge_score computes them (rouge_scorer.py, tokenize.py),
// with NLTK's Porter stemmer optional, the best-reference rule for several references, and a Unicode-aware variant.
using System.Globalization;
using System.Text;

namespace ManagedT5.Evaluation;

/// <summary>How ROUGE splits text into tokens.</summary>
public enum RougeTokenization
{
    /// <summary>
    /// rouge_score's own (default): lowercase, and every run of characters outside [a-z0-9] separates tokens. Text
    /// in other scripts gives no tokens at all (Chinese or Russian scores 0 even when identical; "Straße" gives
    /// "stra", "e"). Use this to reproduce published rouge_score numbers.
    /// </summary>
    RougeScore,
    /// <summary>
    /// Unicode-aware (not rouge_score's): lowercase; tokens are runs of letters, marks and digits of any script;
    /// each Han, Hiragana or Katakana character is a token of its own (those scripts do not separate words with
    /// spaces). The stemmer still only touches ASCII words.
    /// </summary>
    Unicode,
}

/// <summary>Options for <see cref="Rouge"/>.</summary>
public sealed record RougeOptions
{
    /// <summary><c>use_stemmer</c>: stem tokens longer than 3 characters with NLTK's Porter stemmer.</summary>
    public bool UseStemmer { get; init; }
    /// <summary>The tokenization (default: rouge_score's ASCII-only one).</summary>
    public RougeTokenization Tokenization { get; init; } = RougeTokenization.RougeScore;
}

/// <summary>Precision, recall and F1 of one ROUGE type, on rouge_score's 0-1 scale.</summary>
public readonly record struct RougeScore(double Precision, double Recall, double Fmeasure);

/// <summary>
/// rouge_score's <c>RougeScorer</c>. Types: <c>rouge1</c> … <c>rouge9</c> (n-gram overlap), <c>rougeL</c> (longest
/// common subsequence) and <c>rougeLsum</c> (summary-level LCS over sentences split on "\n"). With several
/// references each type takes the reference with the highest F (the first on a tie), as <c>score_multi</c> does.
/// </summary>
public sealed class Rouge
{
    readonly RougeOptions _options;

    /// <summary>The types this class knows besides rougeN: "rougeL" and "rougeLsum".</summary>
    public static bool IsValidType(string type) =>
        type is "rougeL" or "rougeLsum" || (type.Length == 6 && type.StartsWith("rouge", StringComparison.Ordinal) && type[5] is >= '1' and <= '9');

    /// <summary>A scorer (defaults: no stemmer, rouge_score's tokenization).</summary>
    public Rouge(RougeOptions? options = null) => _options = options ?? new RougeOptions();

    /// <summary>rouge_score's <c>score(target, prediction)</c> for each of <paramref name="types"/>.</summary>
    public IReadOnlyDictionary<string, RougeScore> Score(string target, string prediction, IEnumerable<string> types)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(prediction);
        List<string> targetTokens = Tokenize(target), predictionTokens = Tokenize(prediction);
        var result = new Dictionary<string, RougeScore>(StringComparer.Ordinal);
        foreach (string type in types)
        {
            if (!IsValidType(type))
                throw new ArgumentException($"rouge_types: unknown ROUGE type '{type}'; use rouge1 … rouge9, rougeL or rougeLsum.", "rouge_types");
            result[type] = type switch
            {
                "rougeL" => ScoreLcs(targetTokens, predictionTokens),
                "rougeLsum" => SummaryLevelLcs(Sentences(target), Sentences(prediction)),
                _ => ScoreNgrams(Ngrams(targetTokens, type[5] - '0'), Ngrams(predictionTokens, type[5] - '0')),
            };
        }
        return result;
    }

    /// <summary>Against several references: per type, the reference with the highest F (first on a tie).</summary>
    public IReadOnlyDictionary<string, RougeScore> ScoreMulti(IReadOnlyList<string> targets, string prediction, IEnumerable<string> types)
    {
        ArgumentNullException.ThrowIfNull(targets);
        if (targets.Count == 0) throw new ArgumentException("targets: give at least one reference.", "targets");
        string[] typeList = types.ToArray();
        var best = new Dictionary<string, RougeScore>(StringComparer.Ordinal);
        foreach (string target in targets)
            foreach (var (type, score) in Score(target, prediction, typeList))
                if (!best.TryGetValue(type, out var current) || score.Fmeasure > current.Fmeasure) best[type] = score;
        return best;
    }

    /// <summary>The tokens this scorer compares (after lowercasing, splitting and optional stemming).</summary>
    public List<string> Tokenize(string text)
    {
        List<string> tokens = _options.Tokenization == RougeTokenization.Unicode ? UnicodeTokens(text) : RougeScoreTokens(text);
        if (_options.UseStemmer)
            for (int i = 0; i < tokens.Count; i++)
                if (tokens[i].Length > 3 && IsAsciiWord(tokens[i])) tokens[i] = PorterStemmer.Stem(tokens[i]);
        return tokens;
    }

    static bool IsAsciiWord(string token)
    {
        foreach (char c in token) if (c is not ((>= 'a' and <= 'z') or (>= '0' and <= '9'))) return false;
        return true;
    }

    // rouge_score's tokenize.tokenize: lower(), every run outside [a-z0-9] becomes a separator, empty tokens dropped.
    static List<string> RougeScoreTokens(string text)
    {
        var tokens = new List<string>();
        var current = new StringBuilder();
        foreach (char c in PythonText.Lower(text))
        {
            if (c is (>= 'a' and <= 'z') or (>= '0' and <= '9')) current.Append(c);
            else if (current.Length > 0) { tokens.Add(current.ToString()); current.Clear(); }
        }
        if (current.Length > 0) tokens.Add(current.ToString());
        return tokens;
    }

    static List<string> UnicodeTokens(string text)
    {
        var tokens = new List<string>();
        var current = new StringBuilder();
        foreach (int c in PythonText.CodePoints(PythonText.Lower(text)))
        {
            if (IsUnsegmentedScript(c))
            {
                if (current.Length > 0) { tokens.Add(current.ToString()); current.Clear(); }
                var single = new StringBuilder();
                PythonText.AppendCodePoint(single, c);
                tokens.Add(single.ToString());
            }
            else if (IsWordCharacter(c)) PythonText.AppendCodePoint(current, c);
            else if (current.Length > 0) { tokens.Add(current.ToString()); current.Clear(); }
        }
        if (current.Length > 0) tokens.Add(current.ToString());
        return tokens;
    }

    static bool IsWordCharacter(int c) => PythonText.Category(c) is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter
        or UnicodeCategory.TitlecaseLetter or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter
        or UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
        or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber;

    // Han (CJK Unified Ideographs and extensions, compatibility ideographs), Hiragana and Katakana.
    static bool IsUnsegmentedScript(int c) =>
        c is (>= 0x3040 and <= 0x30FF) or (>= 0x31F0 and <= 0x31FF) or (>= 0x3400 and <= 0x4DBF) or (>= 0x4E00 and <= 0x9FFF)
          or (>= 0xF900 and <= 0xFAFF) or (>= 0xFF66 and <= 0xFF9F) or (>= 0x20000 and <= 0x3134F);

    // rougeLsum's sentences: split on "\n" only, empty lines dropped, each tokenized.
    List<List<string>> Sentences(string text) =>
        text.Split('\n').Where(s => s.Length > 0).Select(Tokenize).ToList();

    static Dictionary<string, int> Ngrams(List<string> tokens, int n)
    {
        var ngrams = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i + n <= tokens.Count; i++)
        {
            string key = string.Join(' ', tokens.GetRange(i, n));
            ngrams[key] = ngrams.GetValueOrDefault(key) + 1;
        }
        return ngrams;
    }

    static RougeScore ScoreNgrams(Dictionary<string, int> target, Dictionary<string, int> prediction)
    {
        long intersection = 0;
        foreach (var (ngram, count) in target) intersection += Math.Min(count, prediction.GetValueOrDefault(ngram));
        long targetCount = target.Values.Sum(), predictionCount = prediction.Values.Sum();
        double precision = (double)intersection / Math.Max(predictionCount, 1);
        double recall = (double)intersection / Math.Max(targetCount, 1);
        return new RougeScore(precision, recall, Fmeasure(precision, recall));
    }

    /// <summary>rouge_score's F: 2·p·r / (p + r), evaluated in that order (hence values like 0.39999999999999997).</summary>
    public static double Fmeasure(double precision, double recall) =>
        precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;

    static RougeScore ScoreLcs(List<string> target, List<string> prediction)
    {
        if (target.Count == 0 || prediction.Count == 0) return new RougeScore(0, 0, 0);
        int lcs = LcsTable(target, prediction)[target.Count, prediction.Count];
        double precision = (double)lcs / prediction.Count;
        double recall = (double)lcs / target.Count;
        return new RougeScore(precision, recall, Fmeasure(precision, recall));
    }

    static int[,] LcsTable(List<string> reference, List<string> candidate)
    {
        var t = new int[reference.Count + 1, candidate.Count + 1];
        for (int i = 1; i <= reference.Count; i++)
            for (int j = 1; j <= candidate.Count; j++)
                t[i, j] = reference[i - 1] == candidate[j - 1] ? t[i - 1, j - 1] + 1 : Math.Max(t[i - 1, j], t[i, j - 1]);
        return t;
    }

    // One longest common subsequence, as indices into the reference, read back from the table as rouge_score does.
    static List<int> LcsIndices(List<string> reference, List<string> candidate)
    {
        int[,] t = LcsTable(reference, candidate);
        var indices = new List<int>();
        int i = reference.Count, j = candidate.Count;
        while (i > 0 && j > 0)
        {
            if (reference[i - 1] == candidate[j - 1]) { indices.Insert(0, i - 1); i--; j--; }
            else if (t[i, j - 1] > t[i - 1, j]) j--;
            else i--;
        }
        return indices;
    }

    // ROUGE-Lsum (Lin 2004, section 3.2): for each reference sentence the union of its LCS with every candidate
    // sentence; hits are counted without using a token more often than it occurs on either side.
    static RougeScore SummaryLevelLcs(List<List<string>> refSents, List<List<string>> candSents)
    {
        if (refSents.Count == 0 || candSents.Count == 0) return new RougeScore(0, 0, 0);
        int m = refSents.Sum(s => s.Count), n = candSents.Sum(s => s.Count);
        if (m == 0 || n == 0) return new RougeScore(0, 0, 0);

        var refCounts = new Dictionary<string, int>(StringComparer.Ordinal);
        var candCounts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var s in refSents) foreach (string t in s) refCounts[t] = refCounts.GetValueOrDefault(t) + 1;
        foreach (var s in candSents) foreach (string t in s) candCounts[t] = candCounts.GetValueOrDefault(t) + 1;

        int hits = 0;
        foreach (var r in refSents)
        {
            var union = new SortedSet<int>();
            foreach (var c in candSents) union.UnionWith(LcsIndices(r, c));
            foreach (int index in union)
            {
                string t = r[index];
                if (candCounts.GetValueOrDefault(t) > 0 && refCounts.GetValueOrDefault(t) > 0)
                {
                    hits++;
                    candCounts[t]--;
                    refCounts[t]--;
                }
            }
        }
        double recall = (double)hits / m;
        double precision = (double)hits / n;
        return new RougeScore(precision, recall, Fmeasure(precision, recall));
    }
}
