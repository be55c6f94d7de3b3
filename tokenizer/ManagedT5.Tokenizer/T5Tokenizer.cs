// T5Tokenizer: the public facade. Loads spiece.model, tokenizer.json or ByT5's byte vocabulary, then encodes the way
// HuggingFace's from_pretrained tokenizers do (special tokens in the text, </s>, batches with padding), and decodes.

using System.Text;
using ManagedT5.IO;

namespace ManagedT5.Tokenizer;

/// <summary>Which of HuggingFace's two T5 tokenizers <see cref="T5Tokenizer.Encode(string, bool, bool)"/> reproduces.</summary>
public enum TokenizerCompat
{
    /// <summary>The slow <c>T5Tokenizer</c> (spiece.model, the SentencePiece the models were trained with). The default.</summary>
    Slow,

    /// <summary>The fast tokenizer (tokenizer.json, what <c>AutoTokenizer</c> returns by default). It differs in two known
    /// ways (HF tokenizers issue 1250): trailing whitespace, and whitespace just before a special token, keep a lone
    /// '▁' (id 3): "   space   " is [628, 3, 1] fast, [628, 1] slow.</summary>
    Fast,
}

/// <summary>
/// The tokenizer of a T5-family model: T5 / Flan-T5 / mT5's SentencePiece unigram model (T5: 32,000 pieces plus 100
/// sentinels <c>&lt;extra_id_0&gt;</c> = 32099 … <c>&lt;extra_id_99&gt;</c> = 32000), or ByT5's UTF-8 bytes.
/// </summary>
/// <remarks>
/// <para><see cref="EncodeRaw(string)"/> matches Google sentencepiece's <c>encode</c> id for id;
/// <see cref="Encode(string, bool, bool)"/> matches HuggingFace's tokenizer as <c>from_pretrained</c> builds it: every
/// special token written in the text (<c>&lt;pad&gt;</c>, <c>&lt;/s&gt;</c>, <c>&lt;unk&gt;</c>, <c>&lt;extra_id_N&gt;</c>)
/// becomes its id, the text on each side is encoded on its own, and &lt;/s&gt; is appended. Text from users that must not
/// forge an end of sequence is encoded with <c>parseSpecialTokens: false</c>: then their spellings are plain text.</para>
/// <para>An instance is immutable and safe to use from several threads at once.</para>
/// </remarks>
public sealed class T5Tokenizer
{
    /// <summary>Number of sentinel tokens T5 adds after the SentencePiece vocabulary.</summary>
    public const int SentinelCount = 100;

    private const string SentinelPrefix = "<extra_id_";

    private readonly Normalizer? _normalizer;     // null for ByT5: its text is its UTF-8, as it is
    private readonly ITokenModel _model;
    private readonly SpecialTokens _specialTokens;

    private T5Tokenizer(ModelProto proto, string sourcePath)
    {
        var model = new UnigramModel(proto);
        _model = model;
        _normalizer = new Normalizer(proto.NormalizerSpec, model.UserDefinedTrie);
        SourcePath = sourcePath;
        UnkId = model.UnkId;
        EosId = ControlId(proto.TrainerSpec.EosId, "</s>");
        PadId = ControlId(proto.TrainerSpec.PadId, "<pad>");
        // HuggingFace splits the text at every special token: the control pieces and <unk>.
        _specialTokens = new SpecialTokens(Enumerable.Range(0, model.VocabSize)
            .Where(id => model.TypeOf(id) is PieceType.Control or PieceType.Unknown)
            .Select(id => (model.IdToPiece(id), id, false)));
    }

    private T5Tokenizer(ByteLevelModel model, string sourcePath)
    {
        _model = model;
        SourcePath = sourcePath;
        IsByteLevel = true;
        PadId = 0;
        EosId = 1;
        UnkId = 2;
        // ByT5Tokenizer (transformers 4.19, as the reference) splits out the sentinels only, stripping the whitespace on
        // both sides of each; "</s>", "<pad>" and "<unk>" in the text stay bytes.
        _specialTokens = new SpecialTokens(Enumerable.Range(0, model.ExtraIds)
            .Select(n => (SentinelPrefix + n + ">", ByteLevelModel.SentinelId(n), true)));
    }

