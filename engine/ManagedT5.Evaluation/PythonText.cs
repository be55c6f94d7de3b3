// Python's str semantics that the reference metrics depend on: whitespace (str.split/strip), full Unicode lower(),
// code points (Python indexes strings by code point, .NET by UTF-16 unit) and fixed-point formatting as f"{x:.2f}".
using System.Globalization;
using System.Text;

namespace ManagedT5.Evaluation;

/// <summary>
/// The handful of Python string operations the reference implementations use, written so that the same input gives
/// the same output as CPython 3.11. .NET's own versions differ at the edges: <c>char.IsWhiteSpace</c> misses
/// U+001C–U+001F, <c>ToLowerInvariant</c> maps İ to i (Python: i + U+0307) and knows no final sigma, and strings are
/// indexed by UTF-16 unit rather than by code point.
/// </summary>
internal static class PythonText
{
    /// <summary>Python's <c>str.isspace</c> for one code point: the separators <c>str.split()</c> and <c>str.strip()</c> use.</summary>
    public static bool IsSpace(int c) => c switch
    {
        >= 0x09 and <= 0x0D => true,
        >= 0x1C and <= 0x20 => true,
        0x85 or 0xA0 or 0x1680 => true,
        >= 0x2000 and <= 0x200A => true,
        0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000 => true,
        _ => false,
    };

    /// <summary>Python's <c>str.split()</c> with no argument: runs of whitespace separate, empty pieces are dropped.</summary>
    public static List<string> Split(string s)
    {
        var parts = new List<string>();
        int start = -1;
        for (int i = 0; i < s.Length; i++)
        {
            // Every Python whitespace character is in the BMP, so a surrogate is never a separator.
            if (IsSpace(s[i]))
            {
                if (start >= 0) { parts.Add(s.Substring(start, i - start)); start = -1; }
            }
            else if (start < 0) start = i;
        }
        if (start >= 0) parts.Add(s.Substring(start));
        return parts;
    }

    /// <summary>Python's <c>str.rstrip()</c>.</summary>
    public static string RStrip(string s)
    {
        int end = s.Length;
        while (end > 0 && IsSpace(s[end - 1])) end--;
        return s.Substring(0, end);
    }

    /// <summary>Python's <c>str.strip()</c>.</summary>
    public static string Strip(string s)
    {
        int end = s.Length, start = 0;
        while (end > 0 && IsSpace(s[end - 1])) end--;
        while (start < end && IsSpace(s[start])) start++;
        return s.Substring(start, end - start);
    }

