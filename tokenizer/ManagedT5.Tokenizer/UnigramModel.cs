// UnigramModel: the vocabulary with scores, sentencepiece's Viterbi segmentation of normalized text
// (unknown characters scored min - 10, runs of them merged into one <unk>), and sentencepiece decoding.

using System.Text;

namespace ManagedT5.Tokenizer;

/// <summary>
/// A unigram language model over pieces: a text is split into the pieces whose scores (log probabilities)
/// sum highest. Mirrors sentencepiece's <c>unigram::Model::Encode</c> and <c>SentencePieceProcessor::Decode</c>
/// exactly, including float rounding, so ids match Google's implementation bit for bit.
/// </summary>
internal sealed class UnigramModel : ITokenModel
{
    private const float UnknownPenalty = 10.0f;  // sentencepiece's kUnkPenalty
    private const float FltMin = 1.17549435e-38f; // C's FLT_MIN: sentencepiece's starting max_score_
    private static ReadOnlySpan<byte> SpaceSymbol => "\u2581"u8;

    /// <summary>
    /// Longest piece accepted, in UTF-8 bytes. SentencePiece trains pieces of at most 16 characters by default and
    /// T5's longest is 20 bytes; user-defined pieces are tags. A piece costs one trie level per byte, and encoding
    /// walks as deep as the text matches, so a hostile model with a 200,000-byte piece is refused here.
    /// </summary>
    internal const int MaxPieceBytes = 4096;

    /// <summary>Most UTF-8 bytes all pieces may add up to (the trie has at most one node per byte): T5's add up to
    /// 0.27 MB, mT5's 250,000 pieces to a few MB. Keeps a hostile file from building a trie of gigabytes.</summary>
    internal const int MaxVocabularyBytes = 16 << 20;

    private readonly string[] _pieces;           // [vocab] piece text, e.g. "▁Hello"
    private readonly float[] _scores;            // [vocab] log probability
    private readonly PieceType[] _types;         // [vocab]
    private readonly Dictionary<string, int> _pieceToId;
    private readonly PieceTrie _trie;            // normal, user-defined and unused pieces (unused never match)
    private readonly int[] _byteToId;            // [256] <0xAB> pieces when byte_fallback is on, else -1
    private readonly float _maxScore;            // over normal pieces
    private readonly float _unknownScore;        // min normal score - 10
    private readonly bool _hasUserDefined;
    private readonly bool _segmentAtSpaces;      // '▁' only ever starts a piece: the search can go word by word
    private readonly string _unknownSurface;     // what <unk> decodes to: " ⁇ "
    private readonly bool _addDummyPrefix;
    private readonly bool _removeExtraWhitespaces;

