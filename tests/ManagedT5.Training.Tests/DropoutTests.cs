// Dropout in training (HF's sites and PEFT's lora_dropout): with p = 0 the key changes nothing and the training loss is
// the evaluation loss; with p > 0 evaluation and logits still never drop; the same key gives the same gradients, another
// key others, at any thread count; the fast kernels agree with their scalar twins; the twins' gradients with dropout on
// match central finite differences of the training loss under the same fixed masks (small random models, both
// architectures, full and LoRA); the rates come from config.json unless the options override them.
using ManagedT5.Adapters;
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu.Training;
using ManagedT5.Loading;

namespace ManagedT5.Training.Tests;

public sealed class DropoutTests(ITestOutputHelper output)
{
    static readonly ulong KeyA = DropoutMask.RunKey(42, 1, 0), KeyB = DropoutMask.RunKey(42, 2, 0);

    static TrainingBatch FixtureBatch()
    {
        using SafeTensorsFile reference = SafeTensorsFile.Open(Path.Combine(TrainingModelFixtures.Training("tiny-flan-t5"), "grads.safetensors"));
        return TrainingModelFixtures.Batch(reference);
    }

    static T5TrainingModel Fixture(double? rate, int threads = 2, double loraDropout = -1)
    {
        T5TrainingModel model = T5TrainingModel.Load(TrainingModelFixtures.Model("tiny-flan-t5"), new TrainingModelOptions { Threads = threads, DropoutRate = rate });
        if (loraDropout >= 0)
        {
            LoraAdapter initial = LoraAdapter.Load(Path.Combine(TrainingModelFixtures.Training("tiny-flan-t5"), "lora_initial"));
            model.AttachLora(new LoraAdapter(initial.Config with { LoraDropout = loraDropout }, initial.Modules));
        }
        return model;
    }

    static float[][] Step(T5TrainingModel model, TrainingBatch batch, ulong key, out float loss)
    {
        model.ZeroGrad();
        loss = model.ForwardBackward(batch, 1f, key);
        return [.. model.TrainableParameters.Select(p => (float[])p.Grad.Clone())];
    }

