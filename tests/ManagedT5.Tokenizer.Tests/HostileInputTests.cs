// HostileInputTests: files and text made to hurt the tokenizer (a 200,000-byte piece, 10 MB of "<extra_id_",
// a FIFO or /dev/zero behind a link, a huge file, JSON that is not text) end in one TokenizerException within seconds.

using System.Diagnostics;
using System.Text;

namespace ManagedT5.Tokenizer.Tests;

public sealed class HostileInputTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("managedt5-hostile-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, byte[] content)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, content);
        return path;
    }

    /// <summary>Loading <paramref name="path"/> throws one TokenizerException naming it, within a few seconds.</summary>
    private static TokenizerException AssertFailsQuicklyNamingFile(string path, Func<T5Tokenizer>? load = null)
    {
        load ??= () => T5Tokenizer.FromFile(path);
        var attempt = Task.Run(load);
        if (!((IAsyncResult)attempt).AsyncWaitHandle.WaitOne(TimeSpan.FromSeconds(10)))
        {
            Unblock(path);
            Assert.Fail($"Loading '{path}' was still running after 10 s.");
        }
        var e = Assert.IsType<TokenizerException>(attempt.Exception?.InnerException);
        Assert.Equal(path, e.Path);
        Assert.Contains(path, e.Message);
        return e;
    }

    /// <summary>Lets a reader blocked on a FIFO go, so a failing test does not leave a thread stuck in open().</summary>
    private static void Unblock(string path)
    {
        try
        {
            using var writer = new FileStream(path, FileMode.Open, FileAccess.Write);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    // ------------------------------------------------------------------------------------------------
    // A model with a huge piece (the trie used to recurse once per byte and overflow the stack)
    // ------------------------------------------------------------------------------------------------

    [Fact]
    public void TrieHoldsAPieceOf200000Bytes()
    {
        byte[] longKey = new byte[200_000];
        longKey.AsSpan().Fill((byte)'a');
        var trie = PieceTrie.Build([(longKey, 7, -1f), ("a"u8.ToArray(), 1, -2f), ("ab"u8.ToArray(), 2, -3f), ("b"u8.ToArray(), 3, -4f)]);

        Assert.Equal(7, trie.ExactMatch(longKey));
        Assert.Equal(-1, trie.ExactMatch(longKey.AsSpan(0, 199_999)));
        Assert.Equal(1, trie.ExactMatch("a"u8));
        Assert.Equal(2, trie.ExactMatch("ab"u8));
        Assert.Equal(3, trie.ExactMatch("b"u8));
        Assert.Equal(200_000, trie.LongestPrefix([.. longKey, (byte)'b']));
        Assert.Equal(2, trie.LongestPrefix("abc"u8));
    }

    [Fact]
    public void ModelWithA200000BytePieceFailsNamingThePiece()
    {
        byte[] model = File.ReadAllBytes(Fixtures.SpieceModel);
        string path = Write("spiece.model", [.. model, .. PieceField(new string('a', 200_000), -1f)]);

        var e = AssertFailsQuicklyNamingFile(path);
        Assert.Contains("piece 32000 is", e.Message);
        Assert.Contains(UnigramModel.MaxPieceBytes.ToString("N0"), e.Message);
    }

    [Fact]
    public void ModelWithALongPlausiblePieceLoadsAndUsesIt()
    {
        byte[] model = File.ReadAllBytes(Fixtures.SpieceModel);
        string word = new('x', UnigramModel.MaxPieceBytes - 3);
        var tokenizer = T5Tokenizer.FromFile(Write("spiece.model", [.. model, .. PieceField("\u2581" + word, 0f)]));

        Assert.Equal([32000], tokenizer.EncodeRaw(word));
        Assert.Equal(tokenizer.SentinelId(0), tokenizer.Encode("<extra_id_0>")[0]);
    }

    [Fact]
    public void ModelWhosePiecesAddUpToTooMuchFails()
    {
        // 5,000 distinct pieces of 4,000 bytes: 20 MB of trie keys, which would build a trie of hundreds of MB.
        var pieces = new MemoryStream();
        pieces.Write(File.ReadAllBytes(Fixtures.SpieceModel));
        for (int i = 0; i < 5_000; i++) pieces.Write(PieceField($"{i:D6}" + new string('z', 3_994), -1f));
        string path = Write("spiece.model", pieces.ToArray());

        var e = AssertFailsQuicklyNamingFile(path);
        Assert.Contains(UnigramModel.MaxVocabularyBytes.ToString("N0"), e.Message);
    }

    /// <summary>A serialized <c>pieces</c> field (ModelProto field 1): { piece: 1, score: 2 }, type NORMAL by default.
    /// Appended to a model, protobuf adds it after the last piece.</summary>
    private static byte[] PieceField(string piece, float score)
    {
        var body = new MemoryStream();
        byte[] text = Encoding.UTF8.GetBytes(piece);
        body.WriteByte(0x0A); // field 1, length-delimited
        WriteVarint(body, (ulong)text.Length);
        body.Write(text);
        body.WriteByte(0x15); // field 2, fixed32
        body.Write(BitConverter.GetBytes(score));

        var field = new MemoryStream();
        field.WriteByte(0x0A); // ModelProto field 1 (pieces), length-delimited
        WriteVarint(field, (ulong)body.Length);
        body.WriteTo(field);
        return field.ToArray();
    }

    private static void WriteVarint(Stream stream, ulong value)
    {
        for (; value >= 0x80; value >>= 7) stream.WriteByte((byte)(value | 0x80));
        stream.WriteByte((byte)value);
    }

    // ------------------------------------------------------------------------------------------------
    // Sentinel look-ahead (each "<extra_id_" used to scan to the end of the text for a '>')
    // ------------------------------------------------------------------------------------------------

    [Fact]
    public void TenMegabytesOfBrokenSentinelsEncodeInSeconds()
    {
        var tokenizer = Fixtures.Spiece;
        string text = new StringBuilder().Insert(0, "<extra_id_", 1_000_000).ToString();

        var watch = Stopwatch.StartNew();
        int[] ids = tokenizer.Encode(text);
        watch.Stop();

        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"10 MB of \"<extra_id_\" took {watch.Elapsed}");
        int[] plain = [.. tokenizer.EncodeRaw(text), tokenizer.EosId]; // no sentinel in it: plain text
        Assert.True(plain.AsSpan().SequenceEqual(ids), "the ids differ from the raw encoding");
    }

    [Theory]
    [InlineData("a <extra_id_0> b")]
    [InlineData("<extra_id_<extra_id_1>")]
    [InlineData("x<extra_id_99>y<extra_id_100>z<extra_id_ 5>")]
    [InlineData("<extra_id_5<extra_id_07><extra_id_5>>")]
    [InlineData("<extra_id_12")]
    [InlineData("<extra_id_>1> <extra_id_-1> <extra_id_3>")]
    [InlineData("tail <extra_id_")]
    public void BrokenSentinelsStayTextBesideRealOnes(string text)
    {
        var tokenizer = Fixtures.Spiece;
        Assert.Equal(SplitAtSentinels(tokenizer, text), tokenizer.Encode(text));
    }

    /// <summary>
    /// HuggingFace's rule written the slow way: each exact "&lt;extra_id_N&gt;" (N = 0..99, no leading zeros) is its id,
    /// leftmost first; the text between is encoded raw; &lt;/s&gt; at the end.
    /// </summary>
    private static int[] SplitAtSentinels(T5Tokenizer tokenizer, string text)
    {
        var ids = new List<int>();
        int segmentStart = 0;
        for (int i = 0; i < text.Length; i++)
        {
            for (int n = 0; n < T5Tokenizer.SentinelCount; n++)
            {
                string sentinel = $"<extra_id_{n}>";
                if (string.CompareOrdinal(text, i, sentinel, 0, sentinel.Length) != 0) continue;
                ids.AddRange(tokenizer.EncodeRaw(text[segmentStart..i]));
                ids.Add(tokenizer.SentinelId(n));
                segmentStart = i + sentinel.Length;
                i = segmentStart - 1;
                break;
            }
        }
        ids.AddRange(tokenizer.EncodeRaw(text[segmentStart..]));
        ids.Add(tokenizer.EosId);
        return [.. ids];
    }
}
