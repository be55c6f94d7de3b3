// The managedt5 command line against hostile and careless input, run as a real process: unknown options and bad values
// end in one line naming the flag and a non-zero exit code; bulk input files, JSON streaming, help text and --cache-dir.
using System.Diagnostics;
using System.Text.Json;

namespace ManagedT5.Tests;

public sealed class CliStrictTests
{
    private static readonly string Tiny = Fixtures.Model("tiny-flan-t5");

    /// <summary>Runs the CLI with <paramref name="stdin"/> as its standard input (closed after writing).</summary>
    private static (int Code, string Out, string Err) RunWithInput(string stdin, IDictionary<string, string>? environment, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true,
            StandardInputEncoding = new System.Text.UTF8Encoding(false),
        };
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) info.Environment[k] = v;
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "ManagedT5.Cli.dll"));
        foreach (string a in args) info.ArgumentList.Add(a);
        using Process p = Process.Start(info)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync(), stderr = p.StandardError.ReadToEndAsync();
        p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        Assert.True(p.WaitForExit(120_000), "the CLI did not finish");
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>A usage error: exit code 2 and exactly one line on stderr that starts with "error: ", with no stack
    /// trace, no help text, no "(Parameter ...)" or "Actual value was" and no snake_case option names.</summary>
    private static string AssertUsageError((int Code, string Out, string Err) run, string command)
    {
        string line = AssertOneLine(run);
        Assert.True(run.Code == 2, $"exit code {run.Code}: {run.Err}");
        Assert.Contains($"managedt5 {command} --help", line);
        return line;
    }

    private static string AssertOneLine((int Code, string Out, string Err) run)
    {
        Assert.NotEqual(0, run.Code);
        string[] lines = run.Err.TrimEnd('\n', '\r').Split('\n');
        Assert.True(lines.Length == 1, $"expected one line on stderr, got:\n{run.Err}");
        string line = lines[0];
        Assert.StartsWith("error: ", line);
        foreach (string bad in new[] { "   at ", "Usage:", "(Parameter", "Actual value was", "num_beams", "num_return_sequences", "Nullable" })
            Assert.DoesNotContain(bad, line);
        return line;
    }

    [Theory]
    [InlineData("--bogus", "generate", "--bogus", "hi")]
    [InlineData("--max-new-token", "generate", "--max-new-token", "3", "hi")]
    [InlineData("-x", "generate", "hi", "-x")]
    [InlineData("--bogus", "tokenize", "--bogus", "hi")]
    [InlineData("--bogus", "detokenize", "--bogus", "1")]
    [InlineData("--bogus", "inspect", "--bogus")]
    [InlineData("--bogus", "trace", "--bogus", "hi")]
    [InlineData("--bogus", "bench", "--config", "c.json", "--bogus")]
    public void EveryCommandRejectsUnknownOptions(string flag, string command, params string[] args)
    {
        string line = AssertUsageError(CliTests.Run([command, .. args, "--model", Tiny]), command);
        Assert.Contains($"unknown option '{flag}'", line);
    }

    [Fact]
    public void AMistypedOptionSuggestsTheRealOne()
    {
        string line = AssertUsageError(CliTests.Run("generate", "--model", Tiny, "--max-new-token", "3", "hi"), "generate");
        Assert.Contains("--max-new-tokens", line);
    }

    [Fact]
    public void PromptsThatStartWithADashGoAfterDoubleDash()
    {
        var (code, output, error) = CliTests.Run("tokenize", "--model", Tiny, "--json", "--", "-x", "--bogus");
        Assert.True(code == 0, error);
        using JsonDocument doc = JsonDocument.Parse(output);
        Assert.Equal(2, doc.RootElement.GetProperty("ids").GetArrayLength());
        string help = CliTests.Run("generate", "--help").Out;
        Assert.Contains("after --", help);
    }

    [Theory]
    [InlineData("error: --num-beams: 'abc' is not an integer", "--num-beams", "abc", "x")]
    [InlineData("error: --num-beams: '99999999999' is not an integer", "--num-beams", "99999999999", "x")]
    [InlineData("error: --num-beams: must be at least 1, got 0.", "--num-beams", "0", "x")]
    [InlineData("error: --num-beams: needs a value", "x", "--num-beams")]
    [InlineData("error: --num-return-sequences: (3) must not exceed --num-beams (2).", "--num-beams", "2", "--num-return-sequences", "3", "x")]
    [InlineData("error: --top-p: must be in (0, 1], got 2.", "--do-sample", "true", "--top-p", "2", "x")]
    [InlineData("error: --threads: ", "--threads", "-1", "x")]
    [InlineData("error: --temperature: 'warm' is not a number", "--temperature", "warm", "x")]
    [InlineData("error: --do-sample: ", "--do-sample", "true", "--num-beams", "2", "x")]
    [InlineData("error: --seed: '-1' is not an integer", "--seed", "-1", "x")]
    [InlineData("error: --device: 'tpu' is not a device", "--device", "tpu", "x")]
    [InlineData("error: --early-stopping: 'maybe' is not true, false or never.", "--early-stopping", "maybe", "x")]
    public void BadValuesNameTheFlagInOneLine(string expected, params string[] args)
    {
        string line = AssertUsageError(CliTests.Run(["generate", "--model", Tiny, .. args]), "generate");
        Assert.StartsWith(expected, line);
    }

    /// <summary>Sizes too large for the buffers end in one line whatever layer catches them (the engine's checks, or
    /// the CLI's last resort for an OverflowException / OutOfMemoryException); MANAGEDT5_DEBUG=1 shows the trace.</summary>
    [Fact]
    public void AbsurdSizesEndInOneLineAndTheTraceOnlyOnRequest()
    {
        string[] args = ["generate", "--model", Tiny, "--num-beams", "70000", "x"];
        string line = AssertOneLine(CliTests.Run(args));
        Assert.Contains("generat", line);      // says what it was doing (or names the option)

        var (code, _, error) = CliTests.RunIn(null, new Dictionary<string, string> { ["MANAGEDT5_DEBUG"] = "1" }, args);
        Assert.NotEqual(0, code);
        Assert.StartsWith("error: ", error);
        Assert.Contains("   at ", error);
    }

    [Fact]
    public void BeamScoresThatAreMinusInfinityAreWrittenAsJsonNull()
    {
        // HF scores a beam whose every continuation was banned -inf; System.Text.Json refuses to write that.
        float?[] scores = ManagedT5.Cli.GenerateCommand.JsonScores([-1.5f, float.NegativeInfinity, float.NaN]);
        Assert.Equal("[-1.5,null,null]", System.Text.Json.JsonSerializer.Serialize(scores));
    }

    [Fact]
    public void LastResortNamesTheFailureAndWhatWasBeingDone()
    {
        Assert.Equal("error: out of memory while generating; ask for less (fewer or shorter prompts, fewer beams or return sequences, --dtype int8).",
            ManagedT5.Cli.CliCommon.Describe(new OutOfMemoryException(), "generating"));
        Assert.Equal("error: a size overflowed while generating; ask for less (fewer or shorter prompts, fewer beams or return sequences).",
            ManagedT5.Cli.CliCommon.Describe(new OverflowException(), "generating"));
        Assert.Equal("error: unexpected NullReferenceException while loading: boom \\u001B[31m two (set MANAGEDT5_DEBUG=1 for the stack trace).",
            ManagedT5.Cli.CliCommon.Describe(new NullReferenceException("boom \u001b[31m\ntwo"), "loading"));
    }

    [Fact]
    public void InputFileGivesOnePromptPerLineFromAFileOrStdin()
    {
        ReferenceJson reference = ReferenceJson.Load("tiny-flan-t5");
        string[] expected = reference.Cases.Single(c => c.Name == "greedy").Texts;
        string file = Path.GetTempFileName();
        try
        {
            // CRLF, a BOM and a trailing newline: two prompts, no empty third one.
            File.WriteAllText(file, $"\uFEFF{reference.Texts[0]}\r\n{reference.Texts[2]}\r\n", new System.Text.UTF8Encoding(false));
            var (code, output, error) = CliTests.Run("generate", "--model", Tiny, "--max-new-tokens", "20", "--input-file", file);
            Assert.True(code == 0, error);
            Assert.Equal([expected[0], expected[2]], output.TrimEnd('\n').Split('\n'));

            (code, output, error) = RunWithInput($"{reference.Texts[2]}\n", null, "tokenize", "--model", Tiny, "--json", "--input-file", "-");
            Assert.True(code == 0, error);
            using (JsonDocument doc = JsonDocument.Parse(output))
                Assert.Equal(reference.InputIds[2], doc.RootElement.GetProperty("ids")[0].EnumerateArray().Select(x => x.GetInt32()).ToArray());

            File.WriteAllText(file, "one\n\nthree\n");
            string line = AssertUsageError(CliTests.Run("tokenize", "--model", Tiny, "--input-file", file), "tokenize");
            Assert.Contains("--input-file", line);
            Assert.Contains("line 2", line);

            line = AssertUsageError(CliTests.Run("generate", "--model", Tiny, "--input-file", file, "x"), "generate");
            Assert.Contains("--input-file", line);

            string missing = Path.Combine(Path.GetTempPath(), $"mt5-no-such-{Guid.NewGuid():N}.txt");
            line = AssertUsageError(CliTests.Run("generate", "--model", Tiny, "--input-file", missing), "generate");
            Assert.Contains(missing, line);
        }
        finally { File.Delete(file); }
    }

    [Fact]
    public void JsonStreamPrintsJsonLinesEndingWithTheIds()
    {
        ReferenceJson reference = ReferenceJson.Load("tiny-flan-t5");
        GenerationCase greedy = reference.Cases.Single(c => c.Name == "greedy");
        var (code, output, error) = CliTests.Run("generate", "--model", Tiny, "--max-new-tokens", "20", "--json", "--stream", reference.Texts[0]);
        Assert.True(code == 0, error);
        string[] lines = output.TrimEnd('\n').Split('\n');
        Assert.True(lines.Length >= 2, output);
        var docs = lines.Select(l => JsonDocument.Parse(l)).ToArray();
        string text = string.Concat(docs[..^1].Select(d => d.RootElement.GetProperty("text").GetString()));
        Assert.Equal(greedy.Texts[0], text);
        JsonElement last = docs[^1].RootElement;
        Assert.Equal(greedy.Texts[0], last.GetProperty("texts")[0].GetString());
        int[] sequence = last.GetProperty("sequences")[0].EnumerateArray().Select(x => x.GetInt32()).ToArray();
        Assert.Equal(greedy.Sequences[0].TakeWhile((t, i) => i == 0 || greedy.Sequences[0][i - 1] != 1), sequence);
        Assert.Equal("eos", last.GetProperty("finish_reason").GetString());
        foreach (var d in docs) d.Dispose();
    }

    [Fact]
    public void HelpCallsTheToolManagedt5AndShowsMeaningsAndHuggingFaceDefaults()
    {
        var (code, help, _) = CliTests.Run("generate", "--help");
        Assert.Equal(0, code);
        Assert.Contains("managedt5 generate", help);
        Assert.DoesNotContain("ManagedT5.Cli", help);
        Assert.Matches(@"--num-beams <[^>]+> +Beam search width; 1 = greedy or sampling \[HF default: 1\]", help);
        Assert.Matches(@"--top-k <[^>]+> +.*\[HF default: 50\]", help);
        Assert.Matches(@"--max-length <[^>]+> +.*\[HF default: 20\]", help);
        Assert.Contains("--input-file", help);
        Assert.Contains("--cache-dir", help);
        Assert.Contains("HF_HUB_CACHE", help);
        Assert.Contains("managedt5", CliTests.Run("--help").Out);
        Assert.DoesNotContain("ManagedT5.Cli", CliTests.Run("--help").Out);
    }

    [Theory]
    [InlineData("row 2", "1,2;;3")]
    [InlineData("row 1", "")]
    [InlineData("row 2", "1,2; ,")]
    public void AnEmptyInputIdsRowIsAnError(string mention, string ids)
    {
        string line = AssertUsageError(CliTests.Run("generate", "--model", Tiny, "--input-ids", ids), "generate");
        Assert.Contains("--input-ids", line);
        Assert.Contains(mention, line);
    }

    [Fact]
    public void AFileGivenAsModelIsNotAFolder()
    {
        string file = Path.Combine(Tiny, "config.json");
        string line = AssertUsageError(CliTests.Run("generate", "--model", file, "x"), "generate");
        Assert.Contains("--model", line);
        Assert.Contains("not a folder", line);
        Assert.Contains(file, line);
    }

    /// <summary>Every command that reads a text file decodes it with one strict UTF-8 reader (InputFile.DecodeUtf8): a
    /// file that is not UTF-8 is one error naming the option, the file and the line, never replacement characters.</summary>
    [Theory]
    [InlineData("generate", "--input-file", "input-file")]
    [InlineData("score", "--hyps", "hyps")]
    [InlineData("finetune", "--data", "data")]
    public void AFileThatIsNotUtf8NamesItsLine(string command, string option, string named)
    {
        string dir = Directory.CreateTempSubdirectory("mt5-not-utf8-").FullName;
        try
        {
            string file = Path.Combine(dir, "bad.txt");
            byte[] latin1 = System.Text.Encoding.Latin1.GetBytes(command == "finetune"
                ? "{\"input\": \"a\", \"target\": \"b\"}\n{\"input\": \"caf\u00e9\", \"target\": \"b\"}\n"
                : "good line\ncaf\u00e9\n");
            File.WriteAllBytes(file, latin1);
            string[] args = command switch
            {
                "generate" => ["generate", "--model", Tiny, option, file],
                "score" => ["score", option, file, "--refs", file],
                _ => ["finetune", "--model", Tiny, option, file, "--out", Path.Combine(dir, "out")],
            };
            string line = AssertOneLine(CliTests.Run(args));
            Assert.Contains(named, line);
            Assert.Contains("line 2 of", line);
            Assert.Contains("bad.txt", line);
            Assert.Contains("not valid UTF-8", line);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void DetokenizeAcceptsSpaceSeparatedIds()
    {
        var (code, output, error) = CliTests.Run("detokenize", "--model", Tiny, "--skip-special-tokens", "8774 296 1");
        Assert.True(code == 0, error);
        Assert.Equal("Hello world", output.Trim());
    }

    /// <summary>--cache-dir is HF's cache_dir: a hub id is found in that cache (huggingface_hub's layout), offline, from
    /// any command and any working directory.</summary>
    [Fact]
    public void CacheDirPointsHubIdsAtAHuggingFaceCache()
    {
        string work = Directory.CreateTempSubdirectory("mt5-cache-dir-").FullName;
        try
        {
            string commit = new string('a', 40);
            string repo = Path.Combine(work, "cache", "models--test-org--tiny-flan-t5");
            string snapshot = Directory.CreateDirectory(Path.Combine(repo, "snapshots", commit)).FullName;
            foreach (string f in new[] { "config.json", "generation_config.json", "model.safetensors", "spiece.model" })
                File.Copy(Path.Combine(Tiny, f), Path.Combine(snapshot, f));
            Directory.CreateDirectory(Path.Combine(repo, "refs"));
            File.WriteAllText(Path.Combine(repo, "refs", "main"), commit);
            // An empty HF_HOME and working directory: only --cache-dir can supply the model.
            var env = new Dictionary<string, string> { ["HF_HOME"] = Path.Combine(work, "hf"), ["HF_HUB_CACHE"] = "", ["HF_HUB_OFFLINE"] = "1" };
            var (code, output, error) = CliTests.RunIn(work, env, "--cache-dir", Path.Combine(work, "cache"), "tokenize",
                "--model", "test-org/tiny-flan-t5", "Hello world");
            Assert.True(code == 0, error);
            Assert.StartsWith("8774 296 1", output);

            (code, output, error) = CliTests.RunIn(work, env, "detokenize", "--model", "test-org/tiny-flan-t5", "--cache-dir",
                Path.Combine(work, "cache"), "8774", "296");
            Assert.True(code == 0, error);
            Assert.Equal("Hello world", output.Trim());
        }
        finally { Directory.Delete(work, true); }
    }
}
