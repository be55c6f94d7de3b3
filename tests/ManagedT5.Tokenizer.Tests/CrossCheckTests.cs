// CrossCheckTests: 10,000 generated strings (fixed seed) encoded by Google's sentencepiece and by ours;
// ids, pieces, offsets and decoding must agree exactly, for spiece.model and for tokenizer.json.

using System.Text;
using Xunit.Abstractions;

namespace ManagedT5.Tokenizer.Tests;

/// <summary>The generated strings and sentencepiece's answers, computed once for the whole class.</summary>
public sealed class CrossCheckData
{
    public const int Seed = 20240531;
    public const int TextCount = 10_000;
    public const int IdListCount = 2_000;

    private readonly Lazy<(List<string> Texts, List<int[]> IdLists, List<SentencePieceEncoding> Encoded, List<string> Decoded, string Version)> _data;

    public CrossCheckData()
    {
        _data = new(() =>
        {
            var texts = RandomText.Generate(TextCount, Seed);
            var idLists = RandomIdLists(IdListCount, Seed);
            var (encoded, decoded, version) = GoogleSentencePiece.Run(Fixtures.SpieceModel, texts, idLists);
            return (texts, idLists, encoded, decoded, version);
        });
    }

    public List<string> Texts => _data.Value.Texts;
    public List<int[]> IdLists => _data.Value.IdLists;
    public List<SentencePieceEncoding> Encoded => _data.Value.Encoded;
    public List<string> Decoded => _data.Value.Decoded;
    public string Version => _data.Value.Version;

    /// <summary>Id sequences for decoding: random pieces, with control, unknown and "▁" ids mixed in.</summary>
    private static List<int[]> RandomIdLists(int count, int seed)
    {
        var random = new Random(seed + 1);
        var lists = new List<int[]>(count);
        for (int i = 0; i < count; i++)
        {
            var ids = new int[random.Next(0, 16)];
            for (int k = 0; k < ids.Length; k++)
            {
                ids[k] = random.Next(8) switch
                {
                    0 => random.Next(0, 4), // <pad> </s> <unk> ▁
                    _ => random.Next(0, 32000),
                };
            }
            lists.Add(ids);
        }
        return lists;
    }
}

public sealed class CrossCheckTests(CrossCheckData data, ITestOutputHelper output) : IClassFixture<CrossCheckData>
{
    [SentencePieceFact]
    public void IdsMatchSentencePieceFromSpieceModel() => AssertIdsMatch(Fixtures.Spiece);

    [SentencePieceFact]
    public void IdsMatchSentencePieceFromTokenizerJson() => AssertIdsMatch(Fixtures.Json);

    [SentencePieceFact]
    public void PiecesMatchSentencePiece()
    {
        var failures = new List<string>();
        for (int i = 0; i < data.Texts.Count; i++)
        {
            var ours = Fixtures.Spiece.EncodeToPieces(data.Texts[i]);
            if (!ours.SequenceEqual(data.Encoded[i].Pieces))
                failures.Add($"{Show(data.Texts[i])}: ours [{string.Join(", ", ours)}] sentencepiece [{string.Join(", ", data.Encoded[i].Pieces)}]");
        }
        Report(failures, "pieces");
    }

    [SentencePieceFact]
    public void OffsetsMatchSentencePiece()
    {
        var failures = new List<string>();
        for (int i = 0; i < data.Texts.Count; i++)
        {
            string text = data.Texts[i];
            var expected = data.Encoded[i];
            var ours = Fixtures.Spiece.EncodeWithOffsets(text, addEos: false, parseSpecialTokens: false);
            int[] toChar = CodePointToChar(text);
            var expectedSpans = expected.Begin.Zip(expected.End, (b, e) => new TokenSpan(toChar[b], toChar[e] - toChar[b]));
            if (!ours.Offsets.SequenceEqual(expectedSpans))
                failures.Add($"{Show(text)}: ours [{string.Join(", ", ours.Offsets)}] sentencepiece [{string.Join(", ", expectedSpans)}]");
        }
        Report(failures, "offsets");
    }

    [SentencePieceFact]
    public void DecodeMatchesSentencePiece()
    {
        var failures = new List<string>();
        for (int i = 0; i < data.IdLists.Count; i++)
        {
            string ours = Fixtures.Spiece.DecodeRaw(data.IdLists[i]);
            if (ours != data.Decoded[i])
                failures.Add($"[{string.Join(", ", data.IdLists[i])}]: ours {Show(ours)} sentencepiece {Show(data.Decoded[i])}");
        }
        Report(failures, "decoded strings");
    }

    private void AssertIdsMatch(T5Tokenizer tokenizer)
    {
        output.WriteLine($"sentencepiece {data.Version}, {data.Texts.Count} strings, seed {CrossCheckData.Seed}");
        var failures = new List<string>();
        Span<int> buffer = new int[4096];
        for (int i = 0; i < data.Texts.Count; i++)
        {
            int[] expected = data.Encoded[i].Ids;
            int[] ours = tokenizer.EncodeRaw(data.Texts[i]);
            int count = tokenizer.EncodeRaw(data.Texts[i].AsSpan(), buffer);
            if (!ours.AsSpan().SequenceEqual(expected) || !buffer[..count].SequenceEqual(expected))
                failures.Add($"{Show(data.Texts[i])}: ours [{string.Join(", ", ours)}] sentencepiece [{string.Join(", ", expected)}]");
        }
        Report(failures, "id sequences");
    }

    private void Report(List<string> failures, string what)
    {
        foreach (string failure in failures.Take(10)) output.WriteLine(failure);
        Assert.True(failures.Count == 0, $"{failures.Count} of {data.Texts.Count} {what} differ from sentencepiece; first: {failures.FirstOrDefault()}");
    }

    /// <summary>Code point index (what sentencepiece's Python spans count) → UTF-16 index.</summary>
    private static int[] CodePointToChar(string text)
    {
        var map = new List<int>();
        int charPos = 0;
        foreach (Rune rune in text.EnumerateRunes())
        {
            map.Add(charPos);
            charPos += rune.Utf16SequenceLength;
        }
        map.Add(text.Length);
        return map.ToArray();
    }

    private static string Show(string s) =>
        "\"" + string.Concat(s.Select(c => c < ' ' || c is >= '\u007F' and <= '\u00A0' ? $"\\u{(int)c:X4}" : c.ToString())) + "\"";
}
