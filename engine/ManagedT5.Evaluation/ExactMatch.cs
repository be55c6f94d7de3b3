// Exact match as evaluation scripts define it: strict (Python's strip() on both sides) and SQuAD v1.1's
// normalize_answer (lowercase, ASCII punctuation removed, articles removed, whitespace collapsed).
using System.Globalization;
using System.Text;

namespace ManagedT5.Evaluation;

/// <summary>Exact-match scores: 1.0 when the hypothesis equals any reference after normalisation, else 0.0.</summary>
public static class ExactMatch
{
    /// <summary>Strict: <c>hyp.strip() == ref.strip()</c> (Python's strip removes all Unicode whitespace).</summary>
    public static double Strict(string hypothesis, IReadOnlyList<string> references)
    {
        ArgumentNullException.ThrowIfNull(hypothesis);
        ArgumentNullException.ThrowIfNull(references);
        string h = PythonText.Strip(hypothesis);
        return references.Any(r => PythonText.Strip(r) == h) ? 1.0 : 0.0;
    }

    /// <summary>SQuAD v1.1: <c>normalize_answer(hyp) == normalize_answer(ref)</c> for any reference.</summary>
    public static double Squad(string hypothesis, IReadOnlyList<string> references)
    {
        ArgumentNullException.ThrowIfNull(hypothesis);
        ArgumentNullException.ThrowIfNull(references);
        string h = SquadNormalize(hypothesis);
        return references.Any(r => SquadNormalize(r) == h) ? 1.0 : 0.0;
    }

    /// <summary>
    /// SQuAD v1.1's <c>normalize_answer</c>, in its order: Python lower(); remove every ASCII punctuation character
    /// (string.punctuation; "¡", "—" and "。" stay); replace each whole word a / an / the (\b as Python's Unicode
    /// re sees it) with a space; collapse whitespace. "The don't" → "dont"; "1,000.50" → "100050".
    /// </summary>
    public static string SquadNormalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string lowered = PythonText.Lower(text);
        var noPunct = new StringBuilder(lowered.Length);
        foreach (char c in lowered)
            if (!IsAsciiPunctuation(c)) noPunct.Append(c);
        string s = noPunct.ToString();

        int[] cps = PythonText.CodePoints(s);
        var sb = new StringBuilder(s.Length);
        int i = 0;
        while (i < cps.Length)
        {
            int len = ArticleAt(cps, i);
            if (len > 0) { sb.Append(' '); i += len; }
            else PythonText.AppendCodePoint(sb, cps[i++]);
        }
        return string.Join(' ', PythonText.Split(sb.ToString()));
    }

    // Python's string.punctuation: !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~
    static bool IsAsciiPunctuation(char c) => c is (>= '!' and <= '/') or (>= ':' and <= '@') or (>= '[' and <= '`') or (>= '{' and <= '~');

    // The length of a whole-word "a", "an" or "the" starting at i (0 when none): a word boundary on both sides.
    static int ArticleAt(int[] cps, int i)
    {
        if (i > 0 && IsWord(cps[i - 1])) return 0;
        foreach (string article in (string[])["a", "an", "the"])
        {
            int n = article.Length;
            if (i + n > cps.Length) continue;
            bool same = true;
            for (int k = 0; k < n; k++) if (cps[i + k] != article[k]) { same = false; break; }
            if (same && (i + n == cps.Length || !IsWord(cps[i + n]))) return n;
        }
        return 0;
    }

    // Python re's \w for str patterns: alphanumeric (str.isalnum: letters and numbers) or underscore. Unlike .NET's
    // \w, combining marks are not word characters.
    static bool IsWord(int c) => c == '_' || PythonText.Category(c) is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter
        or UnicodeCategory.TitlecaseLetter or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter
        or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber;
}
