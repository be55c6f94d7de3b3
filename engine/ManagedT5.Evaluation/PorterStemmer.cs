// The Porter stemmer as NLTK implements it in its default NLTK_EXTENSIONS mode (nltk/stem/porter.py, NLTK 3.8):
// Porter's five steps plus Martin Porter's and NLTK's amendments. rouge_score stems with it when asked to.
namespace ManagedT5.Evaluation;

/// <summary>
/// NLTK's <c>PorterStemmer()</c> (mode NLTK_EXTENSIONS): "quickly" → "quickli", "companies" → "compani",
/// "running" → "run". Words of one or two letters are returned as they are (lowercased); a few irregular forms
/// ("dying" → "die", "skies" → "sky", ...) come from a table.
/// </summary>
public static class PorterStemmer
{
    static readonly Dictionary<string, string> Irregular = new(StringComparer.Ordinal)
    {
        ["sky"] = "sky", ["skies"] = "sky", ["dying"] = "die", ["lying"] = "lie", ["tying"] = "tie", ["news"] = "news",
        ["innings"] = "inning", ["inning"] = "inning", ["outings"] = "outing", ["outing"] = "outing",
        ["cannings"] = "canning", ["canning"] = "canning", ["howe"] = "howe", ["proceed"] = "proceed",
        ["exceed"] = "exceed", ["succeed"] = "succeed",
    };

    /// <summary>The stem of <paramref name="word"/> (lowercased first, as NLTK's <c>stem(word)</c> does).</summary>
    public static string Stem(string word)
    {
        ArgumentNullException.ThrowIfNull(word);
        string stem = PythonText.Lower(word);
        if (Irregular.TryGetValue(word, out string? irregular)) return irregular;
        if (word.Length <= 2) return stem;
        stem = Step1a(stem);
        stem = Step1b(stem);
        stem = Step1c(stem);
        stem = Step2(stem);
        stem = Step3(stem);
        stem = Step4(stem);
        stem = Step5a(stem);
        stem = Step5b(stem);
        return stem;
    }

    // A consonant is a letter other than a, e, i, o, u, and other than a y that follows a consonant.
    static bool IsConsonant(string w, int i)
    {
        char c = w[i];
        if (c is 'a' or 'e' or 'i' or 'o' or 'u') return false;
        if (c == 'y') return i == 0 || !IsConsonant(w, i - 1);
        return true;
    }

    // m in [C](VC){m}[V]: the number of vowel-to-consonant transitions.
    static int Measure(string stem)
    {
        int m = 0;
        for (int i = 1; i < stem.Length; i++)
            if (!IsConsonant(stem, i - 1) && IsConsonant(stem, i)) m++;
        return m;
    }

    static bool HasPositiveMeasure(string stem) => Measure(stem) > 0;

    static bool ContainsVowel(string stem)
    {
        for (int i = 0; i < stem.Length; i++) if (!IsConsonant(stem, i)) return true;
        return false;
    }

    // *d: ends with a double consonant.
    static bool EndsDoubleConsonant(string w) => w.Length >= 2 && w[^1] == w[^2] && IsConsonant(w, w.Length - 1);

    // *o: ends consonant-vowel-consonant, the last not w, x or y; NLTK also accepts a two-letter vowel-consonant word.
    static bool EndsCvc(string w) =>
        (w.Length >= 3 && IsConsonant(w, w.Length - 3) && !IsConsonant(w, w.Length - 2) && IsConsonant(w, w.Length - 1) && w[^1] is not ('w' or 'x' or 'y'))
        || (w.Length == 2 && !IsConsonant(w, 0) && IsConsonant(w, 1));

    /// <summary>A suffix rule: the suffix ("*d" for a double consonant), its replacement, and a condition on the stem.</summary>
    readonly record struct Rule(string Suffix, string Replacement, Func<string, bool>? Condition);

    // The first rule whose suffix matches decides: applied if its condition holds, else the word stays as it is.
    static string ApplyRuleList(string word, IEnumerable<Rule> rules)
    {
        foreach (var (suffix, replacement, condition) in rules)
        {
            if (suffix == "*d" && EndsDoubleConsonant(word))
            {
                string stem = word[..^2];
                return condition is null || condition(stem) ? stem + replacement : word;
            }
            if (word.EndsWith(suffix, StringComparison.Ordinal))
            {
                string stem = word[..^suffix.Length];
                return condition is null || condition(stem) ? stem + replacement : word;
            }
        }
        return word;
    }

    // Step 1a: sses -> ss, ies -> i (NLTK: a four-letter "ies" word -> "ie"), ss -> ss, s -> "".
    static string Step1a(string word)
    {
        if (word.EndsWith("ies", StringComparison.Ordinal) && word.Length == 4) return word[..^3] + "ie";
        return ApplyRuleList(word, [new("sses", "ss", null), new("ies", "i", null), new("ss", "ss", null), new("s", "", null)]);
    }

