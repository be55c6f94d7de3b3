// ITokenModel: what T5Tokenizer needs from a vocabulary model, so one facade serves SentencePiece's unigram model
// (T5, Flan-T5, mT5) and ByT5's byte-level vocabulary.

using System.Text;

namespace ManagedT5.Tokenizer;

/// <summary>A vocabulary with a segmenter over normalized UTF-8 and a raw decoder.</summary>
internal interface ITokenModel
{
    /// <summary>Number of ids.</summary>
    int VocabSize { get; }

    /// <summary>Id of the unknown piece.</summary>
    int UnkId { get; }

    /// <summary>The piece of an id in [0, VocabSize).</summary>
    string IdToPiece(int id);

    /// <summary>The kind of an id in [0, VocabSize).</summary>
    PieceType TypeOf(int id);

    /// <summary>The id of a piece, if there is one.</summary>
    bool TryGetId(string piece, out int id);

    /// <summary>Segments <paramref name="normalized"/> into <paramref name="tokens"/>; with
    /// <paramref name="splitAtSpaces"/> every '▁' starts a new word (HuggingFace's Metaspace split).</summary>
    void Encode(ReadOnlySpan<byte> normalized, ref ArrayBuilder<BestPath> lattice, ref ArrayBuilder<RawToken> tokens, bool splitAtSpaces);

    /// <summary>Appends the text of ids in [0, VocabSize) as the raw model decodes it.</summary>
    void Decode(ReadOnlySpan<int> ids, StringBuilder output);
}
