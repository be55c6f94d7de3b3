// ModelProto: the parts of sentencepiece_model.proto a unigram tokenizer needs, and a minimal
// protobuf (proto2 wire format) reader for spiece.model files. No protobuf package involved.

using System.Buffers.Binary;
using System.Text;

namespace ManagedT5.Tokenizer;

/// <summary>ModelProto.SentencePiece.Type: what a vocabulary entry is.</summary>
internal enum PieceType
{
    Normal = 1,       // an ordinary piece the Viterbi search may pick
    Unknown = 2,      // <unk>
    Control = 3,      // </s>, <pad>, sentinels: never produced from text, invisible when decoded
    UserDefined = 4,  // always matched as one piece, bypasses normalization
    Unused = 5,       // in the vocabulary but never produced
    Byte = 6,         // <0xAB>, used by byte_fallback
}

/// <summary>One vocabulary entry: <c>pieces { piece: "▁Hello" score: -9.2 type: NORMAL }</c>.</summary>
internal readonly record struct SentencePiece(string Piece, float Score, PieceType Type);

/// <summary>TrainerSpec fields that change encoding or decoding (defaults are the .proto's).</summary>
internal sealed class TrainerSpec
{
    public int ModelType { get; set; } = 1;                // 1 = UNIGRAM, 2 = BPE, 3 = WORD, 4 = CHAR
    public int UnkId { get; set; }                         // field 40, default 0
    public int BosId { get; set; } = 1;                    // field 41
    public int EosId { get; set; } = 2;                    // field 42
    public int PadId { get; set; } = -1;                   // field 43
    public string UnkSurface { get; set; } = " \u2047 ";   // field 44: how <unk> decodes
    public bool TreatWhitespaceAsSuffix { get; set; }      // field 24
    public bool ByteFallback { get; set; }                 // field 35
}

/// <summary>NormalizerSpec: the text normalization applied before segmentation.</summary>
internal sealed class NormalizerSpec
{
    public string Name { get; set; } = "";                             // field 1, e.g. "nmt_nfkc"
    public byte[] PrecompiledCharsmap { get; set; } = [];              // field 2
    public bool AddDummyPrefix { get; set; } = true;                   // field 3
    public bool RemoveExtraWhitespaces { get; set; } = true;           // field 4
    public bool EscapeWhitespaces { get; set; } = true;                // field 5
}

/// <summary>A SentencePiece model: vocabulary with scores, trainer and normalizer settings.</summary>
internal sealed class ModelProto
{
    public List<SentencePiece> Pieces { get; } = [];      // field 1
    public TrainerSpec TrainerSpec { get; set; } = new(); // field 2
    public NormalizerSpec NormalizerSpec { get; set; } = new(); // field 3

    /// <summary>Whether the serialized model had a trainer_spec / normalizer_spec (every real model does).</summary>
    public bool HasTrainerSpec { get; private set; }
    public bool HasNormalizerSpec { get; private set; }

    /// <summary>Parses a serialized ModelProto. Throws <see cref="InvalidDataException"/> on malformed input.</summary>
    public static ModelProto Parse(ReadOnlySpan<byte> data)
    {
        var model = new ModelProto();
        var reader = new ProtoReader(data);
        while (reader.TryReadTag(out int field, out int wireType))
        {
            switch (field, wireType)
            {
                case (1, ProtoReader.LengthDelimited): model.Pieces.Add(ParsePiece(reader.ReadBytes())); break;
                case (2, ProtoReader.LengthDelimited):
                    model.TrainerSpec = ParseTrainerSpec(reader.ReadBytes());
                    model.HasTrainerSpec = true;
                    break;
                case (3, ProtoReader.LengthDelimited):
                    model.NormalizerSpec = ParseNormalizerSpec(reader.ReadBytes());
                    model.HasNormalizerSpec = true;
                    break;
                default: reader.Skip(wireType); break;
            }
        }
        return model;
    }

    private static SentencePiece ParsePiece(ReadOnlySpan<byte> data)
    {
        string piece = "";
        float score = 0;
        var type = PieceType.Normal;
        var reader = new ProtoReader(data);
        while (reader.TryReadTag(out int field, out int wireType))
        {
            switch (field, wireType)
            {
                case (1, ProtoReader.LengthDelimited): piece = reader.ReadString(); break;
                case (2, ProtoReader.Fixed32): score = reader.ReadFloat(); break;
                case (3, ProtoReader.Varint):
                    long t = reader.ReadVarint();
                    if (t < 1 || t > 6) throw new InvalidDataException($"piece '{piece}' has unknown type {t}");
                    type = (PieceType)t;
                    break;
                default: reader.Skip(wireType); break;
            }
        }
        return new SentencePiece(piece, score, type);
    }