    // Step 1b: (m>0) eed -> ee; (*v*) ed, ing -> "" and then tidy the stem (at -> ate, bl -> ble, iz -> ize,
    // undouble a final double consonant except l, s, z; (m=1 and *o) add e). NLTK: ied -> ie / i first.
    static string Step1b(string word)
    {
        if (word.EndsWith("ied", StringComparison.Ordinal))
            return word.Length == 4 ? word[..^3] + "ie" : word[..^3] + "i";
        if (word.EndsWith("eed", StringComparison.Ordinal))
        {
            string stem = word[..^3];
            return Measure(stem) > 0 ? stem + "ee" : word;
        }
        string? intermediate = null;
        foreach (string suffix in (string[])["ed", "ing"])
        {
            if (word.EndsWith(suffix, StringComparison.Ordinal))
            {
                string candidate = word[..^suffix.Length];
                if (ContainsVowel(candidate)) { intermediate = candidate; break; }
            }
        }
        if (intermediate is null) return word;
        string s = intermediate;
        return ApplyRuleList(s,
        [
            new("at", "ate", null),
            new("bl", "ble", null),
            new("iz", "ize", null),
            new("*d", s.Length > 0 ? s[^1].ToString() : "", _ => s[^1] is not ('l' or 's' or 'z')),
            new("", "e", stem => Measure(stem) == 1 && EndsCvc(stem)),
        ]);
    }

    // Step 1c (NLTK): y -> i when the y follows a consonant that is not the word's only letter.
    static string Step1c(string word) =>
        ApplyRuleList(word, [new("y", "i", stem => stem.Length > 1 && IsConsonant(stem, stem.Length - 1))]);

    // Step 2: (m>0) double suffixes to single ones (ational -> ate, ...); NLTK adds alli (repeated), fulli and logi.
    static string Step2(string word)
    {
        if (word.EndsWith("alli", StringComparison.Ordinal) && HasPositiveMeasure(word[..^4]))
            return Step2(word[..^4] + "al");
        Func<string, bool> m = HasPositiveMeasure;
        return ApplyRuleList(word,
        [
            new("ational", "ate", m), new("tional", "tion", m), new("enci", "ence", m), new("anci", "ance", m),
            new("izer", "ize", m), new("bli", "ble", m), new("alli", "al", m), new("entli", "ent", m),
            new("eli", "e", m), new("ousli", "ous", m), new("ization", "ize", m), new("ation", "ate", m),
            new("ator", "ate", m), new("alism", "al", m), new("iveness", "ive", m), new("fulness", "ful", m),
            new("ousness", "ous", m), new("aliti", "al", m), new("iviti", "ive", m), new("biliti", "ble", m),
            new("fulli", "ful", m),
            new("logi", "log", _ => HasPositiveMeasure(word[..^3])),
        ]);
    }

    // Step 3: (m>0) icate -> ic, ative -> "", alize -> al, iciti -> ic, ical -> ic, ful -> "", ness -> "".
    static string Step3(string word)
    {
        Func<string, bool> m = HasPositiveMeasure;
        return ApplyRuleList(word,
        [
            new("icate", "ic", m), new("ative", "", m), new("alize", "al", m), new("iciti", "ic", m),
            new("ical", "ic", m), new("ful", "", m), new("ness", "", m),
        ]);
    }

    // Step 4: (m>1) drop al, ance, ence, er, ic, able, ible, ant, ement, ment, ent, (s|t)ion, ou, ism, ate, iti, ous, ive, ize.
    static string Step4(string word)
    {
        Func<string, bool> m = stem => Measure(stem) > 1;
        return ApplyRuleList(word,
        [
            new("al", "", m), new("ance", "", m), new("ence", "", m), new("er", "", m), new("ic", "", m),
            new("able", "", m), new("ible", "", m), new("ant", "", m), new("ement", "", m), new("ment", "", m),
            new("ent", "", m), new("ion", "", stem => Measure(stem) > 1 && stem[^1] is 's' or 't'),
            new("ou", "", m), new("ism", "", m), new("ate", "", m), new("iti", "", m), new("ous", "", m),
            new("ive", "", m), new("ize", "", m),
        ]);
    }

    // Step 5a: (m>1) e -> ""; (m=1 and not *o) e -> "".
    static string Step5a(string word)
    {
        if (!word.EndsWith('e')) return word;
        string stem = word[..^1];
        int measure = Measure(stem);
        if (measure > 1) return stem;
        if (measure == 1 && !EndsCvc(stem)) return stem;
        return word;
    }

    // Step 5b: (m>1 and *d and *L) ll -> l.
    static string Step5b(string word) =>
        ApplyRuleList(word, [new("ll", "l", _ => Measure(word[..^1]) > 1)]);
}
