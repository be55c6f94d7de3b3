// sacreBLEU's BLEU tokenizers: 13a (mteval-v13a, the default), intl (mteval-v14 international), zh, char and none.
// Each turns one segment into space-separated tokens exactly as sacreBLEU 2.6.0 does.
using System.Globalization;
using System.Text;

namespace ManagedT5.Evaluation;

/// <summary>The tokenizers BLEU can use, by sacreBLEU's names (<c>--tokenize</c>).</summary>
public enum BleuTokenize
{
    /// <summary><c>13a</c>: mteval-v13a, the WMT standard and sacreBLEU's default. Leaves CJK text unsplit.</summary>
    Mteval13a,
    /// <summary><c>intl</c>: mteval-v14 international: splits Unicode punctuation (unless between digits) and symbols.</summary>
    Intl,
    /// <summary><c>zh</c>: splits each Chinese character (by sacreBLEU's range table, bug included), then 13a's rules.</summary>
    Zh,
    /// <summary><c>char</c>: every character is a token.</summary>
    Char,
    /// <summary><c>none</c>: the text is taken as already tokenized on whitespace.</summary>
    None,
}

/// <summary>The BLEU tokenizers and their names.</summary>
public static class BleuTokenizer
{
    /// <summary>The tokenizer's name as sacreBLEU spells it (and as the signature shows it).</summary>
    public static string Name(BleuTokenize tokenize) => tokenize switch
    {
        BleuTokenize.Mteval13a => "13a",
        BleuTokenize.Intl => "intl",
        BleuTokenize.Zh => "zh",
        BleuTokenize.Char => "char",
        BleuTokenize.None => "none",
        _ => throw new ArgumentOutOfRangeException(nameof(tokenize)),
    };

    /// <summary>Parses a sacreBLEU tokenizer name (13a, intl, zh, char, none); null when it is not one of them.</summary>
    public static BleuTokenize? Parse(string name) => name switch
    {
        "13a" => BleuTokenize.Mteval13a,
        "intl" => BleuTokenize.Intl,
        "zh" => BleuTokenize.Zh,
        "char" => BleuTokenize.Char,
        "none" => BleuTokenize.None,
        _ => null,
    };

    /// <summary>Tokenizes one segment (already right-stripped and optionally lowercased, as BLEU does before calling it).</summary>
    public static string Tokenize(string line, BleuTokenize tokenize) => tokenize switch
    {
        BleuTokenize.Mteval13a => Tokenize13a(line),
        BleuTokenize.Intl => TokenizeIntl(line),
        BleuTokenize.Zh => TokenizeZh(line),
        BleuTokenize.Char => TokenizeChar(line),
        BleuTokenize.None => line,
        _ => throw new ArgumentOutOfRangeException(nameof(tokenize)),
    };

    /// <summary>13a: mteval-v13a's language-independent clean-up, then the Western punctuation rules.</summary>
    public static string Tokenize13a(string line)
    {
        line = line.Replace("<skipped>", "").Replace("-\n", "").Replace("\n", " ");
        if (line.Contains('&'))
            line = line.Replace("&quot;", "\"").Replace("&amp;", "&").Replace("&lt;", "<").Replace("&gt;", ">");
        return PunctuationRules(" " + line + " ");
    }

    /// <summary>
    /// The rules 13a and zh share (sacreBLEU's TokenizerRegexp), each a left-to-right, non-overlapping substitution
    /// like Python's re.sub: (1) every ASCII symbol in {|}~ [\]^_` space!"#$%&amp; ()*+ :;&lt;=&gt;?@ / gets spaces around
    /// it; (2) a period or comma gets spaces unless a digit precedes it, (3) or unless a digit follows it; (4) a dash
    /// after a digit gets spaces. Then whitespace is collapsed.
    /// </summary>
    internal static string PunctuationRules(string line)
    {
        var sb = new StringBuilder(line.Length * 2);
        // (1) ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> " \1 "
        foreach (char c in line)
        {
            if (c is (>= '{' and <= '~') or (>= '[' and <= '`') or (>= ' ' and <= '&') or (>= '(' and <= '+') or (>= ':' and <= '@') or '/')
                sb.Append(' ').Append(c).Append(' ');
            else sb.Append(c);
        }
        // (2) ([^0-9])([\.,]) -> "\1 \2 "
        line = SubstitutePairs(sb.ToString(), (a, b) => !IsAsciiDigit(a) && b is '.' or ',', (sb2, a, b) => sb2.Append(a).Append(' ').Append(b).Append(' '));
        // (3) ([\.,])([^0-9]) -> " \1 \2"
        line = SubstitutePairs(line, (a, b) => a is '.' or ',' && !IsAsciiDigit(b), (sb2, a, b) => sb2.Append(' ').Append(a).Append(' ').Append(b));
        // (4) ([0-9])(-) -> "\1 \2 "
        line = SubstitutePairs(line, (a, b) => IsAsciiDigit(a) && b == '-', (sb2, a, b) => sb2.Append(a).Append(' ').Append(b).Append(' '));
        return string.Join(' ', PythonText.Split(line));
    }

    static bool IsAsciiDigit(char c) => c is >= '0' and <= '9';

