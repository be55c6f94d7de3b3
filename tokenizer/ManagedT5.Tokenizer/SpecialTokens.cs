// SpecialTokens: finds special tokens written in a text ("</s>", "<pad>", "<extra_id_3>"), the way HuggingFace splits
// a text at its added tokens before the text on each side is tokenized. Linear in the text: one vectorised search.

using System.Buffers;

namespace ManagedT5.Tokenizer;

/// <summary>
/// The special tokens a text is split at, with their ids. A match is the longest token starting at the leftmost
/// position where any token starts (HuggingFace's added-token trie). Each candidate position costs one dictionary
/// lookup per distinct token length, so the scan stays linear however many '&lt;' a text holds.
/// </summary>
internal sealed class SpecialTokens
{
    private readonly Dictionary<string, (int Id, bool Strip)>.AlternateLookup<ReadOnlySpan<char>> _tokens;
    private readonly SearchValues<char> _firstChars;
    private readonly int[] _lengths;   // distinct token lengths, longest first
    private readonly SearchValues<char>[] _lastChars;   // per entry of _lengths: the last characters of tokens that long
    private readonly SearchValues<char> _secondChars;   // second characters of tokens longer than one character

    /// <param name="tokens">Each token's text, id, and whether the whitespace on both sides of it is stripped
    /// (an AddedToken with lstrip and rstrip, as ByT5's sentinels are).</param>
    public SpecialTokens(IEnumerable<(string Text, int Id, bool Strip)> tokens)
    {
        var map = new Dictionary<string, (int, bool)>(StringComparer.Ordinal);
        foreach (var (text, id, strip) in tokens)
        {
            if (text.Length > 0) map.TryAdd(text, (id, strip));
        }
        _tokens = map.GetAlternateLookup<ReadOnlySpan<char>>();
        _firstChars = SearchValues.Create(string.Concat(map.Keys.Select(k => k[0]).Distinct()));
        _lengths = map.Keys.Select(k => k.Length).Distinct().OrderDescending().ToArray();
        // Cheap checks before a hash lookup, so text full of '<' that starts no token ("<b>", "<<<") costs little.
        _lastChars = _lengths.Select(n => SearchValues.Create(string.Concat(map.Keys.Where(k => k.Length == n).Select(k => k[^1]).Distinct()))).ToArray();
        _secondChars = SearchValues.Create(string.Concat(map.Keys.Where(k => k.Length > 1).Select(k => k[1]).Distinct()));
        Count = map.Count;
    }

    /// <summary>How many tokens there are.</summary>
    public int Count { get; }

    /// <summary>Finds the first special token in <c>text[from..]</c>.</summary>
    /// <returns>False when there is none.</returns>
    public bool TryFind(ReadOnlySpan<char> text, int from, out int at, out int length, out int id, out bool strip)
    {
        while (from < text.Length)
        {
            int found = text[from..].IndexOfAny(_firstChars);
            if (found < 0) break;
            at = from + found;
            bool secondMatches = at + 1 < text.Length && _secondChars.Contains(text[at + 1]);
            for (int i = 0; i < _lengths.Length; i++)
            {
                int candidate = _lengths[i];
                if (candidate > text.Length - at || (candidate > 1 && !secondMatches) || !_lastChars[i].Contains(text[at + candidate - 1])) continue;
                if (_tokens.TryGetValue(text.Slice(at, candidate), out var token))
                {
                    length = candidate;
                    (id, strip) = token;
                    return true;
                }
            }
            from = at + 1;
        }
        at = length = id = 0;
        strip = false;
        return false;
    }
}
