// managedt5 finetune as a real process on the fixture data: full and LoRA runs whose --json step lines match the
// PyTorch/PEFT reference (reference.json) step by step, the final summary line, the saved model or adapter, --resume
// continuing as a straight run does (with dropout on: the checkpoint carries dropout_rate / lora_dropout), and bad input (non-empty --out, malformed or empty JSONL, an adapter that does not
// fit, a dropout rate of 1 or more) each giving one stderr line and a non-zero exit; Ctrl+C (SIGINT) saving a checkpoint, exit 130.
using System.Diagnostics;
using System.Text.Json;
using ManagedT5.Adapters;

namespace ManagedT5.Tests;

public sealed class FinetuneCliTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("managedt5-finetune-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    static string Model => Fixtures.Model("tiny-flan-t5");
    static string Training => Path.Combine(Fixtures.Root, "training");
    static string Data => Path.Combine(Training, "instructions.jsonl");

    // The reference runs' settings (fixture README): batch 4 in file order, warmup 2, linear decay over 8 steps, clip 1.
    static string[] Args(string outDir, int steps, params string[] more) =>
        ["finetune", "--model", Model, "--data", Data, "--out", outDir, "--max-steps", steps.ToString(), "--batch-size", "4",
         "--no-shuffle", "--warmup-steps", "2", "--json", "--threads", "2", .. more];

    static List<JsonElement> Lines(string stdout) =>
        stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();

    static (double Loss, double Lr, double GradNorm)[] Reference(string run) =>
        JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Training, "tiny-flan-t5", "reference.json"))).RootElement
            .GetProperty(run).GetProperty("log").EnumerateArray()
            .Select(e => (e.GetProperty("loss").GetDouble(), e.GetProperty("lr").GetDouble(), e.GetProperty("grad_norm").GetDouble())).ToArray();

    static void AssertMatchesReference(List<JsonElement> lines, string run)
    {
        var reference = Reference(run);
        Assert.Equal(reference.Length + 1, lines.Count);
        for (int k = 0; k < reference.Length; k++)
        {
            JsonElement l = lines[k];
            Assert.Equal(k + 1, l.GetProperty("step").GetInt32());
            Assert.True(Math.Abs(l.GetProperty("loss").GetDouble() - reference[k].Loss) <= 2e-5, $"{run} step {k + 1}: {l}");
            Assert.Equal(reference[k].Lr, l.GetProperty("learning_rate").GetDouble(), 12);
            // reference.json's logged norms: 5e-5 relative (see FullFinetuneParityTests in ManagedT5.Training.Tests).
            Assert.True(Math.Abs(l.GetProperty("grad_norm").GetDouble() - reference[k].GradNorm) <= 5e-5 * reference[k].GradNorm, $"{run} step {k + 1}: {l}");
            Assert.Equal(JsonValueKind.Null, l.GetProperty("eval_loss").ValueKind);
        }
    }

    [Fact]
    public void Full_fine_tuning_matches_PyTorch_step_by_step_and_saves_a_model_folder()
    {
        string outDir = Path.Combine(_dir, "full");
        // The reference runs without dropout (fixture README): 0 given explicitly, not left to the fixture's config.json.
        var (code, stdout, stderr) = CliTests.Run(Args(outDir, 8, "--learning-rate", "1e-3", "--weight-decay", "0.01", "--save-steps", "0", "--dropout-rate", "0"));
        Assert.True(code == 0, stderr);
        List<JsonElement> lines = Lines(stdout);
        AssertMatchesReference(lines, "full_ft");
        JsonElement summary = lines[^1];
        Assert.Equal(outDir, summary.GetProperty("output").GetString());
        Assert.False(summary.GetProperty("lora").GetBoolean());
        Assert.Equal(8, summary.GetProperty("steps").GetInt32());
        Assert.Equal(0, summary.GetProperty("dropout_rate").GetDouble());
        Assert.Equal(JsonValueKind.Null, summary.GetProperty("lora_dropout").ValueKind);
        Assert.Equal(24, summary.GetProperty("examples").GetInt32());
        Assert.Equal(0, summary.GetProperty("truncated_inputs").GetInt32());
        Assert.True(summary.GetProperty("tokens_per_second").GetDouble() > 0);
        foreach (string f in new[] { "config.json", "generation_config.json", "model.safetensors", "spiece.model", "trainer_state.json" })
            Assert.True(File.Exists(Path.Combine(outDir, f)), f);

        // A non-empty --out is refused (one line, naming the folder and the way out) and left as it was.
        (code, stdout, stderr) = CliTests.Run(Args(outDir, 1));
        Assert.NotEqual(0, code);
        Assert.Equal("", stdout);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.Contains(outDir, stderr);
        Assert.Contains("overwrite-output-dir", stderr.Replace('_', '-'));
    }

    [Fact]
    public void LoRA_from_an_adapter_matches_PEFT_step_by_step_and_saves_the_adapter()
    {
        string outDir = Path.Combine(_dir, "lora");
        var (code, stdout, stderr) = CliTests.Run(Args(outDir, 8, "--learning-rate", "5e-3", "--save-steps", "0", "--dropout-rate", "0",
            "--lora-init", Path.Combine(Training, "tiny-flan-t5", "lora_initial")));
        Assert.True(code == 0, stderr);
        List<JsonElement> lines = Lines(stdout);
        AssertMatchesReference(lines, "lora");
        Assert.True(lines[^1].GetProperty("lora").GetBoolean());
        Assert.False(File.Exists(Path.Combine(outDir, "model.safetensors")));
        LoraAdapter saved = LoraAdapter.Load(outDir), expected = LoraAdapter.Load(Path.Combine(Training, "tiny-flan-t5", "lora_final"));
        double worst = saved.Modules.Zip(expected.Modules).Max(p => p.First.A.Zip(p.Second.A).Concat(p.First.B.Zip(p.Second.B)).Max(x => Math.Abs(x.First - x.Second)));
        Assert.True(worst <= 2e-5, $"adapter {worst:E2} from lora_final");
    }

    [Fact]
    public void A_new_adapter_takes_PEFTs_options_and_resume_continues_as_a_straight_run()
    {
        foreach (bool lora in new[] { false, true })
        {
            string straight = Path.Combine(_dir, $"straight-{lora}"), resumed = Path.Combine(_dir, $"resumed-{lora}");
            // Dropout on (the model's 0.1, LoRA's 0.2): the resumed run is not told them; the checkpoint's config.json or
            // adapter_config.json carries them, and the masks depend on (seed, step, micro-batch) only.
            string[] extra = lora ? ["--lora-r", "2", "--lora-alpha", "4", "--lora-target-modules", "q,k", "wo", "--lora-dropout", "0.2", "--learning-rate", "5e-3"] : ["--learning-rate", "1e-3"];
            var (code, stdout, stderr) = CliTests.Run(Args(straight, 4, [.. extra, "--save-steps", "2", "--dropout-rate", "0.1"]));
            Assert.True(code == 0, stderr);
            List<JsonElement> all = Lines(stdout);
            Assert.Equal(0.1, all[^1].GetProperty("dropout_rate").GetDouble());
            if (lora) Assert.Equal(0.2, all[^1].GetProperty("lora_dropout").GetDouble());
            string checkpoint = Path.Combine(straight, "checkpoint-2");
            Assert.Equal(lora, File.Exists(Path.Combine(checkpoint, LoraAdapter.ConfigFileName)));
            string[] again = lora ? [.. extra[^2..], "--dropout-rate", "0.1"] : extra;   // LoRA resumes on the base model (dropout_rate 0 here)
            (code, stdout, stderr) = CliTests.Run(Args(resumed, 4, [.. again, "--save-steps", "2", "--resume", checkpoint]));
            Assert.True(code == 0, stderr);
            List<JsonElement> rest = Lines(stdout);
            Assert.Equal(0.1, rest[^1].GetProperty("dropout_rate").GetDouble());
            if (lora) Assert.Equal(0.2, rest[^1].GetProperty("lora_dropout").GetDouble());
            Assert.Equal(3, rest.Count);   // steps 3 and 4, the summary
            for (int k = 0; k < 2; k++)
                foreach (string f in new[] { "step", "loss", "learning_rate", "grad_norm" })
                    Assert.Equal(all[k + 2].GetProperty(f).GetRawText(), rest[k].GetProperty(f).GetRawText());
            if (lora)
            {
                LoraAdapter a = LoraAdapter.Load(straight), b = LoraAdapter.Load(resumed);
                Assert.Equal(2, a.Config.R);
                Assert.Equal(0.2, a.Config.LoraDropout);
                Assert.Equal(4, a.Config.LoraAlpha);
                Assert.Equal(["encoder.block.0.layer.0.SelfAttention.q", "encoder.block.0.layer.0.SelfAttention.k", "encoder.block.0.layer.1.DenseReluDense.wo"],
                             a.Modules.Take(3).Select(m => m.Module));
                Assert.All(a.Modules.Zip(b.Modules), p => Assert.Equal(p.First.B, p.Second.B));
            }
            else
                Assert.Equal(File.ReadAllBytes(Path.Combine(straight, "model.safetensors")), File.ReadAllBytes(Path.Combine(resumed, "model.safetensors")));
        }
    }

    [Fact]
    public void Bad_input_gives_one_line_naming_what_to_fix()
    {
        string bad = Path.Combine(_dir, "bad.jsonl"), empty = Path.Combine(_dir, "empty.jsonl");
        File.WriteAllText(bad, "{\"input\": \"a\", \"target\": \"b\"}\n{\"input\": \"a\", \"target\": \n");
        File.WriteAllText(empty, "\n\n");
        // An adapter whose first module is [32, 16] where the model's q is [inner, d_model]: named in the error.
        LoraAdapter initial = LoraAdapter.Load(Path.Combine(Training, "tiny-flan-t5", "lora_initial"));
        LoraModule first = initial.Modules[0];
        var misfit = new LoraAdapter(initial.Config, [first with { InFeatures = 16, A = new float[initial.Config.R * 16] }, .. initial.Modules.Skip(1)]);
        string misfitDir = Path.Combine(_dir, "misfit");
        misfit.Save(misfitDir);

        (string[] Args, string[] Expect)[] cases =
        [
            (["finetune", "--model", Model, "--data", bad, "--out", Path.Combine(_dir, "o1")], [bad, "line 2"]),
            (["finetune", "--model", Model, "--data", empty, "--out", Path.Combine(_dir, "o2")], [empty, "no examples"]),
            (["finetune", "--model", Model, "--data", Data, "--out", Path.Combine(_dir, "o3"), "--lora-init", misfitDir], [misfitDir, first.Module]),
            (["finetune", "--model", Model, "--data", Data, "--out", Path.Combine(_dir, "o4"), "--lora-dropout", "1.5"], ["--lora-dropout", "1.5"]),
            (["finetune", "--model", Model, "--data", Data, "--out", Path.Combine(_dir, "o7"), "--dropout-rate", "1"], ["--dropout-rate", "below 1"]),
            (["finetune", "--model", Model, "--data", Data, "--out", Path.Combine(_dir, "o5"), "--lora-init", misfitDir, "--lora-r", "4"], ["init", "--lora-r"]),
            (["finetune", "--model", Model, "--data", Data, "--out", Path.Combine(_dir, "o6"), "--lora-r", "0"], ["at least 1"]),
        ];
        foreach (var (args, expect) in cases)
        {
            var (code, stdout, stderr) = CliTests.Run(args);
            Assert.NotEqual(0, code);
            Assert.Equal("", stdout);
            Assert.Single(stderr.Trim().Split('\n'));
            Assert.DoesNotContain("   at ", stderr);
            foreach (string e in expect) Assert.Contains(e, stderr);
        }
    }

    [SkippableFact]
    public async Task Ctrl_C_saves_a_resumable_checkpoint_and_exits_130()
    {
        if (OperatingSystem.IsWindows()) return;   // SIGINT is sent with kill(1)
        // A process started in the background by a non-interactive shell (`cmd &` in a script) has SIGINT ignored, the
        // CLI inherits that, and .NET leaves an ignored SIGINT ignored: the signal could not reach the CLI at all.
        Skip.If(SigIntIgnored(), "SIGINT is ignored in this test process (started in the background by a non-interactive shell), so the CLI would inherit that; run the tests in the foreground");
        string outDir = Path.Combine(_dir, "interrupted");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "ManagedT5.Cli.dll"));
        foreach (string a in Args(outDir, 100_000, "--save-steps", "0")) info.ArgumentList.Add(a);
        using Process p = Process.Start(info)!;
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string? first = p.StandardOutput.ReadLine();   // the first step's line: training is under way
        Assert.NotNull(first);
        Assert.Equal(1, JsonDocument.Parse(first).RootElement.GetProperty("step").GetInt32());
        using (Process kill = Process.Start("kill", ["-INT", p.Id.ToString()])!) kill.WaitForExit();
        Task<string> rest = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(60_000))
        {
            p.Kill();
            Assert.Fail("the CLI did not stop within 60 s of SIGINT");
        }
        await rest;
        Assert.Equal(130, p.ExitCode);
        string checkpoint = Directory.GetDirectories(outDir, "checkpoint-*").Single();
        Assert.True(File.Exists(Path.Combine(checkpoint, "optimizer.safetensors")));
        Assert.True(File.Exists(Path.Combine(checkpoint, "model.safetensors")));
        Assert.Contains("--resume " + checkpoint, await stderr);
    }

    /// <summary>Whether this process has SIGINT (signal 2) ignored: bit 1 of SigIgn in /proc/self/status (Linux).</summary>
    private static bool SigIntIgnored()
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status)) return false;
        string? line = File.ReadLines(status).FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        return line is not null && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & 2) != 0;
    }
}
