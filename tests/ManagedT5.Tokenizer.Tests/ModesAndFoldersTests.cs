// ModesAndFoldersTests: how a model folder chooses its tokenizer (ByT5 from tokenizer_class, clear errors for an unknown
// class, a corrupt tokenizer_config.json or no tokenizer), ByT5 decoding, and hostile text in every encoding mode.

using System.Diagnostics;
using System.Text;

namespace ManagedT5.Tokenizer.Tests;

public sealed class ModesAndFoldersTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("managedt5-folders-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string content)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, content);
        return path;
    }

    // ------------------------------------------------------------------------------------------------
    // Choosing the tokenizer of a folder
    // ------------------------------------------------------------------------------------------------

    [Fact]
    public void ConfigJsonTokenizerClassChoosesByT5()
    {
        Write("config.json", """{"model_type": "t5", "tokenizer_class": "ByT5Tokenizer"}""");
        var tokenizer = T5Tokenizer.FromDirectory(_dir);
        Assert.True(tokenizer.IsByteLevel);
        Assert.Equal(384, tokenizer.VocabSize);
        Assert.Equal(259, tokenizer.SentinelId(0));
        Assert.Equal(383, tokenizer.SentinelId(124));
    }

    [Fact]
    public void TokenizerConfigChoosesByT5AndItsExtraIds()
    {
        Write("tokenizer_config.json", """{"tokenizer_class": "ByT5Tokenizer", "extra_ids": 3}""");
        File.Copy(Fixtures.SpieceModel, Path.Combine(_dir, "spiece.model"));   // the class wins over a stray spiece.model
        var tokenizer = T5Tokenizer.FromDirectory(_dir);
        Assert.True(tokenizer.IsByteLevel);
        Assert.Equal(262, tokenizer.VocabSize);
    }

    [Fact]
    public void T5TokenizerClassUsesSpieceModel()
    {
        Write("config.json", """{"tokenizer_class": "T5Tokenizer"}""");
        File.Copy(Fixtures.SpieceModel, Path.Combine(_dir, "spiece.model"));
        Assert.False(T5Tokenizer.FromDirectory(_dir).IsByteLevel);
    }

    [Theory]
    [InlineData("config.json")]
    [InlineData("tokenizer_config.json")]
    public void UnknownTokenizerClassFailsNamingTheFile(string file)
    {
        string path = Write(file, """{"tokenizer_class": "LlamaTokenizer"}""");
        File.Copy(Fixtures.SpieceModel, Path.Combine(_dir, "spiece.model"));
        var e = Assert.Throws<TokenizerException>(() => T5Tokenizer.FromDirectory(_dir));
        Assert.Equal(path, e.Path);
        Assert.Contains(path, e.Message);
        Assert.Contains("LlamaTokenizer", e.Message);
        Assert.Contains("ByT5Tokenizer", e.Message);
    }

    [Theory]
    [InlineData("{\"tokenizer_class\": ")]
    [InlineData("[1, 2]")]
    [InlineData("{\"tokenizer_class\": 7}")]
    [InlineData("{\"extra_ids\": -1}")]
    [InlineData("")]
    public void CorruptTokenizerConfigFailsNamingIt(string content)
    {
        string path = Write("tokenizer_config.json", content);
        File.Copy(Fixtures.SpieceModel, Path.Combine(_dir, "spiece.model"));
        var e = Assert.Throws<TokenizerException>(() => T5Tokenizer.FromDirectory(_dir));
        Assert.Equal(path, e.Path);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void FolderWithoutAnyTokenizerSaysWhatWasExpected()
    {
        Write("tokenizer_config.json", """{"eos_token": "</s>"}""");
        var e = Assert.Throws<TokenizerException>(() => T5Tokenizer.FromDirectory(_dir));
        Assert.Contains(_dir, e.Message);
        Assert.Contains("spiece.model", e.Message);
        Assert.Contains("ByT5Tokenizer", e.Message);
    }

    // ------------------------------------------------------------------------------------------------
    // ByT5 decoding
    // ------------------------------------------------------------------------------------------------

    private static int[] Bytes(string text) => Encoding.UTF8.GetBytes(text).Select(b => b + 3).ToArray();

    [Fact]
    public void ByT5DecodingNeverEmitsHalfACharacter()
    {
        var tokenizer = Fixtures.ByT5;
        int[] ids = Bytes("aé😀中b");
        string full = tokenizer.Decode(ids);
        Assert.Equal("aé😀中b", full);
        for (int k = 0; k <= ids.Length; k++)
        {
            // Each prefix decodes to a prefix of the whole: a cut-off character is left out, never half-made.
            string prefix = tokenizer.Decode(ids.AsSpan(0, k));
            Assert.StartsWith(prefix, full, StringComparison.Ordinal);
            Assert.DoesNotContain('\uFFFD', prefix);
            Assert.False(prefix.Length > 0 && char.IsHighSurrogate(prefix[^1]));
        }
    }

    [Fact]
    public void ByT5DropsInvalidUtf8AsPythonIgnores()
    {
        var tokenizer = Fixtures.ByT5;
        // b"\xff a \xc3 \xe2\x82 b \xc3\xa9".decode("utf-8", errors="ignore") == "abé"
        int[] ids = [0xFF + 3, 'a' + 3, 0xC3 + 3, 0xE2 + 3, 0x82 + 3, 'b' + 3, 0xC3 + 3, 0xA9 + 3, 1, 500];
        Assert.Equal("abé", tokenizer.Decode(ids));
        Assert.Equal("abé</s>", tokenizer.Decode(ids, skipSpecialTokens: false));
    }

    // ------------------------------------------------------------------------------------------------
    // Hostile text in every mode
    // ------------------------------------------------------------------------------------------------

    public static TheoryData<string> Modes() => ["slow", "fast", "text", "byt5", "byt5-text"];

    private static Func<string, int[]> Encoder(string mode) => mode switch
    {
        "slow" => t => Fixtures.Spiece.Encode(t),
        "fast" => t => Fixtures.Spiece.WithCompat(TokenizerCompat.Fast).Encode(t),
        "text" => t => Fixtures.Spiece.Encode(t, parseSpecialTokens: false),
        "byt5" => t => Fixtures.ByT5.Encode(t),
        _ => t => Fixtures.ByT5.Encode(t, parseSpecialTokens: false),
    };

    [Theory]
    [MemberData(nameof(Modes))]
    public void LoneSurrogatesAndNulEncodeInEveryMode(string mode)
    {
        var encode = Encoder(mode);
        foreach (string text in new[] { "\uD800", "a\uDC00b <extra_id_0>\uD83D", "\0", "x\0<extra_id_1>\0y", "</s>\0", " \uDE00 " })
        {
            int[] ids = encode(text);
            Assert.Equal(1, ids[^1]);
            Assert.Equal(ids, encode(text.Replace('\uD800', '\uFFFD').Replace('\uDC00', '\uFFFD').Replace('\uD83D', '\uFFFD').Replace('\uDE00', '\uFFFD')));
        }
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void TenMegabytesFullOfSpecialTokensEncodeInSeconds(string mode)
    {
        var encode = Encoder(mode);
        const string unit = "a <extra_id_1> <</s><pad <unk>> <extra_id_ <extra_id_99 x<<<";
        var sb = new StringBuilder(10_000_000 + unit.Length);
        while (sb.Length < 10_000_000) sb.Append(unit);
        string text = sb.ToString();
        var watch = Stopwatch.StartNew();
        int[] ids = encode(text);
        watch.Stop();
        Assert.True(ids.Length > text.Length / 20);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"10 MB took {watch.Elapsed} in mode {mode}");
    }
}
