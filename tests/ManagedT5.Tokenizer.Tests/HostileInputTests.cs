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

        // Against the raw encoding of the same text in the same process, so a busy machine slows both alike.
        int[] plain = [], ids = [];
        var raw = TimeSpan.MaxValue;
        var withSentinels = TimeSpan.MaxValue;
        for (int run = 0; run < 2; run++)
        {
            var watch = Stopwatch.StartNew();
            plain = tokenizer.EncodeRaw(text);
            raw = Min(raw, watch.Elapsed);
            watch.Restart();
            ids = tokenizer.Encode(text);
            withSentinels = Min(withSentinels, watch.Elapsed);
        }

        // Before the look-ahead was bounded this took minutes; now the sentinel scan adds little to the encoding.
        Assert.True(withSentinels < 3 * raw + TimeSpan.FromSeconds(1) && withSentinels < TimeSpan.FromSeconds(60),
            $"10 MB of \"<extra_id_\" took {withSentinels} to encode, {raw} without looking for sentinels");
        Assert.True(((ReadOnlySpan<int>)[.. plain, tokenizer.EosId]).SequenceEqual(ids), "no sentinel in it, so the ids must be the raw ones and </s>");
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

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

    // ------------------------------------------------------------------------------------------------
    // Files that are not regular files, are huge, or are links (the HuggingFace cache is all links)
    // ------------------------------------------------------------------------------------------------

    [UnixFact]
    public void HuggingFaceCacheLinksLoad()
    {
        // models--google--flan-t5-small/snapshots/<commit>/spiece.model -> ../../blobs/<sha256>
        string blobs = Directory.CreateDirectory(Path.Combine(_dir, "blobs")).FullName;
        string snapshot = Directory.CreateDirectory(Path.Combine(_dir, "snapshots", "0123abcd")).FullName;
        foreach (var (name, source, blob) in new[] { ("spiece.model", Fixtures.SpieceModel, "5f1a"), ("tokenizer.json", Fixtures.TokenizerJson, "9c3e") })
        {
            File.Copy(source, Path.Combine(blobs, blob));
            File.CreateSymbolicLink(Path.Combine(snapshot, name), Path.Combine("..", "..", "blobs", blob));
        }

        var fromSpiece = T5Tokenizer.FromFile(Path.Combine(snapshot, "spiece.model"));
        var fromJson = T5Tokenizer.FromFile(Path.Combine(snapshot, "tokenizer.json"));
        var fromDirectory = T5Tokenizer.FromDirectory(snapshot);
        Assert.Equal(Path.Combine(snapshot, "spiece.model"), fromDirectory.SourcePath);
        foreach (var tokenizer in new[] { fromSpiece, fromJson, fromDirectory })
            Assert.Equal(Fixtures.Cases[0].HfIds, tokenizer.Encode(Fixtures.Cases[0].Text));
    }

    [UnixFact]
    public void FifoBehindALinkFailsInsteadOfWaiting()
    {
        string fifo = Path.Combine(_dir, "fifo");
        MakeFifo(fifo);
        string model = Path.Combine(_dir, "spiece.model");
        File.CreateSymbolicLink(model, fifo);

        var e = AssertFailsQuicklyNamingFile(model);
        Assert.Contains("not a regular file", e.Message);
        AssertFailsQuicklyNamingFile(model, () => T5Tokenizer.FromDirectory(_dir));
        AssertFailsQuicklyNamingFile(fifo);
    }

    [UnixFact]
    public void DeviceBehindALinkFailsInsteadOfReadingForever()
    {
        Assert.True(File.Exists("/dev/zero"), "/dev/zero is missing");
        string json = Path.Combine(_dir, "tokenizer.json");
        File.CreateSymbolicLink(json, "/dev/zero");

        AssertFailsQuicklyNamingFile(json);
        AssertFailsQuicklyNamingFile("/dev/zero");
    }

    [Fact]
    public void HugeFileIsRefusedBeforeItIsRead()
    {
        string path = Path.Combine(_dir, "spiece.model");
        using (var file = File.Create(path)) file.SetLength(300L << 20); // sparse: no disk space used

        var e = AssertFailsQuicklyNamingFile(path);
        Assert.Contains("more than", e.Message);
    }

    [UnixFact]
    public void BrokenLinkFailsNamingIt()
    {
        string model = Path.Combine(_dir, "spiece.model");
        File.CreateSymbolicLink(model, Path.Combine("..", "blobs", "missing"));
        File.Copy(Fixtures.TokenizerJson, Path.Combine(_dir, "tokenizer.json"));

        Assert.Contains("symbolic link", AssertFailsQuicklyNamingFile(model).Message);
        AssertFailsQuicklyNamingFile(model, () => T5Tokenizer.FromDirectory(_dir));
    }

    [Fact]
    public void FolderFailsNamingIt()
    {
        string folder = Directory.CreateDirectory(Path.Combine(_dir, "spiece.model")).FullName;
        Assert.Contains("folder", AssertFailsQuicklyNamingFile(folder).Message);
    }

    private static void MakeFifo(string path)
    {
        using var mkfifo = Process.Start(new ProcessStartInfo("mkfifo", [path]) { UseShellExecute = false })!;
        Assert.True(mkfifo.WaitForExit(10_000), "mkfifo did not finish");
        Assert.Equal(0, mkfifo.ExitCode);
    }

    // ------------------------------------------------------------------------------------------------
    // tokenizer.json that is JSON but not a tokenizer, or not text
    // ------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData("[1, 2, 3]", "an array")]
    [InlineData("\"model\"", "a string")]
    [InlineData("null", "null")]
    [InlineData("42", "a number")]
    [InlineData("{\"model\": [1]}", "\"model\"")]
    public void TokenizerJsonThatIsNotAnObjectFails(string json, string expected)
    {
        var e = AssertFailsQuicklyNamingFile(Write("tokenizer.json", Encoding.UTF8.GetBytes(json)));
        Assert.Contains(expected, e.Message);
    }

    [Theory]
    [InlineData("\"\u2581the\",", "\"\\ud800the\",")]                              // in a piece
    [InlineData("\"type\": \"Unigram\"", "\"type\": \"Unigram\", \"\\udc00x\": 1")] // in a key nobody reads
    [InlineData("\"type\": \"Unigram\"", "\"type\": \"Unigram\", \"x\": \"\\ud83d\"")] // a high surrogate alone
    public void TokenizerJsonWithALoneSurrogateFailsNamingTheLine(string find, string replace)
    {
        string original = File.ReadAllText(Fixtures.TokenizerJson);
        Assert.Contains(find, original);
        string json = ReplaceFirst(original, find, replace);
        int line = json[..json.IndexOf(replace, StringComparison.Ordinal)].Count(c => c == '\n') + 1;

        var e = AssertFailsQuicklyNamingFile(Write("tokenizer.json", Encoding.UTF8.GetBytes(json)));
        Assert.Contains("lone surrogate", e.Message);
        Assert.Contains($"line {line}", e.Message);
    }

    [Fact]
    public void TokenizerJsonWithEscapedTextStillLoads()
    {
        // Escapes that are text (a surrogate pair, \n, \u00e9) are fine: only lone surrogates are refused.
        string original = File.ReadAllText(Fixtures.TokenizerJson);
        string json = ReplaceFirst(original, "\"type\": \"Unigram\"", "\"type\": \"Unigram\", \"note\": \"\\ud83d\\ude00 \\n \\u00e9\"");
        var tokenizer = T5Tokenizer.FromFile(Write("tokenizer.json", Encoding.UTF8.GetBytes(json)));
        Assert.Equal(Fixtures.Cases[0].HfIds, tokenizer.Encode(Fixtures.Cases[0].Text));
    }

    private static string ReplaceFirst(string text, string find, string replace)
    {
        int at = text.IndexOf(find, StringComparison.Ordinal);
        return string.Concat(text.AsSpan(0, at), replace, text.AsSpan(at + find.Length));
    }
}

/// <summary>A [Fact] for FIFOs, devices and symbolic links, skipped on Windows.</summary>
public sealed class UnixFactAttribute : FactAttribute
{
    public UnixFactAttribute()
    {
        if (OperatingSystem.IsWindows()) Skip = "FIFOs, /dev/zero and unprivileged symbolic links are Unix features.";
    }
}
