// The training loop on its own, with a small real model (a unigram softmax over label ids, exact gradients): the
// logged lr, loss and pre-clip grad norm of each step, gradient accumulation, eval loss, a NaN loss stopping with the
// step, the file lines and the last good checkpoint, cancellation at the step boundary, and the epochs rule.
using ManagedT5.Loading;
using ManagedT5.Tokenizer;

namespace ManagedT5.Training.Tests;

/// <summary>A unigram model: logits = emb + final_layer_norm (two [K] tensors), loss = mean over label tokens of
/// -log softmax(logits)[label mod K]. Small, exact gradients, and a layer-norm-named tensor for the decay rule.
/// A batch holding label <see cref="PoisonId"/> gives a NaN loss (fault injection).</summary>
internal sealed class UnigramModel : ITrainable
{
    public const int K = 16;
    public int PoisonId = -1;
    public readonly TrainedTensor Emb, Norm;

    public UnigramModel(float[]? emb = null, float[]? norm = null)
    {
        Emb = new("emb.weight", [K], emb ?? Enumerable.Range(0, K).Select(i => 0.1f * (i % 5) - 0.2f).ToArray(), new float[K]);
        Norm = new("final_layer_norm.weight", [K], norm ?? Enumerable.Repeat(1f, K).ToArray(), new float[K]);
    }

    public IReadOnlyList<TrainedTensor> TrainedTensors => [Emb, Norm];
    public void ZeroGrad() { Array.Clear(Emb.Grad); Array.Clear(Norm.Grad); }

    double[] Probabilities()
    {
        double[] z = Enumerable.Range(0, K).Select(i => (double)Emb.Value[i] + Norm.Value[i]).ToArray();
        double max = z.Max(), sum = z.Sum(x => Math.Exp(x - max));
        return z.Select(x => Math.Exp(x - max) / sum).ToArray();
    }

    public float ForwardBackward(TrainingBatch batch, float gradScale, ulong dropoutKey)
    {
        float loss = Loss(batch);
        double[] p = Probabilities();
        int[] labels = batch.Labels.Where(l => l != TrainingBatch.IgnoreIndex).ToArray();
        foreach (int l in labels)
            for (int i = 0; i < K; i++)
            {
                float g = (float)((p[i] - (i == l % K ? 1 : 0)) / labels.Length * gradScale);
                Emb.Grad[i] += g;
                Norm.Grad[i] += g;
            }
        return loss;
    }

    public float Loss(TrainingBatch batch)
    {
        if (batch.Labels.Contains(PoisonId)) return float.NaN;
        double[] p = Probabilities();
        int[] labels = batch.Labels.Where(l => l != TrainingBatch.IgnoreIndex).ToArray();
        return (float)labels.Average(l => -Math.Log(p[l % K]));
    }

    public void Save(string directory)
    {
        var w = new SafeTensorsWriter();
        w.Add(Emb.Name, Emb.Value, K);
        w.Add(Norm.Name, Norm.Value, K);
        w.Save(Path.Combine(directory, "model.safetensors"));
    }

    public static UnigramModel Load(string directory)
    {
        using var f = SafeTensorsFile.Open(Path.Combine(directory, "model.safetensors"));
        return new UnigramModel(f.GetTensor("emb.weight").ToSingleArray(), f.GetTensor("final_layer_norm.weight").ToSingleArray());
    }
}

