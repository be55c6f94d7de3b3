// ByteLevelModel: ByT5's vocabulary (google/byt5-*): <pad> 0, </s> 1, <unk> 2, the 256 UTF-8 bytes as 3..258, then
// the sentinels <extra_id_0> = 259, <extra_id_1> = 260, ... as HuggingFace's ByT5Tokenizer numbers them.

using System.Text;

namespace ManagedT5.Tokenizer;

/// <summary>
/// The byte-level "model": each UTF-8 byte b of the text is the id b + 3. Nothing is normalized. Decoding joins the
/// bytes and drops every byte that is not part of a valid UTF-8 character, as Python's
/// <c>bytes.decode("utf-8", errors="ignore")</c> does in HuggingFace's ByT5Tokenizer.
/// </summary>
internal sealed class ByteLevelModel : ITokenModel
{
    /// <summary>Ids before the first byte: &lt;pad&gt;, &lt;/s&gt;, &lt;unk&gt;.</summary>
    public const int ByteOffset = 3;

    /// <summary>Sentinels of google/byt5-*: tokenizer_config.json's extra_ids.</summary>
    public const int DefaultExtraIds = 125;

    private const int SentinelStart = ByteOffset + 256;   // 259: <extra_id_0>

    private readonly string[] _pieces;
    private readonly Dictionary<string, int> _pieceToId;

    public ByteLevelModel(int extraIds)
    {
        ExtraIds = extraIds;
        _pieces = new string[SentinelStart + extraIds];
        _pieces[0] = "<pad>";
        _pieces[1] = "</s>";
        _pieces[2] = "<unk>";
        // HuggingFace's convert_ids_to_tokens: chr(byte), so 0xC3 is "Ã".
        for (int b = 0; b < 256; b++) _pieces[ByteOffset + b] = ((char)b).ToString();
        for (int n = 0; n < extraIds; n++) _pieces[SentinelStart + n] = "<extra_id_" + n + ">";
        _pieceToId = new Dictionary<string, int>(_pieces.Length, StringComparer.Ordinal);
        for (int id = 0; id < _pieces.Length; id++) _pieceToId.TryAdd(_pieces[id], id);
    }

    /// <summary>Number of sentinels.</summary>
    public int ExtraIds { get; }

    public int VocabSize => _pieces.Length;
    public int UnkId => 2;
    public string IdToPiece(int id) => _pieces[id];
    public bool TryGetId(string piece, out int id) => _pieceToId.TryGetValue(piece, out id);

    public PieceType TypeOf(int id) => id switch
    {
        0 or 1 => PieceType.Control,
        2 => PieceType.Unknown,
        < SentinelStart => PieceType.Byte,
        _ => PieceType.Control,
    };

    /// <summary>The id of sentinel <c>&lt;extra_id_n&gt;</c>.</summary>
    public static int SentinelId(int n) => SentinelStart + n;

    /// <summary>One token per byte; <paramref name="normalized"/> is the text's UTF-8 as it is.</summary>
    public void Encode(ReadOnlySpan<byte> normalized, ref ArrayBuilder<BestPath> lattice, ref ArrayBuilder<RawToken> tokens, bool splitAtSpaces)
    {
        tokens.Clear();
        var span = tokens.EnsureCapacity(normalized.Length).AsSpan(0, normalized.Length);
        for (int i = 0; i < span.Length; i++) span[i] = new RawToken { Id = normalized[i] + ByteOffset, NormStart = i, NormEnd = i + 1 };
        tokens.SetCount(normalized.Length);
    }

    /// <summary>The bytes of the byte ids, as text; special ids add nothing.</summary>
    public void Decode(ReadOnlySpan<int> ids, StringBuilder output) => Decode(ids, output, skipSpecialTokens: true);

    /// <summary>
    /// HuggingFace's ByT5Tokenizer decode: byte ids are bytes, special ids are the UTF-8 of their spelling (or nothing when
    /// <paramref name="skipSpecialTokens"/>), all joined with no space between, then decoded with invalid UTF-8 dropped.
    /// </summary>
    public void Decode(ReadOnlySpan<int> ids, StringBuilder output, bool skipSpecialTokens)
    {
        var bytes = new ArrayBuilder<byte>(ids.Length);
        foreach (int id in ids)
        {
            if (TypeOf(id) == PieceType.Byte) bytes.Add((byte)(id - ByteOffset));
            else if (!skipSpecialTokens) bytes.AddRange(Encoding.UTF8.GetBytes(_pieces[id]));
        }
        AppendValidUtf8(bytes.Span, output);
    }

    /// <summary>Appends the valid UTF-8 characters of <paramref name="bytes"/>; every invalid or cut-off sequence is dropped
    /// (so a character whose last bytes have not been generated yet is simply not there).</summary>
    internal static void AppendValidUtf8(ReadOnlySpan<byte> bytes, StringBuilder output)
    {
        Span<char> pair = stackalloc char[2];
        while (!bytes.IsEmpty)
        {
            var status = System.Text.Rune.DecodeFromUtf8(bytes, out System.Text.Rune rune, out int consumed);
            if (status == System.Buffers.OperationStatus.Done) output.Append(pair[..rune.EncodeToUtf16(pair)]);
            bytes = bytes[Math.Max(consumed, 1)..];
        }
    }
}
