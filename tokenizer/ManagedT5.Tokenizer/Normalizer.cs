// Normalizer: sentencepiece's Normalizer::Normalize — charsmap rules (nmt_nfkc), whitespace trimming and
// collapsing, the dummy "▁" prefix and space escaping — over UTF-8, keeping a map back to the input.

using System.Text;

namespace ManagedT5.Tokenizer;

/// <summary>
/// Turns raw UTF-8 text into the normalized form the unigram model segments, e.g.
/// <c>"  Hello\u00A0 ｗorld "</c> → <c>"▁Hello▁world"</c>. Optionally records, for every normalized byte,
/// the input byte it came from (sentencepiece's <c>norm_to_orig</c>), which gives token offsets.
/// </summary>
internal sealed class Normalizer
{
    private static ReadOnlySpan<byte> SpaceSymbol => "\u2581"u8;          // ▁ (U+2581)
    private static ReadOnlySpan<byte> ReplacementChar => "\uFFFD"u8;      // for malformed UTF-8

    private readonly PrecompiledCharsMap? _charsMap;
    private readonly PieceTrie? _userDefined;  // user-defined pieces pass through unnormalized
    private readonly bool _addDummyPrefix;
    private readonly bool _removeExtraWhitespaces;
    private readonly bool _escapeWhitespaces;

    // ASCII fast path: for each byte < 0x80, how NormalizePrefix treats it when alone.
    private readonly AsciiRule[] _ascii = new AsciiRule[128];
    private readonly byte[][] _asciiReplacement = new byte[128][];

    private enum AsciiRule : byte
    {
        Plain,    // copied as it is and not a space: runs of these are copied in one go
        Identity, // copied as it is (the space)
        Replace,  // one charsmap rule of one byte, e.g. '\t' -> ' '
        Slow,     // a longer rule or a user-defined piece may start here
    }

    public Normalizer(NormalizerSpec spec, PieceTrie? userDefinedPieces)
    {
        _charsMap = spec.PrecompiledCharsmap.Length == 0 ? null : PrecompiledCharsMap.Parse(spec.PrecompiledCharsmap);
        _userDefined = userDefinedPieces;
        _addDummyPrefix = spec.AddDummyPrefix;
        _removeExtraWhitespaces = spec.RemoveExtraWhitespaces;
        _escapeWhitespaces = spec.EscapeWhitespaces;

        Span<byte> one = stackalloc byte[1];
        for (int b = 0; b < 128; b++)
        {
            _asciiReplacement[b] = [(byte)b];
            one[0] = (byte)b;
            bool userDefinedStart = _userDefined is not null && _userDefined.Child(0, (byte)b) >= 0;
            if (userDefinedStart || (_charsMap?.HasLongerKeys((byte)b) ?? false))
            {
                _ascii[b] = AsciiRule.Slow;
            }
            else if (_charsMap is not null && _charsMap.LongestMatch(one, out var replacement) == 1)
            {
                _ascii[b] = AsciiRule.Replace;
                _asciiReplacement[b] = replacement.ToArray();
            }
            else
            {
                _ascii[b] = b == ' ' ? AsciiRule.Identity : AsciiRule.Plain;
            }
        }
    }