public sealed class TrainerTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("managedt5-trainer-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    internal static TrainingData Data(bool shuffle = false) =>
        new(TrainingDataFile.ReadJsonLines(TrainerFixtures.Instructions), T5Tokenizer.FromDirectory(TrainerFixtures.Model("tiny-flan-t5")),
            1024, 128, 0, shuffle, 42, "instructions.jsonl");

    TrainingArguments Args(string name, int steps = 8) => new()
    {
        OutputDir = Path.Combine(_dir, name), MaxSteps = steps, PerDeviceTrainBatchSize = 4, LearningRate = 0.05, WarmupSteps = 2,
        WeightDecay = 0.1, MaxGradNorm = 0.3, SaveSteps = 0,
    };

    [Fact]
    public void Each_step_logs_the_schedules_rate_the_mean_loss_and_the_norm_before_clipping()
    {
        var model = new UnigramModel();
        TrainingData data = Data();
        // Step 1's loss and norm, computed directly on the first batch from the initial values.
        var probe = new UnigramModel();
        float loss1 = probe.ForwardBackward(data.Batch(0, 4), 1f, 0);
        float norm1 = GradientClipping.GlobalNorm([probe.Emb.Grad, probe.Norm.Grad]);
        var trainer = new Trainer(model, data, Args("logs") with { MaxGradNorm = norm1 / 2 });   // so clipping acts
        TrainingResult result = trainer.Train();
        Assert.Equal(8, result.Steps);
        Assert.False(result.Cancelled);
        Assert.Equal(loss1, result.Logs[0].Loss, 6);
        Assert.Equal(norm1, result.Logs[0].GradNorm, 6);
        for (int k = 1; k <= 8; k++) Assert.Equal(trainer.Schedule.LearningRate(k), result.Logs[k - 1].LearningRate);
        Assert.Equal(0.0, result.Logs[0].LearningRate);
        Assert.True(File.Exists(Path.Combine(_dir, "logs", "model.safetensors")));
        Assert.True(File.Exists(Path.Combine(_dir, "logs", Trainer.StateFile)));
    }

    [Fact]
    public void Accumulated_steps_average_the_micro_batch_losses()
    {
        TrainingData data = Data();
        var probe = new UnigramModel();
        double expected = (probe.Loss(data.Batch(0, 2)) + probe.Loss(data.Batch(1, 2)) + probe.Loss(data.Batch(2, 2))) / 3;
        var result = new Trainer(new UnigramModel(), data, Args("accum", 1) with { PerDeviceTrainBatchSize = 2, GradientAccumulationSteps = 3 }).Train();
        Assert.Equal(expected, result.Logs[0].Loss, 6);
        // Step 2 starts at micro-batch 3 (positions 6..7).
        var second = new Trainer(new UnigramModel(), data, Args("accum2", 2) with { PerDeviceTrainBatchSize = 2, GradientAccumulationSteps = 3, LearningRate = 0 }).Train();
        double expected2 = (probe.Loss(data.Batch(3, 2)) + probe.Loss(data.Batch(4, 2)) + probe.Loss(data.Batch(5, 2))) / 3;
        Assert.Equal(expected2, second.Logs[1].Loss, 6);
    }

    [Fact]
    public void Eval_loss_is_computed_every_eval_steps_and_at_the_end()
    {
        TrainingData data = Data();
        var model = new UnigramModel();
        var trainer = new Trainer(model, data, Args("eval", 4) with { EvalSteps = 2, PerDeviceEvalBatchSize = 5 }, eval: data);
        TrainingResult result = trainer.Train();
        Assert.NotNull(result.Logs[1].EvalLoss);
        Assert.Null(result.Logs[0].EvalLoss);
        double direct = data.Sequential(5).Sum(b => (double)model.Loss(b) * b.Batch) / data.Count;
        Assert.Equal(direct, result.EvalLoss!.Value, 10);
    }

    [Fact]
    public void A_NaN_loss_stops_naming_step_and_lines_and_keeps_the_last_good_checkpoint()
    {
        TrainingData data = Data();
        var model = new UnigramModel();
        // The first label of example 13 (line 14) poisons every batch holding it: step 4 (examples 12..15).
        model.PoisonId = data.Batch(13, 1).Labels[0];
        Assert.DoesNotContain(model.PoisonId, Enumerable.Range(0, 3).SelectMany(k => data.Batch(k, 4).Labels));
        var trainer = new Trainer(model, data, Args("nan"));
        float[] afterStep3 = [];
        var e = Assert.Throws<TrainingDivergedException>(() => trainer.Train(log => { if (log.Step == 3) afterStep3 = (float[])model.Emb.Value.Clone(); }));
        Assert.Equal(4, e.Step);
        Assert.Contains("step 4", e.Message);
        Assert.Contains("the loss is NaN", e.Message);
        Assert.Contains("lines 13, 14, 15, 16", e.Message);
        Assert.Equal(Path.Combine(_dir, "nan", "checkpoint-3"), e.Checkpoint);
        Assert.Equal(afterStep3, model.Emb.Value);
        Assert.Equal(afterStep3, UnigramModel.Load(e.Checkpoint!).Emb.Value);
    }

    [Fact]
    public void Cancellation_stops_at_the_step_boundary_with_a_resumable_checkpoint()
    {
        TrainingData data = Data(shuffle: true);
        var straight = new UnigramModel();
        new Trainer(straight, data, Args("straight")).Train();

        var model = new UnigramModel();
        using var cts = new CancellationTokenSource();
        TrainingResult stopped = new Trainer(model, data, Args("stopped")).Train(log => { if (log.Step == 3) cts.Cancel(); }, cts.Token);
        Assert.True(stopped.Cancelled);
        Assert.Equal(3, stopped.Steps);
        Assert.Equal(Path.Combine(_dir, "stopped", "checkpoint-3"), stopped.Checkpoint);

        var resumed = UnigramModel.Load(stopped.Checkpoint!);
        var trainer = new Trainer(resumed, data, Args("stopped"));
        trainer.Resume(stopped.Checkpoint!);
        TrainingResult rest = trainer.Train();
        Assert.Equal(5, rest.Logs.Count);
        Assert.Equal(straight.Emb.Value, resumed.Emb.Value);
        Assert.Equal(straight.Norm.Value, resumed.Norm.Value);
    }

    [Fact]
    public void Epochs_give_HFs_step_count()
    {
        var a = new TrainingArguments { OutputDir = "x", PerDeviceTrainBatchSize = 8 };
        Assert.Equal(9, a.TotalSteps(24));                                          // 3 epochs x 3 batches
        Assert.Equal(3, (a with { GradientAccumulationSteps = 2 }).TotalSteps(24)); // 3 x max(3 / 2, 1)
        Assert.Equal(2, (a with { NumTrainEpochs = 0.5 }).TotalSteps(25));          // ceil(0.5 x 4)
        Assert.Equal(7, (a with { MaxSteps = 7 }).TotalSteps(24));
    }

    [Theory]
    [InlineData("per_device_train_batch_size")]
    [InlineData("gradient_accumulation_steps")]
    [InlineData("learning_rate")]
    [InlineData("max_grad_norm")]
    [InlineData("max_steps")]
    public void Bad_arguments_name_the_HF_option(string name)
    {
        var a = new TrainingArguments { OutputDir = _dir };
        a = name switch
        {
            "per_device_train_batch_size" => a with { PerDeviceTrainBatchSize = 0 },
            "gradient_accumulation_steps" => a with { GradientAccumulationSteps = 0 },
            "learning_rate" => a with { LearningRate = double.NaN },
            "max_grad_norm" => a with { MaxGradNorm = -1 },
            _ => a with { MaxSteps = 0 },
        };
        var e = Assert.Throws<ArgumentException>(a.Validate);
        Assert.Equal(name, e.ParamName);
        Assert.StartsWith(name + ": ", e.Message);
    }
}
