// TokenizerJsonLoader: reads a HuggingFace tokenizer.json made from a SentencePiece unigram model
// (Unigram vocab with scores, Precompiled charsmap, Metaspace, TemplateProcessing) back into a ModelProto.

using System.Text.Json;

namespace ManagedT5.Tokenizer;

/// <summary>
/// Converts tokenizer.json into the same <see cref="ModelProto"/> spiece.model gives, so both files run
/// through one normalizer and one model and produce identical ids. Piece types are not stored in
/// tokenizer.json: <c>unk_id</c> is the unknown piece, special added tokens are control pieces.
/// </summary>
internal static class TokenizerJsonLoader
{
    public static ModelProto Load(byte[] json)
    {
        using var doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true });
        RequireValidStrings(json);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"its top level is {Describe(root.ValueKind)}, not the object a tokenizer.json has");
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException("not a tokenizer.json: there is no \"model\" object");
        string? type = GetString(model, "type");
        if (type != "Unigram")
            throw new NotSupportedException($"it is a tokenizer.json with model type \"{type}\"; only \"Unigram\" (SentencePiece) tokenizers, as T5's, are supported");

        // Special added tokens (<pad>, </s>, <unk>, <extra_id_N>) become control pieces.
        var special = new HashSet<int>();
        var userDefined = new HashSet<int>();
        if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
        {
            foreach (var token in added.EnumerateArray())
            {
                int id = token.GetProperty("id").GetInt32();
                bool isSpecial = token.TryGetProperty("special", out var s) && s.ValueKind == JsonValueKind.True;
                (isSpecial ? special : userDefined).Add(id);
            }
        }

        int unkId = model.TryGetProperty("unk_id", out var unk) && unk.ValueKind == JsonValueKind.Number ? unk.GetInt32() : -1;
        bool byteFallback = model.TryGetProperty("byte_fallback", out var bf) && bf.ValueKind == JsonValueKind.True;

        var proto = new ModelProto();
        if (!model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException("the Unigram model has no \"vocab\" array");
        int index = 0;
        foreach (var entry in vocab.EnumerateArray())
        {
            if (entry.ValueKind != JsonValueKind.Array || entry.GetArrayLength() != 2)
                throw new InvalidDataException($"vocab entry {index} is not [piece, score]");
            string piece = entry[0].GetString() ?? throw new InvalidDataException($"vocab entry {index} has no piece");
            float score = (float)entry[1].GetDouble(); // written from a float, so this round-trips exactly
            PieceType pieceType =
                index == unkId ? PieceType.Unknown
                : special.Contains(index) ? PieceType.Control
                : userDefined.Contains(index) ? PieceType.UserDefined
                : byteFallback && IsBytePiece(piece) ? PieceType.Byte
                : PieceType.Normal;
            proto.Pieces.Add(new SentencePiece(piece, score, pieceType));
            index++;
        }

        proto.TrainerSpec = new TrainerSpec
        {
            UnkId = unkId,
            BosId = -1,
            EosId = FindEos(root, proto),
            PadId = proto.Pieces.FindIndex(p => p.Piece == "<pad>" && p.Type == PieceType.Control),
            ByteFallback = byteFallback,
        };
        proto.NormalizerSpec = ReadNormalizer(root);
        return proto;
    }

    /// <summary>The token TemplateProcessing appends to a single sequence (T5: "&lt;/s&gt;").</summary>
    private static int FindEos(JsonElement root, ModelProto proto)
    {
        if (root.TryGetProperty("post_processor", out var post) && post.ValueKind == JsonValueKind.Object
            && GetString(post, "type") == "TemplateProcessing" && post.TryGetProperty("single", out var single))
        {
            foreach (var item in single.EnumerateArray())
            {
                if (item.TryGetProperty("SpecialToken", out var st))
                {
                    string? name = GetString(st, "id");
                    int id = proto.Pieces.FindIndex(p => p.Piece == name);
                    if (id >= 0) return id;
                }
            }
        }
        return proto.Pieces.FindIndex(p => p.Piece == "</s>");
    }

    /// <summary>Maps the normalizer and Metaspace pre-tokenizer back to sentencepiece's NormalizerSpec.</summary>
    private static NormalizerSpec ReadNormalizer(JsonElement root)
    {
        var spec = new NormalizerSpec { AddDummyPrefix = false, RemoveExtraWhitespaces = false, EscapeWhitespaces = false };

        var normalizers = new List<JsonElement>();
        if (root.TryGetProperty("normalizer", out var normalizer)) Flatten(normalizer, "normalizers", normalizers);
        foreach (var step in normalizers)
        {
            switch (GetString(step, "type"))
            {
                case "Precompiled":
                    string? charsmap = GetString(step, "precompiled_charsmap");
                    spec.PrecompiledCharsmap = string.IsNullOrEmpty(charsmap) ? [] : Convert.FromBase64String(charsmap);
                    spec.Name = "precompiled";
                    break;
                case "Replace" when IsCollapseSpaces(step):
                    spec.RemoveExtraWhitespaces = true; // " {2,}" -> " ": sentencepiece's remove_extra_whitespaces
                    break;
                case "Strip":
                    break; // trimming is part of remove_extra_whitespaces
                default:
                    throw new InvalidDataException($"normalizer \"{GetString(step, "type")}\" is not one SentencePiece produces; not supported");
            }
        }

        var preTokenizers = new List<JsonElement>();
        if (root.TryGetProperty("pre_tokenizer", out var pre)) Flatten(pre, "pretokenizers", preTokenizers);
        foreach (var step in preTokenizers)
        {
            switch (GetString(step, "type"))
            {
                case "Metaspace":
                    if (GetString(step, "replacement") != "\u2581")
                        throw new InvalidDataException("Metaspace replacement other than U+2581 is not supported");
                    spec.EscapeWhitespaces = true;
                    spec.AddDummyPrefix =
                        (step.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.True)
                        || GetString(step, "prepend_scheme") is "always" or "first";
                    break;
                case "WhitespaceSplit":
                    spec.RemoveExtraWhitespaces = true;
                    break;
                default:
                    throw new InvalidDataException($"pre-tokenizer \"{GetString(step, "type")}\" is not one SentencePiece produces; not supported");
            }
        }
        return spec;
    }

    private static bool IsCollapseSpaces(JsonElement replace)
    {
        if (!replace.TryGetProperty("pattern", out var pattern)) return false;
        string? regex = GetString(pattern, "Regex") ?? GetString(pattern, "String");
        return regex == " {2,}";
    }

    /// <summary>Lists the steps of a normalizer or pre-tokenizer, unwrapping "Sequence".</summary>
    private static void Flatten(JsonElement element, string listName, List<JsonElement> steps)
    {
        if (element.ValueKind != JsonValueKind.Object) return;
        if (GetString(element, "type") == "Sequence" && element.TryGetProperty(listName, out var list))
        {
            foreach (var item in list.EnumerateArray()) Flatten(item, listName, steps);
            return;
        }
        steps.Add(element);
    }

    /// <summary>
    /// Every key and string must be text: an escaped lone surrogate ("\ud800") parses as JSON but is no UTF-16 string
    /// (GetString throws), and HuggingFace's tokenizers refuses such a file too. Only escaped strings can hold one.
    /// </summary>
    private static void RequireValidStrings(ReadOnlySpan<byte> json)
    {
        if (json.StartsWith("\uFEFF"u8)) json = json[3..];
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { AllowTrailingCommas = true });
        while (reader.Read())
        {
            if (reader.TokenType is not (JsonTokenType.String or JsonTokenType.PropertyName) || !reader.ValueIsEscaped) continue;
            try
            {
                reader.GetString();
            }
            catch (InvalidOperationException)
            {
                int line = json[..(int)reader.TokenStartIndex].Count((byte)'\n') + 1;
                string what = reader.TokenType == JsonTokenType.PropertyName ? "a key" : "a string";
                throw new InvalidDataException($"{what} on line {line} holds a lone surrogate escape such as \\ud800, which is not text");
            }
        }
    }

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };

    private static bool IsBytePiece(string piece) =>
        piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>';

    private static string? GetString(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : null;
}