    private T5Tokenizer(T5Tokenizer other, TokenizerCompat compat)
    {
        _normalizer = other._normalizer;
        _model = other._model;
        _specialTokens = other._specialTokens;
        SourcePath = other.SourcePath;
        IsByteLevel = other.IsByteLevel;
        PadId = other.PadId;
        EosId = other.EosId;
        UnkId = other.UnkId;
        Compat = compat;
    }

    /// <summary>Which HuggingFace tokenizer <see cref="Encode(string, bool, bool)"/> reproduces (default
    /// <see cref="TokenizerCompat.Slow"/>).</summary>
    public TokenizerCompat Compat { get; }

    /// <summary>This tokenizer reproducing HuggingFace's slow or fast tokenizer; the vocabulary is shared.</summary>
    public T5Tokenizer WithCompat(TokenizerCompat compat)
    {
        if (!Enum.IsDefined(compat)) throw new ArgumentOutOfRangeException(nameof(compat), compat, "tokenizer_compat: expected Slow or Fast.");
        return compat == Compat ? this : new T5Tokenizer(this, compat);
    }

    /// <summary>True for ByT5's byte-level tokenizer (ids are UTF-8 bytes + 3).</summary>
    public bool IsByteLevel { get; }

    /// <summary>The file this tokenizer was loaded from.</summary>
    public string SourcePath { get; }

    /// <summary>Number of ids, sentinels included (32100 for T5).</summary>
    public int VocabSize => _model.VocabSize;

    /// <summary>Id of &lt;pad&gt; (0 for T5): padding, and the decoder's start token; -1 for a SentencePiece model
    /// without one (pad_id -1), which the T5 model cannot run with.</summary>
    public int PadId { get; }

    /// <summary>Id of &lt;/s&gt; (1 for T5); -1 for a SentencePiece model without one.</summary>
    public int EosId { get; }

    /// <summary>Id of &lt;unk&gt; (2 for T5).</summary>
    public int UnkId { get; }

    // ------------------------------------------------------------------------------------------------
    // Loading
    // ------------------------------------------------------------------------------------------------

    /// <summary>A tokenizer file's bytes through the shared bounded reader; any problem is one
    /// <see cref="TokenizerException"/> that names the file (<paramref name="what"/>) and ends with <paramref name="advice"/>.</summary>
    private static byte[] ReadFile(string path, long maxBytes, string what, string advice)
    {
        byte[] data;
        string? problem;
        try
        {
            data = InputFile.ReadAllBytes(path, maxBytes, out problem);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerException($"{what} '{path}' could not be read: {e.Message}", path, e);
        }
        if (problem is not null) throw new TokenizerException($"{what} {problem} {advice}", path);
        return data;
    }

    /// <summary>Loads a SentencePiece model (spiece.model) or a HuggingFace tokenizer.json, told apart by content.</summary>
    /// <remarks>Symbolic links are followed (a HuggingFace cache snapshot links into its blobs folder); anything but a
    /// regular file of at most 256 MB (a FIFO, a device, a folder) is refused before it is opened.</remarks>
    /// <exception cref="TokenizerException">The file is missing, empty, not a regular file, too large, truncated or not a
    /// unigram SentencePiece tokenizer.</exception>
    public static T5Tokenizer FromFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        byte[] data = ReadFile(path, InputFile.MaxTokenizerBytes, "Tokenizer file", "Pass the path of a spiece.model or tokenizer.json.");