    public UnigramModel(ModelProto proto)
    {
        if (proto.TrainerSpec.ModelType != 1)
            throw new NotSupportedException($"it is a {ModelTypeName(proto.TrainerSpec.ModelType)} SentencePiece model; only unigram models (model_type 1, as T5's) are supported");
        if (proto.TrainerSpec.TreatWhitespaceAsSuffix)
            throw new NotSupportedException("it is a treat_whitespace_as_suffix SentencePiece model ('▁' ends words instead of starting them); only models with '▁' at the start of words, as T5's, are supported");
        if (proto.Pieces.Count == 0) throw new InvalidDataException("the model has no pieces");

        int n = proto.Pieces.Count;
        _pieces = new string[n];
        _scores = new float[n];
        _types = new PieceType[n];
        _pieceToId = new Dictionary<string, int>(n, StringComparer.Ordinal);
        _byteToId = new int[256];
        Array.Fill(_byteToId, -1);
        UnkId = -1;

        // As sentencepiece: max_score_ starts at FLT_MIN (a tiny positive number), so with only negative normal scores a
        // user-defined piece scores length * FLT_MIN - 0.1, about -0.1.
        float minScore = float.MaxValue, maxScore = FltMin;
        long vocabularyBytes = 0;
        var trieEntries = new List<(byte[] Key, int PieceId, float Score)>(n);
        for (int id = 0; id < n; id++)
        {
            var (piece, score, type) = proto.Pieces[id];
            if (piece.Length == 0) throw new InvalidDataException($"piece {id} is empty");
            int pieceBytes = Encoding.UTF8.GetByteCount(piece);
            if (pieceBytes > MaxPieceBytes)
                throw new InvalidDataException($"piece {id} is {pieceBytes:N0} bytes long, more than the {MaxPieceBytes:N0} a vocabulary piece may have");
            vocabularyBytes += pieceBytes;
            if (vocabularyBytes > MaxVocabularyBytes)
                throw new InvalidDataException($"the pieces up to piece {id} add up to more than the {MaxVocabularyBytes:N0} bytes a vocabulary may have");
            if (!_pieceToId.TryAdd(piece, id)) throw new InvalidDataException($"piece '{piece}' appears twice (ids {_pieceToId[piece]} and {id})");
            _pieces[id] = piece;
            _scores[id] = score;
            _types[id] = type;
            switch (type)
            {
                case PieceType.Normal:
                    minScore = Math.Min(minScore, score);
                    maxScore = Math.Max(maxScore, score);
                    trieEntries.Add((Encoding.UTF8.GetBytes(piece), id, score));
                    break;
                case PieceType.UserDefined:
                    _hasUserDefined = true;
                    trieEntries.Add((Encoding.UTF8.GetBytes(piece), id, score));
                    break;
                case PieceType.Unused:
                    trieEntries.Add((Encoding.UTF8.GetBytes(piece), -1, 0)); // in the trie, never a match
                    break;
                case PieceType.Unknown:
                    if (UnkId >= 0) throw new InvalidDataException($"two unknown pieces ({UnkId} and {id})");
                    UnkId = id;
                    break;
                case PieceType.Byte:
                    if (piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
                        && byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte value))
                        _byteToId[value] = id;
                    else
                        throw new InvalidDataException($"byte piece '{piece}' is not of the form <0xAB>");
                    break;
            }
        }
        if (UnkId < 0) throw new InvalidDataException("the model has no unknown piece (<unk>)");

        ByteFallback = proto.TrainerSpec.ByteFallback;
        if (ByteFallback && Array.IndexOf(_byteToId, -1) >= 0)
            throw new InvalidDataException("byte_fallback is on but not all 256 <0xAB> pieces are present");