    /// <summary>
    /// Normalizes <paramref name="input"/> into <paramref name="output"/>. With <paramref name="trackOffsets"/>,
    /// <paramref name="normToOrig"/> gets one input offset per output byte plus a final end offset.
    /// </summary>
    /// <param name="input">The text as UTF-8.</param>
    /// <param name="output">The normalized text.</param>
    /// <param name="normToOrig">For each output byte, its input byte (only with <paramref name="trackOffsets"/>).</param>
    /// <param name="trackOffsets">Fill <paramref name="normToOrig"/>.</param>
    /// <param name="fast">HuggingFace's fast tokenizer (tokenizer.json: Precompiled, Replace " {2,}" → " ", Metaspace):
    /// whitespace runs still collapse, but leading and trailing whitespace is kept (as one '▁'), and the dummy '▁' is
    /// only prepended when the text does not already start with one (HF tokenizers issue 1250).</param>
    public void Normalize(ReadOnlySpan<byte> input, ref ArrayBuilder<byte> output, ref ArrayBuilder<int> normToOrig, bool trackOffsets,
        bool fast = false)
    {
        output.Clear();
        normToOrig.Clear();
        if (input.IsEmpty) return;

        int pos = 0;
        bool trim = _removeExtraWhitespaces && !fast;
        // Leading whitespace is dropped.
        if (trim)
        {
            while (pos < input.Length)
            {
                int n = NormalizePrefix(input[pos..], out var replacement);
                if (replacement.Length != 1 || replacement[0] != (byte)' ') break;
                pos += n;
            }
        }
        if (pos == input.Length) return; // all whitespace

        // Usually enough (a space grows to the 3-byte '▁'); Add grows the buffers when it is not.
        int expected = (input.Length - pos) * 3 / 2 + 16;
        output.EnsureCapacity(expected);
        if (trackOffsets) normToOrig.EnsureCapacity(expected + 1);

        // "world" and "hello world" both start their word with "▁".
        if (_addDummyPrefix && !(fast && StartsWithSpace(input))) AppendSpace(ref output, ref normToOrig, trackOffsets, pos);

        int prefixLength = output.Count;
        bool isPrevSpace = trim;
        while (pos < input.Length)
        {
            int consumed;
            ReadOnlySpan<byte> replacement;
            byte first = input[pos];
            if (first < 0x80 && _ascii[first] == AsciiRule.Plain)
            {
                // Fast path: a run of ASCII that normalizes to itself, e.g. a word.
                int runEnd = pos + 1;
                while (runEnd < input.Length && input[runEnd] < 0x80 && _ascii[input[runEnd]] == AsciiRule.Plain) runEnd++;
                output.AddRange(input[pos..runEnd]);
                if (trackOffsets)
                {
                    for (int k = pos; k < runEnd; k++) normToOrig.Add(k);
                }
                isPrevSpace = false;
                pos = runEnd;
                continue;
            }
            if (first < 0x80 && _ascii[first] != AsciiRule.Slow)
            {
                consumed = 1;
                replacement = _ascii[first] == AsciiRule.Identity ? input.Slice(pos, 1) : _asciiReplacement[first];
            }
            else
            {
                consumed = NormalizePrefix(input[pos..], out replacement);
            }

            // Collapse runs of whitespace: drop spaces that follow a space.
            if (isPrevSpace)
            {
                while (!replacement.IsEmpty && replacement[0] == (byte)' ') replacement = replacement[1..];
            }

            if (!replacement.IsEmpty)
            {
                foreach (byte c in replacement)
                {
                    if (c == (byte)' ' && _escapeWhitespaces)
                    {
                        AppendSpace(ref output, ref normToOrig, trackOffsets, pos);
                    }
                    else
                    {
                        output.Add(c);
                        if (trackOffsets) normToOrig.Add(pos);
                    }
                }
                isPrevSpace = replacement[^1] == (byte)' ';
            }

            pos += consumed;
            if (!_removeExtraWhitespaces) isPrevSpace = false;
        }

        // Trailing whitespace is dropped; the end offset moves back to where it started.
        int end = pos;
        if (trim)
        {
            ReadOnlySpan<byte> space = _escapeWhitespaces ? SpaceSymbol : " "u8;
            while (output.Span.EndsWith(space))
            {
                int length = output.Count - space.Length;
                if (trackOffsets)
                {
                    end = normToOrig[length];
                    normToOrig.Truncate(length);
                }
                output.Truncate(length);
            }
        }

        if (fast && output.Count == prefixLength)
        {
            // Nothing but characters that normalize to nothing: no dummy '▁' either.
            output.Clear();
            normToOrig.Clear();
            return;
        }
        if (trackOffsets) normToOrig.Add(end);
    }

    /// <summary>Whether the first character that normalizes to anything normalizes to a space.</summary>
    private bool StartsWithSpace(ReadOnlySpan<byte> input)
    {
        while (!input.IsEmpty)
        {
            int consumed = NormalizePrefix(input, out var replacement);
            if (!replacement.IsEmpty) return replacement[0] == (byte)' ';
            input = input[consumed..];
        }
        return false;
    }

    /// <summary>Normalizes a whole string to a string (for tests and diagnostics).</summary>
    public string Normalize(string text)
    {
        var output = new ArrayBuilder<byte>(16);
        var map = new ArrayBuilder<int>(16);
        Normalize(Encoding.UTF8.GetBytes(text), ref output, ref map, trackOffsets: false);
        return Encoding.UTF8.GetString(output.Span);
    }

    private void AppendSpace(ref ArrayBuilder<byte> output, ref ArrayBuilder<int> normToOrig, bool trackOffsets, int origin)
    {
        if (_escapeWhitespaces)
        {
            output.AddRange(SpaceSymbol);
            if (trackOffsets)
            {
                normToOrig.Add(origin);
                normToOrig.Add(origin);
                normToOrig.Add(origin);
            }
        }
        else
        {
            output.Add((byte)' ');
            if (trackOffsets) normToOrig.Add(origin);
        }
    }

    /// <summary>
    /// sentencepiece's NormalizePrefix: the replacement for the start of <paramref name="input"/> and how many
    /// bytes it consumes. User-defined pieces are copied as they are; otherwise the longest charsmap rule
    /// applies; otherwise one UTF-8 character is copied (a malformed byte becomes U+FFFD).
    /// </summary>
    private int NormalizePrefix(ReadOnlySpan<byte> input, out ReadOnlySpan<byte> replacement)
    {
        if (_userDefined is not null)
        {
            int length = _userDefined.LongestPrefix(input);
            if (length > 0)
            {
                replacement = input[..length];
                return length;
            }
        }

        if (_charsMap is not null)
        {
            int matched = _charsMap.LongestMatch(input, out replacement);
            if (matched > 0) return matched;
        }

        if (Rune.DecodeFromUtf8(input, out _, out int charLength) != System.Buffers.OperationStatus.Done)
        {
            replacement = ReplacementChar;
            return 1;
        }
        replacement = input[..charLength];
        return charLength;
    }
}