        bool isJson = LooksLikeJson(data) || path.EndsWith(".json", StringComparison.OrdinalIgnoreCase);
        string kind = isJson ? "tokenizer.json" : "SentencePiece model";
        try
        {
            ModelProto proto = isJson ? TokenizerJsonLoader.Load(data) : LoadSentencePiece(data);
            return new T5Tokenizer(proto, path);
        }
        catch (NotSupportedException e)
        {
            throw new TokenizerException($"Tokenizer file '{path}': {e.Message}.", path, e);
        }
        catch (Exception e) when (e is InvalidDataException or System.Text.Json.JsonException or FormatException
                                      or InvalidOperationException or KeyNotFoundException)
        {
            throw new TokenizerException(
                $"Tokenizer file '{path}' is not a valid {kind} ({e.Message}). It may be truncated or a different format; download it again.",
                path, e);
        }
    }

    /// <summary>The tokenizer_class values a model folder may name (config.json or tokenizer_config.json).</summary>
    private static readonly string[] s_knownClasses =
        ["T5Tokenizer", "T5TokenizerFast", "MT5Tokenizer", "MT5TokenizerFast", "PreTrainedTokenizerFast", "ByT5Tokenizer"];

    /// <summary>
    /// Loads the tokenizer of a model directory. ByT5's byte-level tokenizer when tokenizer_config.json or config.json
    /// says <c>"tokenizer_class": "ByT5Tokenizer"</c> (google/byt5-* have no spiece.model); otherwise spiece.model if
    /// present, else tokenizer.json.
    /// </summary>
    /// <exception cref="TokenizerException">No tokenizer in <paramref name="modelDir"/>, an unknown tokenizer_class, a
    /// tokenizer_config.json that is not valid JSON, or an invalid tokenizer file; the message names the file.</exception>
    public static T5Tokenizer FromDirectory(string modelDir)
    {
        ArgumentNullException.ThrowIfNull(modelDir);
        string tokenizerConfig = Path.Combine(modelDir, "tokenizer_config.json");
        var (tokenizerClass, extraIds) = ReadTokenizerConfig(tokenizerConfig);
        string classSource = tokenizerConfig;
        if (tokenizerClass is null)
        {
            classSource = Path.Combine(modelDir, "config.json");
            tokenizerClass = ReadConfigTokenizerClass(classSource);
        }
        if (tokenizerClass is not null && Array.IndexOf(s_knownClasses, tokenizerClass) < 0)
            throw new TokenizerException(
                $"'{classSource}' names tokenizer_class {InputFile.Escaped(tokenizerClass)}, which ManagedT5 does not know: expected " +
                "T5Tokenizer, T5TokenizerFast, MT5Tokenizer, MT5TokenizerFast (with spiece.model or tokenizer.json) or ByT5Tokenizer.",
                classSource);
        if (tokenizerClass == "ByT5Tokenizer")
            return new T5Tokenizer(new ByteLevelModel(extraIds ?? ByteLevelModel.DefaultExtraIds), classSource);

        foreach (string name in new[] { "spiece.model", "tokenizer.json" })
        {
            // A link counts as present even when broken, so the error names it instead of passing it by.
            string path = Path.Combine(modelDir, name);
            if (File.Exists(path) || IsLink(path)) return FromFile(path);
        }
        throw new TokenizerException(
            $"No tokenizer in '{modelDir}': expected spiece.model or tokenizer.json (T5, Flan-T5, mT5), or \"tokenizer_class\": " +
            "\"ByT5Tokenizer\" in config.json (ByT5). Download the model's tokenizer files into that directory.",
            modelDir);
    }

    /// <summary>tokenizer_class and extra_ids of tokenizer_config.json; (null, null) when there is no such file.</summary>
    private static (string? TokenizerClass, int? ExtraIds) ReadTokenizerConfig(string path)
    {
        if (!File.Exists(path) && !IsLink(path)) return (null, null);
        byte[] data = ReadFile(path, InputFile.MaxJsonBytes, "Tokenizer config", "Fix or delete it, or download it again.");
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(data);
            var root = doc.RootElement;
            if (root.ValueKind != System.Text.Json.JsonValueKind.Object)
                throw new InvalidDataException("its top level is not an object");
            string? tokenizerClass = null;
            if (root.TryGetProperty("tokenizer_class", out var c) && c.ValueKind != System.Text.Json.JsonValueKind.Null)
                tokenizerClass = c.ValueKind == System.Text.Json.JsonValueKind.String ? c.GetString()
                    : throw new InvalidDataException("tokenizer_class is not a string");
            int? extraIds = null;
            if (root.TryGetProperty("extra_ids", out var e) && e.ValueKind != System.Text.Json.JsonValueKind.Null)
                extraIds = e.ValueKind == System.Text.Json.JsonValueKind.Number && e.TryGetInt32(out int n) && n is >= 0 and <= 10_000 ? n
                    : throw new InvalidDataException("extra_ids is not a whole number from 0 to 10000");
            return (tokenizerClass, extraIds);
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidDataException or InvalidOperationException)
        {
            throw new TokenizerException(
                $"Tokenizer config '{path}' is not a valid tokenizer_config.json ({e.Message}). Fix or delete it, or download it again.", path, e);
        }
    }

    /// <summary>config.json's tokenizer_class, or null (also when config.json is missing or unreadable: loading the model
    /// reports that file's problems).</summary>
    private static string? ReadConfigTokenizerClass(string path)
    {
        try
        {
            byte[] data = InputFile.ReadAllBytes(path, InputFile.MaxJsonBytes, out string? problem);
            if (problem is not null) return null;
            using var doc = System.Text.Json.JsonDocument.Parse(data);
            return doc.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object
                   && doc.RootElement.TryGetProperty("tokenizer_class", out var c) && c.ValueKind == System.Text.Json.JsonValueKind.String
                ? c.GetString()
                : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException or InvalidOperationException)
        {
            return null;
        }
    }

    private static bool IsLink(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget is not null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return false;
        }
    }

    private static ModelProto LoadSentencePiece(byte[] data)
    {
        var proto = ModelProto.Parse(data);
        // A file cut at a field boundary still parses: the specs sentencepiece always writes last must be there.
        if (proto.Pieces.Count == 0) throw new InvalidDataException("it has no vocabulary pieces");
        if (!proto.HasTrainerSpec || !proto.HasNormalizerSpec)
            throw new InvalidDataException($"it ends after {proto.Pieces.Count} pieces without its trainer_spec and normalizer_spec");
        // spiece.model holds 32,000 pieces; T5 adds <extra_id_99> .. <extra_id_0> as ids 32000 .. 32099. Only to a model
        // laid out as T5's (a <pad> piece): a general SentencePiece model keeps exactly its own vocabulary.
        if (proto.TrainerSpec.PadId >= 0 && !proto.Pieces.Exists(p => p.Piece.StartsWith(SentinelPrefix, StringComparison.Ordinal)))
        {
            for (int n = SentinelCount - 1; n >= 0; n--)
                proto.Pieces.Add(new SentencePiece(SentinelPrefix + n + ">", 0, PieceType.Control));
        }
        return proto;
    }

    private static bool LooksLikeJson(ReadOnlySpan<byte> data)
    {
        if (data.StartsWith("\uFEFF"u8)) data = data[3..];
        data = data.TrimStart(" \t\r\n"u8);
        return !data.IsEmpty && data[0] == (byte)'{';
    }

    private int ControlId(int specId, string piece)
    {
        if (specId >= 0 && specId < _model.VocabSize && _model.TypeOf(specId) == PieceType.Control) return specId;
        return _model.TryGetId(piece, out int id) ? id : -1;
    }

    // ------------------------------------------------------------------------------------------------
    // Vocabulary
    // ------------------------------------------------------------------------------------------------

    /// <summary>The piece of <paramref name="id"/>, e.g. 8774 → "▁Hello", 32099 → "&lt;extra_id_0&gt;".</summary>
    public string IdToPiece(int id)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(id);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(id, VocabSize);
        return _model.IdToPiece(id);
    }

    /// <summary>The id of <paramref name="piece"/>, or <see cref="UnkId"/> when it is not in the vocabulary (as sentencepiece does).</summary>
    public int PieceToId(string piece) => TryGetPieceId(piece, out int id) ? id : UnkId;

    /// <summary>The id of <paramref name="piece"/>, if it is in the vocabulary.</summary>
    public bool TryGetPieceId(string piece, out int id) => _model.TryGetId(piece, out id);

    /// <summary>The id of sentinel <c>&lt;extra_id_n&gt;</c>: 32099 - n for T5, 259 + n for ByT5.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The vocabulary has no such sentinel.</exception>
    public int SentinelId(int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        return _model.TryGetId(SentinelPrefix + n + ">", out int id) ? id
            : throw new ArgumentOutOfRangeException(nameof(n), n, $"<extra_id_{n}> is not in the vocabulary.");
    }

    /// <summary>True for ids that are not text: &lt;pad&gt;, &lt;/s&gt;, &lt;unk&gt; and the sentinels.</summary>
    public bool IsSpecial(int id) =>
        (uint)id < (uint)VocabSize && _model.TypeOf(id) is PieceType.Control or PieceType.Unknown;

    // ------------------------------------------------------------------------------------------------
    // Encoding
    // ------------------------------------------------------------------------------------------------

    /// <summary>
    /// Encodes <paramref name="text"/> for T5: "translate English to German: Hi" → [13959, 1566, 12, 2968, 10, 2018, 1].
    /// </summary>
    /// <param name="text">Any string; lone surrogates and control characters are normalized, never rejected.</param>
    /// <param name="addEos">Append &lt;/s&gt; (HuggingFace's add_special_tokens).</param>
    /// <param name="parseSpecialTokens">Turn special tokens written in the text ("&lt;/s&gt;", "&lt;pad&gt;", "&lt;unk&gt;",
    /// "&lt;extra_id_N&gt;") into their ids, each stretch of text between them encoded on its own, as HuggingFace's
    /// from_pretrained tokenizers do. When false their spellings are plain text (sentencepiece's ids): use that for
    /// untrusted text, so that a user who types "&lt;/s&gt;" cannot end the prompt.</param>
    /// <exception cref="InvalidOperationException"><paramref name="addEos"/> for a model without a &lt;/s&gt; piece.</exception>
    public int[] Encode(string text, bool addEos = true, bool parseSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ws = Workspace.Rent();
        try
        {
            EncodeCore(text, addEos, parseSpecialTokens, Compat == TokenizerCompat.Fast, trackOffsets: false, ws);
            return ws.Ids.Span.ToArray();
        }
        finally
        {
            ws.Return();
        }
    }

    /// <summary>
    /// Allocation-free <see cref="Encode(string, bool, bool)"/> for hot loops: writes ids into
    /// <paramref name="destination"/> and returns how many the full encoding has. When that is more than
    /// <paramref name="destination"/> holds, the first <c>destination.Length</c> ids are written.
    /// </summary>
    public int Encode(ReadOnlySpan<char> text, Span<int> destination, bool addEos = true, bool parseSpecialTokens = true) =>
        EncodeInto(text, destination, addEos, parseSpecialTokens, Compat == TokenizerCompat.Fast);

    private int EncodeInto(ReadOnlySpan<char> text, Span<int> destination, bool addEos, bool parseSpecialTokens, bool fast)
    {
        var ws = Workspace.Rent();
        try
        {
            EncodeCore(text, addEos, parseSpecialTokens, fast, trackOffsets: false, ws);
            return CopyOut(ws.Ids.Span, destination);
        }
        finally
        {
            ws.Return();
        }
    }

    /// <summary>Encodes like <see cref="Encode(string, bool, bool)"/> and gives each id's span in <paramref name="text"/>.</summary>
    public TokenizedText EncodeWithOffsets(string text, bool addEos = true, bool parseSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ws = Workspace.Rent();
        try
        {
            EncodeCore(text, addEos, parseSpecialTokens, Compat == TokenizerCompat.Fast, trackOffsets: true, ws);
            return new TokenizedText(ws.Ids.Span.ToArray(), ws.Spans.Span.ToArray());
        }
        finally
        {
            ws.Return();
        }
    }

    /// <summary>Raw SentencePiece ids, exactly as sentencepiece's <c>encode</c>: no &lt;/s&gt;, special-token spellings are
    /// text, whatever <see cref="Compat"/> is. For ByT5: the UTF-8 bytes + 3.</summary>
    public int[] EncodeRaw(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ws = Workspace.Rent();
        try
        {
            EncodeCore(text, addEos: false, parseSpecialTokens: false, fast: false, trackOffsets: false, ws);
            return ws.Ids.Span.ToArray();
        }
        finally
        {
            ws.Return();
        }
    }

    /// <summary>Allocation-free <see cref="EncodeRaw(string)"/>; same contract as <see cref="Encode(ReadOnlySpan{char}, Span{int}, bool, bool)"/>.</summary>
    public int EncodeRaw(ReadOnlySpan<char> text, Span<int> destination) =>
        EncodeInto(text, destination, addEos: false, parseSpecialTokens: false, fast: false);

    /// <summary>Raw SentencePiece pieces, e.g. "Hello world" → ["▁Hello", "▁world"]; an unknown run is its own text.</summary>
    public IReadOnlyList<string> EncodeToPieces(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ws = Workspace.Rent();
        try
        {
            EncodeRawSegment(text, fast: false, trackOffsets: false, ws);
            var pieces = new string[ws.Tokens.Count];
            for (int i = 0; i < pieces.Length; i++)
            {
                var token = ws.Tokens[i];
                pieces[i] = token.Id == UnkId
                    ? Encoding.UTF8.GetString(ws.Normalized.Span[token.NormStart..token.NormEnd])
                    : _model.IdToPiece(token.Id);
            }
            return pieces;
        }
        finally
        {
            ws.Return();
        }
    }

    /// <summary>
    /// Encodes several texts (with &lt;/s&gt;) into one right-padded batch for the encoder.
    /// </summary>
    /// <param name="texts">The texts, one row each.</param>
    /// <param name="maxLength">Most ids a row may have, &lt;/s&gt; included; null for no limit.</param>
    /// <param name="truncate">Cut longer rows to <paramref name="maxLength"/>, keeping &lt;/s&gt; last (HuggingFace's
    /// truncation=True). When false a longer row is an error.</param>
    /// <param name="padToMaxLength">Pad every row to <paramref name="maxLength"/> instead of to the longest row.</param>
    /// <exception cref="ArgumentException">A row is longer than <paramref name="maxLength"/> and <paramref name="truncate"/> is false.</exception>
    public EncodedBatch EncodeBatch(IReadOnlyList<string> texts, int? maxLength = null, bool truncate = true, bool padToMaxLength = false)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (maxLength is < 1) throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, "maxLength must be at least 1.");
        if (padToMaxLength && maxLength is null) throw new ArgumentException("padToMaxLength needs a maxLength.", nameof(padToMaxLength));

        var rows = new int[texts.Count][];
        for (int i = 0; i < rows.Length; i++)
        {
            int[] ids = Encode(texts[i]);
            if (maxLength is int max && ids.Length > max)
            {
                if (!truncate)
                    throw new ArgumentException($"Text {i} has {ids.Length} tokens, more than maxLength {max}. Shorten it or pass truncate: true.", nameof(texts));
                ids = [.. ids.AsSpan(0, max - 1), EosId];
            }
            rows[i] = ids;
        }

        int sequenceLength = padToMaxLength ? maxLength!.Value : rows.Length == 0 ? 0 : rows.Max(r => r.Length);
        var inputIds = new int[rows.Length * sequenceLength];
        var mask = new int[rows.Length * sequenceLength];
        var lengths = new int[rows.Length];
        if (PadId != 0) Array.Fill(inputIds, PadId);
        for (int i = 0; i < rows.Length; i++)
        {
            rows[i].CopyTo(inputIds.AsSpan(i * sequenceLength));
            mask.AsSpan(i * sequenceLength, rows[i].Length).Fill(1);
            lengths[i] = rows[i].Length;
        }
        return new EncodedBatch(rows.Length, sequenceLength, inputIds, mask, lengths);
    }

    /// <summary>Fills ws.Ids (and ws.Spans) with the T5 encoding of <paramref name="text"/>.</summary>
    private void EncodeCore(ReadOnlySpan<char> text, bool addEos, bool parseSpecialTokens, bool fast, bool trackOffsets, Workspace ws)
    {
        if (addEos && EosId < 0)
            throw new InvalidOperationException($"The tokenizer '{SourcePath}' has no </s> piece to append; encode with addEos: false.");
        ws.Ids.Clear();
        ws.Spans.Clear();
        int segmentStart = 0;
        if (parseSpecialTokens)
        {
            // HuggingFace splits the text at each special token and encodes the pieces in between separately.
            while (_specialTokens.TryFind(text, segmentStart, out int at, out int length, out int id, out bool strip))
            {
                int segmentEnd = at;
                if (strip) while (segmentEnd > segmentStart && IsPythonSpace(text[segmentEnd - 1])) segmentEnd--;
                AppendRawSegment(text, segmentStart, segmentEnd, fast, trackOffsets, ws);
                ws.Ids.Add(id);
                if (trackOffsets) ws.Spans.Add(new TokenSpan(at, length));
                segmentStart = at + length;
                if (strip) while (segmentStart < text.Length && IsPythonSpace(text[segmentStart])) segmentStart++;
            }
        }
        AppendRawSegment(text, segmentStart, text.Length, fast, trackOffsets, ws);
        if (addEos)
        {
            ws.Ids.Add(EosId);
            if (trackOffsets) ws.Spans.Add(new TokenSpan(text.Length, 0));
        }
    }

    /// <summary>Appends the raw ids (and spans) of text[start..end).</summary>
    private void AppendRawSegment(ReadOnlySpan<char> text, int start, int end, bool fast, bool trackOffsets, Workspace ws)
    {
        if (start == end) return;
        var segment = text[start..end];
        EncodeRawSegment(segment, fast, trackOffsets, ws);
        var tokens = ws.Tokens.Span;
        ws.Ids.EnsureCapacity(ws.Ids.Count + tokens.Length + 1);
        foreach (var token in tokens) ws.Ids.Add(token.Id);
        if (!trackOffsets) return;

        // normalized byte -> original UTF-8 byte -> original UTF-16 char.
        var byteToChar = BuildByteToChar(segment, ws);
        var normToOrig = ws.NormToOrig.Span;
        foreach (var token in tokens)
        {
            int begin = byteToChar[normToOrig[token.NormStart]];
            int stop = byteToChar[normToOrig[token.NormEnd]];
            ws.Spans.Add(new TokenSpan(start + begin, Math.Max(0, stop - begin)));
        }
    }

    /// <summary>Normalizes and segments <paramref name="text"/> into ws.Tokens (raw SentencePiece, or ByT5's bytes).</summary>
    private void EncodeRawSegment(ReadOnlySpan<char> text, bool fast, bool trackOffsets, Workspace ws)
    {
        // Lone surrogates become U+FFFD here, as Encoding.UTF8 replaces them.
        byte[] utf8 = ws.Utf8.EnsureCapacity(text.Length < 4096 ? Encoding.UTF8.GetMaxByteCount(text.Length) : Encoding.UTF8.GetByteCount(text));
        int byteCount = Encoding.UTF8.GetBytes(text, utf8);
        if (_normalizer is not null)
        {
            _normalizer.Normalize(utf8.AsSpan(0, byteCount), ref ws.Normalized, ref ws.NormToOrig, trackOffsets, fast);
            _model.Encode(ws.Normalized.Span, ref ws.Lattice, ref ws.Tokens, splitAtSpaces: fast);
            return;
        }
        // ByT5: the bytes are the tokens; byte i of the text is byte i of the "normalized" text.
        _model.Encode(utf8.AsSpan(0, byteCount), ref ws.Lattice, ref ws.Tokens, splitAtSpaces: false);
        if (trackOffsets)
        {
            var map = ws.NormToOrig.EnsureCapacity(byteCount + 1);
            for (int i = 0; i <= byteCount; i++) map[i] = i;
            ws.NormToOrig.SetCount(byteCount + 1);
        }
    }

    /// <summary>For each UTF-8 byte offset of <paramref name="text"/>, the UTF-16 index of its character.</summary>
    private static ReadOnlySpan<int> BuildByteToChar(ReadOnlySpan<char> text, Workspace ws)
    {
        int[] map = ws.ByteToChar.EnsureCapacity(Encoding.UTF8.GetMaxByteCount(text.Length) + 1);
        int bytePos = 0;
        for (int i = 0; i < text.Length;)
        {
            char c = text[i];
            int chars = 1, bytes;
            if (c < 0x80) bytes = 1;
            else if (c < 0x800) bytes = 2;
            else if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { chars = 2; bytes = 4; }
            else bytes = 3; // BMP character, or a lone surrogate written as U+FFFD
            map.AsSpan(bytePos, bytes).Fill(i);
            bytePos += bytes;
            i += chars;
        }
        map[bytePos] = text.Length;
        return map.AsSpan(0, bytePos + 1);
    }

    private static int CopyOut(ReadOnlySpan<int> ids, Span<int> destination)
    {
        ids[..Math.Min(ids.Length, destination.Length)].CopyTo(destination);
        return ids.Length;
    }

    // ------------------------------------------------------------------------------------------------
    // Decoding
    // ------------------------------------------------------------------------------------------------

    /// <summary>
    /// Decodes ids the way HuggingFace's T5Tokenizer does: [8774, 296, 1] → "Hello world".
    /// </summary>
    /// <param name="ids">Token ids; ids outside the vocabulary (Flan-T5's logits have 32128) are ignored.</param>
    /// <param name="skipSpecialTokens">Drop &lt;pad&gt;, &lt;/s&gt;, &lt;unk&gt; and sentinels. When false they appear
    /// as their text, followed by a space ("Hello&lt;unk&gt; world&lt;/s&gt;").</param>
    /// <remarks>Spaces before . , ! ? n't 's 'm 've 're are removed (clean_up_tokenization_spaces), and the
    /// result is trimmed. ByT5 (as its ByT5Tokenizer): not trimmed, special tokens written with no space around them,
    /// and bytes that do not make a whole UTF-8 character dropped, so a character cut off at the end of a streamed
    /// prefix is left out until its last byte arrives.</remarks>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = true)
    {
        var output = new StringBuilder();
        if (_model is ByteLevelModel bytes)
        {
            // ByT5Tokenizer: no stripping; special tokens are their spelling with no space around; invalid UTF-8 is dropped.
            int[] known = new int[ids.Length];
            int count = 0;
            foreach (int id in ids)
            {
                if ((uint)id < (uint)VocabSize) known[count++] = id;
            }
            bytes.Decode(known.AsSpan(0, count), output, skipSpecialTokens);
            return CleanUpTokenizationSpaces(output.ToString());
        }
        int chunkStart = 0, chunkLength = 0;
        int[] chunk = new int[ids.Length]; // non-special ids, stretch after stretch
        for (int i = 0; i < ids.Length; i++)
        {
            int id = ids[i];
            if ((uint)id >= (uint)VocabSize) continue;
            if (!IsSpecial(id))
            {
                chunk[chunkStart + chunkLength++] = id;
                continue;
            }
            if (skipSpecialTokens) continue;
            // Special tokens are not passed to SentencePiece: each text stretch between them is decoded alone.
            _model.Decode(chunk.AsSpan(chunkStart, chunkLength), output);
            output.Append(_model.IdToPiece(id)).Append(' ');
            chunkStart += chunkLength;
            chunkLength = 0;
        }
        _model.Decode(chunk.AsSpan(chunkStart, chunkLength), output);
        return CleanUpTokenizationSpaces(PythonStrip(output.ToString()));
    }

    /// <summary>
    /// Decodes exactly as sentencepiece's <c>decode</c>: control ids invisible, &lt;unk&gt; shown as " ⁇ ".
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside the vocabulary.</exception>
    public string DecodeRaw(ReadOnlySpan<int> ids)
    {
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)VocabSize)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"Id {id} is outside the vocabulary (0..{VocabSize - 1}).");
        }
        var output = new StringBuilder();
        _model.Decode(ids, output);
        return output.ToString();
    }

    /// <summary>The normalized text the model segments, e.g. "  Ｈello  world" → "▁Hello▁world".</summary>
    internal string Normalize(string text) => _normalizer?.Normalize(text) ?? text;

    /// <summary>Python's str.strip(): trims the characters str.isspace() accepts.</summary>
    private static string PythonStrip(string s)
    {
        int start = 0, end = s.Length;
        while (start < end && IsPythonSpace(s[start])) start++;
        while (end > start && IsPythonSpace(s[end - 1])) end--;
        return s[start..end];
    }

    private static bool IsPythonSpace(char c) => char.IsWhiteSpace(c) || c is >= '\u001C' and <= '\u001F';

    /// <summary>HuggingFace's clean_up_tokenization: no space before punctuation and English contractions.</summary>
    private static string CleanUpTokenizationSpaces(string s) => s
        .Replace(" .", ".", StringComparison.Ordinal)
        .Replace(" ?", "?", StringComparison.Ordinal)
        .Replace(" !", "!", StringComparison.Ordinal)
        .Replace(" ,", ",", StringComparison.Ordinal)
        .Replace(" ' ", "'", StringComparison.Ordinal)
        .Replace(" n't", "n't", StringComparison.Ordinal)
        .Replace(" 'm", "'m", StringComparison.Ordinal)
        .Replace(" 's", "'s", StringComparison.Ordinal)
        .Replace(" 've", "'ve", StringComparison.Ordinal)
        .Replace(" 're", "'re", StringComparison.Ordinal);
}