        _maxScore = maxScore;
        _unknownScore = (minScore == float.MaxValue ? 0 : minScore) - UnknownPenalty;
        _trie = PieceTrie.Build(trieEntries);
        _segmentAtSpaces = trieEntries.TrueForAll(e => e.Key.AsSpan(1).IndexOf(SpaceSymbol) < 0);
        _unknownSurface = proto.TrainerSpec.UnkSurface;
        _addDummyPrefix = proto.NormalizerSpec.AddDummyPrefix;
        _removeExtraWhitespaces = proto.NormalizerSpec.RemoveExtraWhitespaces;
        UserDefinedTrie = _hasUserDefined
            ? PieceTrie.Build(trieEntries.Where(e => e.PieceId >= 0 && _types[e.PieceId] == PieceType.UserDefined).ToList())
            : null;
    }

    /// <summary>sentencepiece's ModelType names.</summary>
    private static string ModelTypeName(int type) => type switch
    {
        2 => "BPE",
        3 => "word",
        4 => "char",
        _ => $"model_type {type}",
    };

    public int VocabSize => _pieces.Length;
    public int UnkId { get; }
    public bool ByteFallback { get; }

    /// <summary>Trie of user-defined pieces, which the normalizer must leave alone; null when there are none.</summary>
    public PieceTrie? UserDefinedTrie { get; }

    public string IdToPiece(int id) => _pieces[id];
    public PieceType TypeOf(int id) => _types[id];
    public float ScoreOf(int id) => _scores[id];
    public bool TryGetId(string piece, out int id) => _pieceToId.TryGetValue(piece, out id);

    // ------------------------------------------------------------------------------------------------
    // Encoding
    // ------------------------------------------------------------------------------------------------

    /// <summary>
    /// Segments <paramref name="normalized"/> (UTF-8, spaces already '▁') into <paramref name="tokens"/>.
    /// Runs of unknown characters become one &lt;unk&gt; token (or byte pieces with byte_fallback).
    /// </summary>
    public void Encode(ReadOnlySpan<byte> normalized, ref ArrayBuilder<BestPath> lattice, ref ArrayBuilder<RawToken> tokens, bool splitAtSpaces = false)
    {
        splitAtSpaces |= _segmentAtSpaces;
        tokens.Clear();
        tokens.EnsureCapacity(normalized.Length / 4 + 16); // about 4 bytes a token in English text
        float scoreSoFar = 0;
        int start = 0;
        while (start < normalized.Length)
        {
            // No piece has '▁' after its first byte, so every best path breaks before each '▁':
            // searching word by word gives the same result as one search over the whole text.
            int end = normalized.Length;
            if (splitAtSpaces)
            {
                int next = normalized[(start + 1)..].IndexOf(SpaceSymbol);
                if (next >= 0) end = start + 1 + next;
            }
            scoreSoFar = EncodeSegment(normalized, start, end, scoreSoFar, ref lattice, ref tokens);
            start = end;
        }
        if (ByteFallback) ExpandUnknownToBytes(normalized, ref tokens);
    }

    /// <summary>
    /// Viterbi over normalized[segStart..segEnd), starting from path score <paramref name="startScore"/>.
    /// Appends the best path's tokens and returns its total score.
    /// </summary>
    private float EncodeSegment(ReadOnlySpan<byte> normalized, int segStart, int segEnd, float startScore,
        ref ArrayBuilder<BestPath> lattice, ref ArrayBuilder<RawToken> tokens)
    {
        int size = segEnd - segStart;
        var text = normalized.Slice(segStart, size);
        // best[i]: the best path covering text[0..i). Positions are byte offsets; only character starts are used.
        var best = lattice.EnsureCapacity(size + 1).AsSpan(0, size + 1);
        best[0] = new BestPath { Score = startScore, StartsAt = -1, PieceId = -1 };
        for (int i = 1; i <= size; i++) best[i].StartsAt = -1;

        var nodes = _trie.Nodes;
        for (int startsAt = 0; startsAt < size;)
        {
            float scoreTillHere = best[startsAt].Score;
            int charLength = Math.Min(Utf8CharLength(text[startsAt]), size - startsAt);
            bool hasSingleCharPiece = false;

            // Every piece that starts here: walk the trie one byte at a time.
            int node = 0;
            for (int keyPos = startsAt; keyPos < size; keyPos++)
            {
                int child = nodes[node].Base + text[keyPos];
                if (nodes[child].Check != node) break;
                node = child;
                int id = nodes[node].PieceId;
                if (id < 0) continue;

                int length = keyPos + 1 - startsAt;
                // As in sentencepiece: the piece score is a double (its ternary mixes in a double), the sum is
                // compared in double against the stored float, then stored rounded to float.
                double score = _hasUserDefined && _types[id] == PieceType.UserDefined
                    ? length * _maxScore - 0.1
                    : nodes[node].Score;
                double candidate = score + scoreTillHere;
                ref var target = ref best[keyPos + 1];
                if (target.StartsAt == -1 || candidate > target.Score)
                {
                    target.Score = (float)candidate;
                    target.StartsAt = startsAt;
                    target.PieceId = id;
                }
                if (length == charLength) hasSingleCharPiece = true;
            }

            // A character no piece covers on its own becomes <unk> (float arithmetic throughout).
            if (!hasSingleCharPiece)
            {
                float candidate = _unknownScore + scoreTillHere;
                ref var target = ref best[startsAt + charLength];
                if (target.StartsAt == -1 || candidate > target.Score)
                {
                    target.Score = candidate;
                    target.StartsAt = startsAt;
                    target.PieceId = UnkId;
                }
            }
            startsAt += charLength;
        }

        // Backtrack from the end, then put the segment's tokens in order.
        int first = tokens.Count;
        for (int end = size; end > 0;)
        {
            ref var path = ref best[end];
            tokens.Add(new RawToken { Id = path.PieceId, NormStart = segStart + path.StartsAt, NormEnd = segStart + end });
            end = path.StartsAt;
        }
        tokens.Span[first..].Reverse();

        if (!ByteFallback) MergeUnknownRuns(ref tokens, first);
        return best[size].Score;
    }

    /// <summary>Adjacent &lt;unk&gt; tokens become one, as sentencepiece does after the search.</summary>
    private void MergeUnknownRuns(ref ArrayBuilder<RawToken> tokens, int from)
    {
        var span = tokens.Span;
        int write = from;
        for (int read = from; read < span.Length; read++)
        {
            if (span[read].Id == UnkId && write > 0 && span[write - 1].Id == UnkId)
            {
                span[write - 1].NormEnd = span[read].NormEnd;
                continue;
            }
            span[write++] = span[read];
        }
        tokens.Truncate(write);
    }

    /// <summary>With byte_fallback, each &lt;unk&gt; becomes one &lt;0xAB&gt; piece per UTF-8 byte.</summary>
    private void ExpandUnknownToBytes(ReadOnlySpan<byte> normalized, ref ArrayBuilder<RawToken> tokens)
    {
        var original = tokens.Span.ToArray();
        tokens.Clear();
        foreach (var token in original)
        {
            if (token.Id != UnkId)
            {
                tokens.Add(token);
                continue;
            }
            for (int i = token.NormStart; i < token.NormEnd; i++)
            {
                bool last = i == token.NormEnd - 1;
                // Only the last byte piece carries the character's surface; the others are empty.
                tokens.Add(new RawToken { Id = _byteToId[normalized[i]], NormStart = token.NormStart, NormEnd = last ? token.NormEnd : token.NormStart });
            }
        }
    }

    /// <summary>Bytes in the UTF-8 character that starts with <paramref name="lead"/> (1 for a stray byte).</summary>
    private static int Utf8CharLength(byte lead) => lead < 0xC0 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;

    // ------------------------------------------------------------------------------------------------
    // Decoding
    // ------------------------------------------------------------------------------------------------

    /// <summary>
    /// sentencepiece's Decode: pieces joined, '▁' turned into spaces, the leading space of the text dropped,
    /// control pieces invisible, &lt;unk&gt; shown as " ⁇ ", byte pieces reassembled into UTF-8.
    /// </summary>
    public void Decode(ReadOnlySpan<int> ids, StringBuilder output)
    {
        int textStart = output.Length;
        bool isBosWhitespace = true;  // a leading '▁' is still expected
        bool bosWhitespaceSeen = false;
        Span<byte> bytes = stackalloc byte[64];
        int byteCount = 0;
        byte[]? spill = null;

        for (int i = 0; i < ids.Length; i++)
        {
            int id = ids[i];
            if (_types[id] == PieceType.Byte)
            {
                byte value = (byte)Array.IndexOf(_byteToId, id);
                if (byteCount == bytes.Length)
                {
                    spill = new byte[bytes.Length * 2];
                    bytes.CopyTo(spill);
                    bytes = spill;
                }
                bytes[byteCount++] = value;
                continue;
            }
            AppendBytes(bytes[..byteCount], output);
            byteCount = 0;

            if (bosWhitespaceSeen || output.Length > textStart) isBosWhitespace = false;
            bosWhitespaceSeen = AppendPiece(id, isBosWhitespace, output);
        }
        AppendBytes(bytes[..byteCount], output);
    }

    /// <summary>Appends one decoded piece; returns whether it consumed a leading '▁'.</summary>
    private bool AppendPiece(int id, bool isBosWhitespace, StringBuilder output)
    {
        switch (_types[id])
        {
            case PieceType.Control:
                return false; // invisible
            case PieceType.Unknown:
                output.Append(_unknownSurface);
                return false;
        }

        ReadOnlySpan<char> piece = _pieces[id];
        bool consumedBosWhitespace = false;
        if (isBosWhitespace && (_addDummyPrefix || _removeExtraWhitespaces) && piece.StartsWith('\u2581'))
        {
            piece = piece[1..];
            // When extra whitespace is removed, every leading '▁' goes, not just the first.
            consumedBosWhitespace = !_removeExtraWhitespaces;
        }
        foreach (char c in piece) output.Append(c == '\u2581' ? ' ' : c);
        return consumedBosWhitespace;
    }

    /// <summary>Byte pieces decode one UTF-8 character at a time; each malformed byte becomes U+FFFD.</summary>
    private static void AppendBytes(ReadOnlySpan<byte> bytes, StringBuilder output)
    {
        while (!bytes.IsEmpty)
        {
            if (Rune.DecodeFromUtf8(bytes, out Rune rune, out int consumed) == System.Buffers.OperationStatus.Done)
            {
                output.Append(rune.ToString());
                bytes = bytes[consumed..];
            }
            else
            {
                output.Append('\uFFFD');
                bytes = bytes[1..];
            }
        }
    }
}