    [Fact]
    public void The_rate_comes_from_config_json_unless_the_options_give_one()
    {
        using T5TrainingModel fromConfig = Fixture(null);
        Assert.Equal(0.0, fromConfig.Config.DropoutRate);   // the fixture's config.json says 0.0
        using T5TrainingModel given = Fixture(0.1);
        Assert.Equal(0.1, given.Config.DropoutRate);
        // HF's default when config.json has no dropout_rate.
        string dir = Directory.CreateTempSubdirectory("managedt5-dropout-config-").FullName;
        try
        {
            string json = File.ReadAllText(Path.Combine(TrainingModelFixtures.Model("tiny-flan-t5"), "config.json"));
            File.WriteAllText(Path.Combine(dir, "config.json"), json.Replace("\"dropout_rate\": 0.0,", ""));
            Assert.Equal(0.1, T5Config.Load(Path.Combine(dir, "config.json")).DropoutRate);
            File.WriteAllText(Path.Combine(dir, "config.json"), json.Replace("\"dropout_rate\": 0.0,", "\"dropout_rate\": 1.5,"));
            Assert.Contains("dropout_rate", Assert.Throws<ModelLoadException>(() => T5Config.Load(Path.Combine(dir, "config.json"))).Message);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Rate_zero_ignores_the_key_and_trains_on_the_evaluation_loss()
    {
        TrainingBatch batch = FixtureBatch();
        using T5TrainingModel model = Fixture(0);
        float[][] a = Step(model, batch, KeyA, out float lossA), b = Step(model, batch, KeyB, out float lossB);
        Assert.Equal(lossA, lossB);
        for (int i = 0; i < a.Length; i++) Assert.Equal(a[i], b[i]);
        Assert.Equal(lossA, model.Loss(batch));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Dropout_changes_training_but_never_evaluation(bool lora)
    {
        TrainingBatch batch = FixtureBatch();
        using T5TrainingModel plain = Fixture(0, loraDropout: lora ? 0 : -1), dropped = Fixture(lora ? 0 : 0.1, loraDropout: lora ? 0.3 : -1);
        float[][] g0 = Step(plain, batch, KeyA, out float loss0), g1 = Step(dropped, batch, KeyA, out float loss1);
        Assert.NotEqual(loss0, loss1);
        Assert.Contains(Enumerable.Range(0, g0.Length), i => !g0[i].AsSpan().SequenceEqual(g1[i]));
        // Evaluation (loss and logits) drops nothing: bit for bit the model without dropout, after a training pass too.
        Assert.Equal(plain.Loss(batch), dropped.Loss(batch));
        int size = batch.Batch * batch.TargetLength * plain.Config.VocabSize;
        float[] l0 = new float[size], l1 = new float[size];
        plain.Logits(batch, l0);
        dropped.Logits(batch, l1);
        Assert.Equal(l0, l1);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_same_key_gives_the_same_step_another_key_another_at_any_thread_count(bool lora)
    {
        TrainingBatch batch = FixtureBatch();
        using T5TrainingModel two = Fixture(0.1, threads: 2, loraDropout: lora ? 0.2 : -1), one = Fixture(0.1, threads: 1, loraDropout: lora ? 0.2 : -1);
        float[][] a = Step(two, batch, KeyA, out float lossA), again = Step(two, batch, KeyA, out float lossAgain);
        float[][] b = Step(two, batch, KeyB, out float lossB), single = Step(one, batch, KeyA, out float lossSingle);
        Assert.Equal(lossA, lossAgain);
        Assert.Equal(lossA, lossSingle);   // the forward pass is the same bit for bit on 1 and 2 threads, masks included
        Assert.NotEqual(lossA, lossB);
        for (int i = 0; i < a.Length; i++) Assert.Equal(a[i], again[i]);
        // The weight gradients' products split their sums over threads (so 1 and 2 threads differ in the last bits with
        // or without dropout), so across thread counts the gradients agree to f32 rounding while another key moves them.
        double threads = 0, keys = 0;
        for (int i = 0; i < a.Length; i++)
        {
            threads = Math.Max(threads, Errors.RelativeError(a[i], single[i]));
            keys = Math.Max(keys, Errors.RelativeError(a[i], b[i]));
        }
        using (T5TrainingModel plainTwo = Fixture(0, threads: 2, loraDropout: lora ? 0 : -1), plainOne = Fixture(0, threads: 1, loraDropout: lora ? 0 : -1))
        {
            float[][] p2 = Step(plainTwo, batch, KeyA, out _), p1 = Step(plainOne, batch, KeyA, out _);
            double plain = Enumerable.Range(0, p1.Length).Max(i => Errors.RelativeError(p1[i], p2[i]));
            output.WriteLine($"1 vs 2 threads: worst gradient {threads:E2} of its largest with dropout, {plain:E2} without; another key {keys:E2}");
        }
        Assert.True(threads <= 1e-5, $"1 vs 2 threads: a gradient differs by {threads:E2} of its largest");
        Assert.True(keys >= 1e-2, $"another key moved the gradients by only {keys:E2}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Fast_kernels_with_dropout_match_the_scalar_twins(bool lora)
    {
        TrainingBatch batch = FixtureBatch();
        using T5TrainingModel fast = Fixture(0.1, loraDropout: lora ? 0.2 : -1), twin = Fixture(0.1, loraDropout: lora ? 0.2 : -1);
        twin.Kernels.Twins = TrainingOps.All;
        float[][] f = Step(fast, batch, KeyA, out float lossF), t = Step(twin, batch, KeyA, out float lossT);
        Assert.True(Math.Abs(lossF - lossT) <= 2e-5, $"loss {lossF} vs the twins' {lossT}");
        for (int i = 0; i < f.Length; i++)
        {
            double error = Errors.RelativeError(t[i], f[i]);
            Assert.True(error <= 4e-6, $"{fast.TrainableParameters[i].Name}: fast gradient {error:E2} of its largest from the twins'");
        }
    }

    /// <summary>A small random T5 (vocab 64, d_model 16) so that the scalar twins and many finite differences run quickly.</summary>
    static T5TrainingModel Small(bool gated, double rate) => T5TrainingModel.CreateRandom(new T5Config
    {
        VocabSize = 64, DModel = 16, DKv = 4, DFf = 24, NumLayers = 2, NumDecoderLayers = 2, NumHeads = 2, RelativeAttentionNumBuckets = 8,
        RelativeAttentionMaxDistance = 16, FeedForwardProj = gated ? "gated-gelu" : "relu", DenseActivation = gated ? ActivationKind.GeluNew : ActivationKind.Relu,
        IsGatedAct = gated, TieWordEmbeddings = !gated, DropoutRate = rate,
    }, seed: 5, new TrainingModelOptions { Threads = 1 });

    static TrainingBatch SmallBatch() => TrainingBatch.FromIds([[5, 17, 33, 9, 60, 1], [12, 40, 1]], [[7, 21, 1], [50, 3, 44, 1]], 0);

    [Theory]
    [InlineData(true, false)]
    [InlineData(false, false)]
    [InlineData(true, true)]
    public void Twin_gradients_with_dropout_match_finite_differences_under_the_same_masks(bool gated, bool lora)
    {
        using T5TrainingModel model = Small(gated, rate: 0.3);
        if (lora)
        {
            // Every Linear adapted, A and B random (PEFT starts B at 0, which would leave dA zero), lora_dropout 0.4.
            var config = new LoraConfig { R = 2, LoraAlpha = 4, LoraDropout = 0.4, TargetModules = ["q", "k", "v", "o", "wi_0", "wi_1", "wo"] };
            LoraAdapter created = LoraAdapter.Create(config, model.Modules, model.Config, seed: 3);
            var random = new Random(9);
            model.AttachLora(new LoraAdapter(config, created.Modules.Select(m => m with { B = [.. m.B.Select(_ => (float)(random.NextDouble() - 0.5))] })));
        }
        model.Kernels.Twins = TrainingOps.All;
        TrainingBatch batch = SmallBatch();
        ulong key = DropoutMask.RunKey(1, 3, 0);
        model.ZeroGrad();
        model.ForwardBackward(batch, 1f, key);
        // Without dropout the loss differs: the masks are on.
        Assert.NotEqual(model.TrainingLoss(batch, key), (double)model.Loss(batch));
        var random2 = new Random(11);
        int checkedCount = 0;
        foreach (Parameter p in model.TrainableParameters)
        {
            float[] grad = (float[])p.Grad.Clone();
            // The three largest gradients of the tensor and two random elements.
            IEnumerable<int> picks = Enumerable.Range(0, grad.Length).OrderByDescending(i => Math.Abs(grad[i])).Take(3)
                .Concat(Enumerable.Range(0, 2).Select(_ => random2.Next(grad.Length))).Distinct();
            foreach (int i in picks)
            {
                float keep = p.Value[i];
                const float h = 1e-3f;
                p.Value[i] = keep + h; double plus = model.TrainingLoss(batch, key);
                p.Value[i] = keep - h; double minus = model.TrainingLoss(batch, key);
                p.Value[i] = keep;
                double numeric = (plus - minus) / (2 * h);
                double error = Math.Abs(numeric - grad[i]);
                Assert.True(error <= 0.02 * Math.Max(Math.Abs(numeric), Math.Abs(grad[i])) + 2e-4,
                    $"{p.Name}[{i}]: backward {grad[i]:G6}, finite differences {numeric:G6}");
                checkedCount++;
            }
        }
        output.WriteLine($"{checkedCount} gradient elements checked against finite differences");
    }
}

/// <summary>Dropout through the trainer: masks from (seed, step, micro-batch), so the same seed repeats a run, another seed
/// changes it, and 4 steps + resume 4 equal 8 straight bit for bit with dropout on (full: the checkpoint's config.json
/// carries dropout_rate; LoRA: its adapter_config.json carries lora_dropout).</summary>
public sealed class DropoutTrainerTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("managedt5-dropout-trainer-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    static string BaseDir => TrainerFixtures.Model("tiny-flan-t5");

    static LoraAdapter Initial(double loraDropout)
    {
        LoraAdapter initial = LoraAdapter.Load(Path.Combine(TrainerFixtures.Training("tiny-flan-t5"), "lora_initial"));
        return new LoraAdapter(initial.Config with { LoraDropout = loraDropout }, initial.Modules);
    }

    TrainingResult Run(string name, int steps, bool lora, int seed = 42, string? resume = null, bool shuffle = true)
    {
        // Full: the base model at dropout 0.1, or a checkpoint at the rate its config.json holds. LoRA: the base at 0.1 and
        // the adapter (lora_dropout 0.2, or the checkpoint's).
        string modelDir = !lora && resume is not null ? resume : BaseDir;
        using T5TrainingModel t5 = T5TrainingModel.Load(modelDir, new TrainingModelOptions { Threads = 2, DropoutRate = resume is null || lora ? 0.1 : null });
        if (lora) t5.AttachLora(resume is null ? Initial(0.2) : LoraAdapter.Load(resume));
        var data = new TrainingData(TrainingDataFile.ReadJsonLines(TrainerFixtures.Instructions), ManagedT5.Tokenizer.T5Tokenizer.FromDirectory(BaseDir),
                                    1024, 128, t5.Config.DecoderStartTokenId, shuffle, seed);
        var args = new TrainingArguments
        {
            OutputDir = Path.Combine(_dir, name), MaxSteps = steps, PerDeviceTrainBatchSize = 3, GradientAccumulationSteps = 2, LearningRate = lora ? 5e-3 : 1e-3,
            WarmupSteps = 2, SaveSteps = 4, Seed = seed,
        };
        var trainer = new Trainer(lora ? new LoraTrainable(t5) : new T5Trainable(t5, BaseDir), data, args);
        if (resume is not null) trainer.Resume(resume);
        return trainer.Train();
    }

    static (int, double, double, double)[] Log(TrainingResult r) => [.. r.Logs.Select(l => (l.Step, l.Loss, l.LearningRate, l.GradNorm))];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Four_steps_then_resume_four_equals_eight_straight_with_dropout_on(bool lora)
    {
        TrainingResult straight = Run("straight", 8, lora);
        string checkpoint = Path.Combine(_dir, "straight", "checkpoint-4");
        if (lora) Assert.Equal(0.2, LoraAdapter.Load(checkpoint).Config.LoraDropout);
        else Assert.Equal(0.1, T5Config.Load(Path.Combine(checkpoint, "config.json")).DropoutRate);
        TrainingResult rest = Run("resumed", 8, lora, resume: checkpoint);
        Assert.Equal(Log(straight).Skip(4), Log(rest));
        string file = lora ? "adapter_model.safetensors" : "model.safetensors";
        Assert.Equal(File.ReadAllBytes(Path.Combine(_dir, "straight", file)), File.ReadAllBytes(Path.Combine(_dir, "resumed", file)));
    }

    [Fact]
    public void The_same_seed_repeats_a_run_and_another_seed_changes_its_masks()
    {
        // In file order the seed decides nothing but the dropout masks.
        TrainingResult a = Run("a", 2, lora: false, shuffle: false), b = Run("b", 2, lora: false, shuffle: false), c = Run("c", 2, lora: false, seed: 7, shuffle: false);
        Assert.Equal(Log(a), Log(b));
        Assert.NotEqual(a.Logs[0].Loss, c.Logs[0].Loss);
    }
}