    private static TrainerSpec ParseTrainerSpec(ReadOnlySpan<byte> data)
    {
        var spec = new TrainerSpec();
        var reader = new ProtoReader(data);
        while (reader.TryReadTag(out int field, out int wireType))
        {
            switch (field, wireType)
            {
                case (3, ProtoReader.Varint): spec.ModelType = (int)reader.ReadVarint(); break;
                case (24, ProtoReader.Varint): spec.TreatWhitespaceAsSuffix = reader.ReadVarint() != 0; break;
                case (35, ProtoReader.Varint): spec.ByteFallback = reader.ReadVarint() != 0; break;
                case (40, ProtoReader.Varint): spec.UnkId = (int)reader.ReadVarint(); break;
                case (41, ProtoReader.Varint): spec.BosId = (int)reader.ReadVarint(); break;
                case (42, ProtoReader.Varint): spec.EosId = (int)reader.ReadVarint(); break;
                case (43, ProtoReader.Varint): spec.PadId = (int)reader.ReadVarint(); break;
                case (44, ProtoReader.LengthDelimited): spec.UnkSurface = reader.ReadString(); break;
                default: reader.Skip(wireType); break;
            }
        }
        return spec;
    }

    private static NormalizerSpec ParseNormalizerSpec(ReadOnlySpan<byte> data)
    {
        var spec = new NormalizerSpec();
        var reader = new ProtoReader(data);
        while (reader.TryReadTag(out int field, out int wireType))
        {
            switch (field, wireType)
            {
                case (1, ProtoReader.LengthDelimited): spec.Name = reader.ReadString(); break;
                case (2, ProtoReader.LengthDelimited): spec.PrecompiledCharsmap = reader.ReadBytes().ToArray(); break;
                case (3, ProtoReader.Varint): spec.AddDummyPrefix = reader.ReadVarint() != 0; break;
                case (4, ProtoReader.Varint): spec.RemoveExtraWhitespaces = reader.ReadVarint() != 0; break;
                case (5, ProtoReader.Varint): spec.EscapeWhitespaces = reader.ReadVarint() != 0; break;
                default: reader.Skip(wireType); break;
            }
        }
        return spec;
    }
}

/// <summary>Reads protobuf wire format: a tag (field number, wire type) then a value, repeated.</summary>
internal ref struct ProtoReader
{
    public const int Varint = 0, Fixed64 = 1, LengthDelimited = 2, Fixed32 = 5;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly ReadOnlySpan<byte> _data;
    private int _pos;

    public ProtoReader(ReadOnlySpan<byte> data)
    {
        _data = data;
        _pos = 0;
    }

    /// <summary>Reads the next tag; false at the end of the message.</summary>
    public bool TryReadTag(out int field, out int wireType)
    {
        if (_pos >= _data.Length)
        {
            field = wireType = 0;
            return false;
        }
        ulong tag = (ulong)ReadVarint();
        field = (int)(tag >> 3);
        wireType = (int)(tag & 7);
        if (field <= 0 || tag >> 3 > int.MaxValue) throw new InvalidDataException($"invalid field number at byte {_pos}");
        return true;
    }

    /// <summary>Reads a base-128 varint (up to 10 bytes); int32 negatives come sign-extended to 64 bits.</summary>
    public long ReadVarint()
    {
        ulong result = 0;
        for (int shift = 0; shift < 70; shift += 7)
        {
            if (_pos >= _data.Length) throw new InvalidDataException("truncated varint");
            byte b = _data[_pos++];
            result |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return (long)result;
        }
        throw new InvalidDataException("varint longer than 10 bytes");
    }

    public float ReadFloat()
    {
        if (_data.Length - _pos < 4) throw new InvalidDataException("truncated fixed32");
        float value = BinaryPrimitives.ReadSingleLittleEndian(_data.Slice(_pos, 4));
        _pos += 4;
        return value;
    }

    public ReadOnlySpan<byte> ReadBytes()
    {
        long length = ReadVarint();
        if (length < 0 || length > _data.Length - _pos) throw new InvalidDataException($"length {length} runs past the end of the data");
        var bytes = _data.Slice(_pos, (int)length);
        _pos += (int)length;
        return bytes;
    }

    public string ReadString()
    {
        var bytes = ReadBytes();
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException("string field is not valid UTF-8", e);
        }
    }

    /// <summary>Skips a field this reader does not need. Groups (wire types 3, 4) are not used by SentencePiece.</summary>
    public void Skip(int wireType)
    {
        switch (wireType)
        {
            case Varint: ReadVarint(); break;
            case Fixed64: Advance(8); break;
            case LengthDelimited: ReadBytes(); break;
            case Fixed32: Advance(4); break;
            default: throw new InvalidDataException($"unsupported wire type {wireType} at byte {_pos}");
        }
    }

    private void Advance(int count)
    {
        if (_data.Length - _pos < count) throw new InvalidDataException("truncated field");
        _pos += count;
    }
}
