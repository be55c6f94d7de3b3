// PrecompiledCharsMap: SentencePiece's compiled normalization rules (e.g. nmt_nfkc) — a darts-clone
// double-array trie over UTF-8 keys whose values point into a block of NUL-terminated replacements.

using System.Buffers.Binary;

namespace ManagedT5.Tokenizer;

/// <summary>
/// The <c>precompiled_charsmap</c> blob: <c>[trie size: uint32 LE][trie units: uint32 LE ...][replacements: "a\0b\0..."]</c>.
/// <see cref="LongestMatch"/> finds the longest rule whose key is a prefix of the input, as
/// sentencepiece's <c>Normalizer::NormalizePrefix</c> does.
/// </summary>
internal sealed class PrecompiledCharsMap
{
    private readonly uint[] _units;        // darts-clone double-array units
    private readonly byte[] _replacements; // NUL-separated UTF-8 replacement strings

    private PrecompiledCharsMap(uint[] units, byte[] replacements)
    {
        _units = units;
        _replacements = replacements;
    }

    /// <summary>Decodes the blob. Throws <see cref="InvalidDataException"/> when it is malformed.</summary>
    public static PrecompiledCharsMap Parse(ReadOnlySpan<byte> blob)
    {
        if (blob.Length <= 4) throw new InvalidDataException("precompiled_charsmap is too short");
        uint trieSize = BinaryPrimitives.ReadUInt32LittleEndian(blob);
        if (trieSize == 0 || trieSize % 4 != 0 || trieSize > (uint)(blob.Length - 4))
            throw new InvalidDataException($"precompiled_charsmap trie size {trieSize} does not fit the {blob.Length}-byte blob");
        var units = new uint[trieSize / 4];
        for (int i = 0; i < units.Length; i++) units[i] = BinaryPrimitives.ReadUInt32LittleEndian(blob.Slice(4 + 4 * i));
        byte[] replacements = blob.Slice(4 + (int)trieSize).ToArray();
        return new PrecompiledCharsMap(units, replacements);
    }

    // darts-clone unit layout.
    private static bool HasLeaf(uint unit) => ((unit >> 8) & 1) != 0;
    private static uint Value(uint unit) => unit & 0x7FFFFFFFu;
    private static uint Label(uint unit) => unit & (0x80000000u | 0xFFu);
    private static uint Offset(uint unit) => (unit >> 10) << (int)((unit & (1u << 9)) >> 6);

    /// <summary>
    /// Longest rule matching a prefix of <paramref name="input"/>. Returns the number of input bytes the rule
    /// consumes (0 when no rule matches) and the rule's replacement.
    /// </summary>
    public int LongestMatch(ReadOnlySpan<byte> input, out ReadOnlySpan<byte> replacement)
    {
        replacement = default;
        uint[] units = _units;
        int matched = 0;
        uint value = 0;
        uint id = Offset(units[0]);
        for (int i = 0; i < input.Length; i++)
        {
            byte b = input[i];
            id ^= b;
            if (id >= (uint)units.Length) break;
            uint unit = units[id];
            if (Label(unit) != b) break;
            id ^= Offset(unit);
            if (id >= (uint)units.Length) break;
            if (HasLeaf(unit))
            {
                matched = i + 1;
                value = Value(units[id]);
            }
        }
        if (matched == 0) return 0;
        if (value >= (uint)_replacements.Length) return 0; // a malformed rule: treat as no rule
        var tail = _replacements.AsSpan((int)value);
        int end = tail.IndexOf((byte)0);
        replacement = end < 0 ? tail : tail[..end];
        return matched;
    }

    /// <summary>True when some rule's key starts with <paramref name="first"/> and is longer than one byte.</summary>
    public bool HasLongerKeys(byte first)
    {
        uint id = Offset(_units[0]) ^ first;
        if (id >= (uint)_units.Length || Label(_units[id]) != first) return false;
        uint node = id ^ Offset(_units[id]);
        // Any child other than the leaf slot (label 0 with the leaf bit) means longer keys exist.
        for (uint label = 1; label < 256; label++)
        {
            uint child = node ^ label;
            if (child < (uint)_units.Length && Label(_units[child]) == label) return true;
        }
        return false;
    }
}
