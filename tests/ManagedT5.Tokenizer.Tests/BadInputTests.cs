// BadInputTests: broken tokenizer files fail with a TokenizerException that names the file; awkward text
// (lone surrogates, control characters, 10 MB) is encoded, never thrown, in linear time and memory.

using System.Diagnostics;
using System.Text;

namespace ManagedT5.Tokenizer.Tests;

public sealed class BadInputTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("managedt5-tok-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, byte[] content)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, content);
        return path;
    }

    private static void AssertFailsNamingFile(string path)
    {
        var e = Assert.Throws<TokenizerException>(() => T5Tokenizer.FromFile(path));
        Assert.Equal(path, e.Path);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void EmptyFileFails()
    {
        string path = Write("spiece.model", []);
        AssertFailsNamingFile(path);
        Assert.Contains("empty", Assert.Throws<TokenizerException>(() => T5Tokenizer.FromFile(path)).Message);
    }

    [Fact]
    public void MissingFileFails() => AssertFailsNamingFile(Path.Combine(_dir, "nope.model"));

    [Fact]
    public void TruncatedModelFailsAtEveryLength()
    {
        byte[] model = File.ReadAllBytes(Fixtures.SpieceModel);
        var random = new Random(7);
        var lengths = Enumerable.Range(1, 48)                                        // inside the first pieces
            .Concat(Enumerable.Range(0, 40).Select(_ => random.Next(1, model.Length)))  // anywhere
            .Concat(TopLevelFieldStarts(model).SelectMany(at => new[] { at - 1, at, at + 1 })) // at field boundaries
            .Concat(Enumerable.Range(1, 16).Select(k => model.Length - k))            // inside the last field
            .Where(length => length > 0 && length < model.Length)
            .Distinct();
        foreach (int length in lengths)
        {
            string path = Write($"cut-{length}.model", model[..length]);
            AssertFailsNamingFile(path);
            File.Delete(path);
        }
    }

    /// <summary>Where each top-level field of a serialized ModelProto starts after the pieces (tag, length, body).</summary>
    private static IEnumerable<int> TopLevelFieldStarts(byte[] model)
    {
        int pos = 0, lastField = 0;
        while (pos < model.Length)
        {
            int start = pos;
            int field = (int)(ReadVarint(model, ref pos) >> 3);
            int length = (int)ReadVarint(model, ref pos); // every top-level field is length-delimited
            pos += length;
            if (field != lastField || field != 1) yield return start;
            lastField = field;
        }
    }

    private static long ReadVarint(byte[] data, ref int pos)
    {
        long value = 0;
        for (int shift = 0; ; shift += 7)
        {
            byte b = data[pos++];
            value |= (long)(b & 0x7F) << shift;
            if (b < 0x80) return value;
        }
    }

    [Theory]
    [InlineData(1, 16)]
    [InlineData(2, 1024)]
    [InlineData(3, 100_000)]
    public void RandomBytesFail(int seed, int length)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        AssertFailsNamingFile(Write($"random-{seed}.model", bytes));
    }

    [Fact]
    public void TruncatedTokenizerJsonFails()
    {
        byte[] json = File.ReadAllBytes(Fixtures.TokenizerJson);
        AssertFailsNamingFile(Write("tokenizer.json", json[..(json.Length / 2)]));
    }

    [Fact]
    public void NonUnigramTokenizerJsonFails()
    {
        string path = Write("tokenizer.json", Encoding.UTF8.GetBytes("""{"model": {"type": "BPE", "vocab": {}, "merges": []}}"""));
        var e = Assert.Throws<TokenizerException>(() => T5Tokenizer.FromFile(path));
        Assert.Contains("Unigram", e.Message);
    }

    [Fact]
    public void DirectoryWithoutTokenizerFails()
    {
        var e = Assert.Throws<TokenizerException>(() => T5Tokenizer.FromDirectory(_dir));
        Assert.Contains(_dir, e.Message);
        Assert.Contains("spiece.model", e.Message);
    }

    [Fact]
    public void DirectoryPrefersSpieceModelAndFallsBackToTokenizerJson()
    {
        File.Copy(Fixtures.TokenizerJson, Path.Combine(_dir, "tokenizer.json"));
        Assert.EndsWith("tokenizer.json", T5Tokenizer.FromDirectory(_dir).SourcePath);
        File.Copy(Fixtures.SpieceModel, Path.Combine(_dir, "spiece.model"));
        Assert.EndsWith("spiece.model", T5Tokenizer.FromDirectory(_dir).SourcePath);
    }

    [Theory]
    [InlineData("\uD800")]
    [InlineData("a\uDC00b")]
    [InlineData("end \uD83D")]
    [InlineData("\uDE00\uD83D start")]
    public void LoneSurrogatesEncodeAsReplacementCharacter(string text)
    {
        var tokenizer = Fixtures.Spiece;
        string replaced = text.Replace('\uD800', '\uFFFD').Replace('\uDC00', '\uFFFD').Replace('\uD83D', '\uFFFD').Replace('\uDE00', '\uFFFD');
        Assert.Equal(tokenizer.Encode(replaced), tokenizer.Encode(text));
        var withOffsets = tokenizer.EncodeWithOffsets(text);
        Assert.All(withOffsets.Offsets, span => Assert.InRange(span.End, 0, text.Length));
        _ = tokenizer.Decode(withOffsets.Ids);
    }

    [Fact]
    public void ControlCharactersEncode()
    {
        var tokenizer = Fixtures.Spiece;
        string controls = new(Enumerable.Range(0, 0x20).Concat(Enumerable.Range(0x7F, 0x21)).Select(c => (char)c).ToArray());
        foreach (string text in new[] { controls, "a" + controls + "b", "\0", "x\0y", "\u001B[31mred\u001B[0m" })
        {
            int[] ids = tokenizer.Encode(text);
            Assert.Equal(tokenizer.EosId, ids[^1]);
            Assert.Equal(ids.Length, tokenizer.EncodeWithOffsets(text).Offsets.Length);
            _ = tokenizer.Decode(ids, skipSpecialTokens: false);
        }
        Assert.Equal(tokenizer.Encode("a b"), tokenizer.Encode("a\tb"));
        Assert.Equal(tokenizer.Encode("a b"), tokenizer.Encode("a\r\n\r\nb"));
    }

    [Fact]
    public void TenMegabytesEncodeInLinearTimeAndMemory()
    {
        var tokenizer = Fixtures.Spiece;
        string unit = string.Join(" ", Fixtures.Cases.Select(c => c.Text)) + "\n";
        string small = Repeat(unit, 1_000_000), large = Repeat(unit, 10_000_000);
        tokenizer.EncodeRaw(unit); // warm up

        // Interleaved, best of three each: the other test classes run beside this one, and a burst of their load
        // landing on one size alone once made a linear encoder look 28x slower at ten times the text.
        var smallTime = TimeSpan.MaxValue; var largeTime = TimeSpan.MaxValue;
        long smallBytes = 0, largeBytes = 0;
        int smallIds = 0, largeIds = 0;
        for (int round = 0; round < 3; round++)
        {
            (smallTime, smallBytes, smallIds) = MeasureOnce(tokenizer, small, smallTime);
            (largeTime, largeBytes, largeIds) = MeasureOnce(tokenizer, large, largeTime);
        }

        // Ten times the text: about ten times the ids, time and memory. A quadratic step would take 100x the time;
        // 40x leaves room for the larger text missing the caches and for load, and still fails a quadratic one.
        Assert.InRange(largeIds / (double)smallIds, 9.5, 10.5);
        Assert.True(largeTime.TotalSeconds / smallTime.TotalSeconds < 40, $"1 MB took {smallTime}, 10 MB took {largeTime}");
        // Memory: a bounded number of bytes per character at both sizes.
        Assert.True(smallBytes < 24L * small.Length && largeBytes < 24L * large.Length,
            $"1 MB allocated {smallBytes:N0} B, 10 MB allocated {largeBytes:N0} B");
        Assert.True(largeTime < TimeSpan.FromSeconds(20), $"10 MB took {largeTime}");
    }

    private static (TimeSpan Best, long Bytes, int Ids) MeasureOnce(T5Tokenizer tokenizer, string text, TimeSpan best)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var watch = Stopwatch.StartNew();
        int ids = tokenizer.EncodeRaw(text).Length;
        watch.Stop();
        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        return (watch.Elapsed < best ? watch.Elapsed : best, bytes, ids);
    }

    private static string Repeat(string unit, int length)
    {
        var sb = new StringBuilder(length + unit.Length);
        while (sb.Length < length) sb.Append(unit);
        return sb.ToString(0, length - length % unit.Length);
    }
}