    /// <summary>The code points of <paramref name="s"/> (a lone surrogate counts as one, as Python's surrogateescape would).</summary>
    public static int[] CodePoints(string s)
    {
        var cps = new List<int>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                cps.Add(char.ConvertToUtf32(s[i], s[i + 1]));
                i++;
            }
            else cps.Add(s[i]);
        }
        return cps.ToArray();
    }

    /// <summary>A string made of <paramref name="count"/> code points of <paramref name="cps"/> from <paramref name="start"/>.</summary>
    public static string FromCodePoints(int[] cps, int start, int count)
    {
        var sb = new StringBuilder(count);
        for (int i = start; i < start + count; i++) AppendCodePoint(sb, cps[i]);
        return sb.ToString();
    }

    /// <summary>Appends one code point (a surrogate pair above U+FFFF).</summary>
    public static void AppendCodePoint(StringBuilder sb, int c)
    {
        if (c > 0xFFFF) sb.Append(char.ConvertFromUtf32(c));
        else sb.Append((char)c);
    }

    /// <summary>The Unicode general category of a code point (lone surrogates are <c>Surrogate</c>).</summary>
    public static UnicodeCategory Category(int c) =>
        c is >= 0xD800 and <= 0xDFFF ? UnicodeCategory.Surrogate : CharUnicodeInfo.GetUnicodeCategory(c);

    /// <summary>
    /// Python's <c>str.lower()</c>: each code point's lowercase mapping, plus the two cases where Python uses more
    /// than the simple mapping: U+0130 (İ) becomes "i̇" (i + U+0307 combining dot above), and Σ becomes final ς when
    /// it ends a word (preceded by a cased letter and not followed by one, skipping case-ignorable characters).
    /// </summary>
    public static string Lower(string s)
    {
        int[] cps = CodePoints(s);
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < cps.Length; i++)
        {
            int c = cps[i];
            if (c < 0x80) sb.Append(c is >= 'A' and <= 'Z' ? (char)(c + 32) : (char)c);
            else if (c == 0x130) sb.Append("i\u0307");
            else if (c == 0x3A3) sb.Append(IsFinalSigma(cps, i) ? '\u03C2' : '\u03C3');
            else if (c is >= 0xD800 and <= 0xDFFF) sb.Append((char)c);
            else AppendCodePoint(sb, Rune.ToLowerInvariant(new Rune(c)).Value);
        }
        return sb.ToString();
    }

    // CPython's handle_capital_sigma: \p{cased}\p{case-ignorable}* Σ !(\p{case-ignorable}* \p{cased}).
    static bool IsFinalSigma(int[] cps, int i)
    {
        int j = i - 1;
        while (j >= 0 && IsCaseIgnorable(cps[j])) j--;
        if (j < 0 || !IsCased(cps[j])) return false;
        j = i + 1;
        while (j < cps.Length && IsCaseIgnorable(cps[j])) j++;
        return j == cps.Length || !IsCased(cps[j]);
    }

    // Unicode "Cased": Lu, Ll, Lt, or any character with a case mapping (Other_Lowercase/Other_Uppercase such as Ⓐ, Ⅰ).
    static bool IsCased(int c)
    {
        if (c is >= 0xD800 and <= 0xDFFF) return false;
        var cat = Category(c);
        if (cat is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter) return true;
        var r = new Rune(c);
        return Rune.ToLowerInvariant(r) != r || Rune.ToUpperInvariant(r) != r;
    }

    // Unicode "Case_Ignorable": Mn, Me, Cf, Lm, Sk, or Word_Break MidLetter / MidNumLet / Single_Quote.
    static bool IsCaseIgnorable(int c)
    {
        if (c is '\'' or '.' or ':' or 0xB7 or 0x387 or 0x55F or 0x5F4 or 0x2018 or 0x2019 or 0x2024 or 0x2027
            or 0xFE13 or 0xFE52 or 0xFE55 or 0xFF07 or 0xFF0E or 0xFF1A) return true;
        return Category(c) is UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark or UnicodeCategory.Format
            or UnicodeCategory.ModifierLetter or UnicodeCategory.ModifierSymbol;
    }

    /// <summary>
    /// Python's <c>f"{x:.{decimals}f}"</c>: the exact binary value rounded half to even. .NET's "F" format rounds an
    /// exact tie (0.125 to two places) away from zero, Python to even ("0.12").
    /// </summary>
    public static string FormatFixed(double x, int decimals)
    {
        if (double.IsNaN(x)) return "nan";
        if (double.IsInfinity(x)) return x > 0 ? "inf" : "-inf";
        // Far more digits than any tie needs: a double's exact expansion past the point needs at most 1074 digits, and
        // a tie at `decimals` is exact within decimals + 60 digits for every value this library formats.
        string exact = x.ToString("F" + (decimals + 60).ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        string rounded = x.ToString("F" + decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        int point = exact.IndexOf('.');
        string tail = exact.Substring(point + 1 + decimals);
        bool tie = tail[0] == '5' && tail.AsSpan(1).TrimEnd('0').IsEmpty;
        if (!tie) return rounded;
        // Exact tie: keep the truncated digits when the last one is even, else .NET's away-from-zero result is right.
        string truncated = exact.Substring(0, decimals == 0 ? point : point + 1 + decimals);
        char last = truncated[^1];
        return (last - '0') % 2 == 0 ? truncated : rounded;
    }
}
