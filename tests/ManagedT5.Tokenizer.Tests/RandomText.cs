// RandomText: deterministic generator of awkward test strings — mixed scripts, whitespace runs, emoji,
// digits, punctuation, sentinels, control characters, compatibility forms and tie-prone repetitions.

using System.Text;

namespace ManagedT5.Tokenizer.Tests;

internal static class RandomText
{
    private static readonly string[] Words =
    [
        "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "translate", "English", "to", "German",
        "summarize", "question", "answer", "Hello", "world", "tokenizer", "sentencepiece", "unigram", "Viterbi",
        "don't", "it's", "we're", "I'm", "you've", "co-operate", "e-mail", "U.S.A.", "Mr.", "Dr", "naïve", "café",
        "Straße", "München", "façade", "Zürich", "résumé", "jalapeño", "Ångström", "smörgåsbord", "Øresund",
        "Привет", "мир", "Москва", "Γειά", "κόσμε", "日本語", "東京", "中文", "你好", "テキスト", "ｶﾀｶﾅ", "한국어",
        "مرحبا", "שלום", "नमस्ते", "ภาษาไทย", "Tiếng", "Việt", "İstanbul", "ǅemal", "ﬁsh", "ﬂower", "Ⅻ", "№5",
        "x²", "H₂O", "½", "¼", "①", "⑳", "㎏", "℃", "™", "©", "…", "—", "–", "«quotes»", "“double”", "‘single’",
        "$100", "€50", "£3", "¥1000", "50%", "#tag", "@user", "a.b@c.de", "https://example.com/path?q=1&x=2",
        "C#", "C++", "F#", "snake_case", "camelCase", "kebab-case", "def", "f(x):", "{x:", "[1,", "2]}", "<b>",
        "3.14159", "1234567890", "2025", "21st", "0x1F", "1e-9", "gggggggg", "aaaaaaaa", "ababababab", "lll",
        "ＦＵＬＬ", "ｗｉｄｔｈ", "１２３", "ｱｲｳ", "▁", "▁▁x", "⁄", "~`^|\\", "...!!!???", "\"'", "()", "<>",
    ];

    private const string Punctuation = ".,;:!?-_'\"()[]{}/\\*&^%$#@~`+=<>|";

    private static readonly string[] Specials =
        ["<extra_id_0>", "<extra_id_1>", "<extra_id_42>", "<extra_id_99>", "<extra_id_100>", "</s>", "<pad>", "<unk>", "<s>", "<extra_id_"];

    private static readonly string[] Whitespace =
        [" ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\u00A0", "\u3000", "\u2003", "\u200B", "\u2028", "\u000B", "\f", " \t \n "];

    private static readonly string[] Emoji =
        ["😀", "🚀", "👍🏽", "👨‍👩‍👧", "🇩🇪", "❤️", "☺", "🀄", "🤖", "✨"];

    private static readonly string[] Controls =
        ["\0", "\u0001", "\u0007", "\u001B", "\u001F", "\u007F", "\u0085", "\u00AD", "\u200D", "\u200E", "\u202E", "\uFEFF", "\u0301", "e\u0301", "\uFFFD", "\uFFFF"];

    /// <summary>The strings of one run: the same <paramref name="seed"/> always gives the same list.</summary>
    public static List<string> Generate(int count, int seed)
    {
        var random = new Random(seed);
        var texts = new List<string>(count);
        for (int i = 0; i < count; i++) texts.Add(Next(random));
        return texts;
    }

    private static string Next(Random random)
    {
        var sb = new StringBuilder();
        int parts = random.Next(0, 12);
        if (random.Next(10) == 0) sb.Append(Pick(random, Whitespace)); // leading whitespace
        for (int p = 0; p < parts; p++)
        {
            int kind = random.Next(100);
            if (kind < 40) sb.Append(Pick(random, Words));
            else if (kind < 55) sb.Append(Pick(random, Whitespace));
            else if (kind < 62) sb.Append(Pick(random, Emoji));
            else if (kind < 68) sb.Append(Pick(random, Specials));
            else if (kind < 74) sb.Append(Pick(random, Controls));
            else if (kind < 80) sb.Append(random.Next(0, 1_000_000).ToString(System.Globalization.CultureInfo.InvariantCulture));
            else if (kind < 86) sb.Append(Punctuation[random.Next(Punctuation.Length)]);
            else if (kind < 92) sb.Append(new string("aglobsn"[random.Next(7)], random.Next(2, 12)));
            else sb.Append(RandomCodePoints(random, random.Next(1, 6)));
            if (random.Next(3) == 0) sb.Append(' ');
        }
        if (random.Next(10) == 0) sb.Append(Pick(random, Whitespace)); // trailing whitespace
        return sb.ToString();
    }

    /// <summary>Random scalar values (no surrogates), from the BMP mostly, some astral.</summary>
    private static string RandomCodePoints(Random random, int count)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < count; i++)
        {
            int cp;
            do
            {
                cp = random.Next(10) switch
                {
                    < 3 => random.Next(0x20, 0x250),        // Latin and Latin-1 supplement, extended
                    < 5 => random.Next(0x250, 0x3000),      // many scripts, symbols, compatibility forms
                    < 7 => random.Next(0x3000, 0xA000),     // CJK, kana, Hangul jamo
                    < 9 => random.Next(0xA000, 0x10000),    // Hangul, compatibility, halfwidth/fullwidth
                    _ => random.Next(0x10000, 0x30000),     // astral
                };
            } while (cp is >= 0xD800 and <= 0xDFFF);
            sb.Append(char.ConvertFromUtf32(cp));
        }
        return sb.ToString();
    }

    private static string Pick(Random random, string[] items) => items[random.Next(items.Length)];
}