    // re.sub for a two-character pattern: scan left to right; at a match, write the replacement and skip both.
    // Every pattern here has an ASCII character on one side, so scanning UTF-16 units gives the same text as
    // scanning code points (a surrogate is never '.', ',', '-' or a digit).
    static string SubstitutePairs(string s, Func<char, char, bool> match, Action<StringBuilder, char, char> replace)
    {
        var sb = new StringBuilder(s.Length + 16);
        int i = 0;
        while (i < s.Length)
        {
            if (i + 1 < s.Length && match(s[i], s[i + 1])) { replace(sb, s[i], s[i + 1]); i += 2; }
            else sb.Append(s[i++]);
        }
        return sb.ToString();
    }

    /// <summary>
    /// intl: (1) punctuation (\p{P}) after a non-number (\P{N}) is split off, (2) punctuation before a non-number is
    /// split off, (3) every symbol (\p{S}, emoji included) is split off; then whitespace is collapsed. By code point.
    /// </summary>
    public static string TokenizeIntl(string line)
    {
        int[] cps = PythonText.CodePoints(line);
        // (1) (\P{N})(\p{P}) -> "\1 \2 "
        cps = SubstituteCodePointPairs(cps, (a, b) => !IsNumber(a) && IsPunctuation(b), (o, a, b) => { o.Add(a); o.Add(' '); o.Add(b); o.Add(' '); });
        // (2) (\p{P})(\P{N}) -> " \1 \2"
        cps = SubstituteCodePointPairs(cps, (a, b) => IsPunctuation(a) && !IsNumber(b), (o, a, b) => { o.Add(' '); o.Add(a); o.Add(' '); o.Add(b); });
        // (3) (\p{S}) -> " \1 "
        var spaced = new List<int>(cps.Length * 2);
        foreach (int c in cps)
        {
            if (IsSymbol(c)) { spaced.Add(' '); spaced.Add(c); spaced.Add(' '); }
            else spaced.Add(c);
        }
        var sb = new StringBuilder(spaced.Count);
        foreach (int c in spaced) PythonText.AppendCodePoint(sb, c);
        return string.Join(' ', PythonText.Split(sb.ToString()));
    }

    static int[] SubstituteCodePointPairs(int[] s, Func<int, int, bool> match, Action<List<int>, int, int> replace)
    {
        var o = new List<int>(s.Length + 16);
        int i = 0;
        while (i < s.Length)
        {
            if (i + 1 < s.Length && match(s[i], s[i + 1])) { replace(o, s[i], s[i + 1]); i += 2; }
            else o.Add(s[i++]);
        }
        return o.ToArray();
    }

    static bool IsNumber(int c) => PythonText.Category(c) is UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber;

    static bool IsPunctuation(int c) => PythonText.Category(c) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
        or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
        or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;

    static bool IsSymbol(int c) => PythonText.Category(c) is UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol
        or UnicodeCategory.ModifierSymbol or UnicodeCategory.OtherSymbol;

    /// <summary>
    /// zh: strip, put spaces around every "Chinese" character, then 13a's punctuation rules (without 13a's padding
    /// or entity clean-up).
    /// </summary>
    public static string TokenizeZh(string line)
    {
        line = PythonText.Strip(line);
        var sb = new StringBuilder(line.Length * 2);
        foreach (int c in PythonText.CodePoints(line))
        {
            if (IsZhChar(c)) { sb.Append(' '); PythonText.AppendCodePoint(sb, c); sb.Append(' '); }
            else PythonText.AppendCodePoint(sb, c);
        }
        return PunctuationRules(sb.ToString());
    }

    // sacreBLEU's _UCODE_RANGES, compared the way Python compares its strings. Two entries were meant as astral
    // ranges but are written '\u20000'..'\u2a6d6' and '\u2f800'..'\u2fa1d': a BMP character and a digit. As string
    // ranges they hold U+2001..U+2A6D (general punctuation, currency, arrows, ...) and U+2F81..U+2FA1, and no
    // character above U+FFFF.
    static readonly (int Start, int End)[] ZhRanges =
    [
        (0x3400, 0x4DB5), (0x4E00, 0x9FA5), (0x9FA6, 0x9FBB), (0xF900, 0xFA2D), (0xFA30, 0xFA6A), (0xFA70, 0xFAD9),
        (0x2001, 0x2A6D), (0x2F81, 0x2FA1),
        (0xFF00, 0xFFEF), (0x2E80, 0x2EFF), (0x3000, 0x303F), (0x31C0, 0x31EF), (0x2F00, 0x2FDF), (0x2FF0, 0x2FFF),
        (0x3100, 0x312F), (0x31A0, 0x31BF), (0xFE10, 0xFE1F), (0xFE30, 0xFE4F), (0x2600, 0x26FF), (0x2700, 0x27BF),
        (0x3200, 0x32FF), (0x3300, 0x33FF),
    ];

    static bool IsZhChar(int c)
    {
        foreach (var (start, end) in ZhRanges)
            if (c >= start && c <= end) return true;
        return false;
    }

    /// <summary>char: every code point becomes a token (spaces stay, so the later split drops them).</summary>
    public static string TokenizeChar(string line)
    {
        int[] cps = PythonText.CodePoints(line);
        var sb = new StringBuilder(line.Length * 2);
        for (int i = 0; i < cps.Length; i++)
        {
            if (i > 0) sb.Append(' ');
            PythonText.AppendCodePoint(sb, cps[i]);
        }
        return sb.ToString();
    }
}
