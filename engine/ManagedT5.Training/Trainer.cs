// The training loop, as HF Trainer runs it: per optimizer step, gradient_accumulation_steps micro-batches whose
// gradients add up (each loss scaled by 1/K), the global gradient norm clipped, AdamW at the schedule's rate; eval loss
// every eval_steps and at the end; a checkpoint (model, optimizer moments, step, data position, arguments) every
// save_steps, on Ctrl+C (at the step boundary) and before stopping on a NaN or infinite loss.
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using ManagedT5.Kernels.Cpu.Training;
using ManagedT5.Loading;

namespace ManagedT5.Training;

/// <summary>HF TrainingArguments (the subset this trainer uses), with HF's defaults.</summary>
public sealed record TrainingArguments
{
    /// <summary>output_dir: where checkpoints and the final model go.</summary>
    public required string OutputDir { get; init; }
    /// <summary>max_steps: optimizer steps to run; null to run <see cref="NumTrainEpochs"/> epochs.</summary>
    public int? MaxSteps { get; init; }
    /// <summary>num_train_epochs (when <see cref="MaxSteps"/> is null).</summary>
    public double NumTrainEpochs { get; init; } = 3;
    /// <summary>per_device_train_batch_size.</summary>
    public int PerDeviceTrainBatchSize { get; init; } = 8;
    /// <summary>per_device_eval_batch_size.</summary>
    public int PerDeviceEvalBatchSize { get; init; } = 8;
    /// <summary>gradient_accumulation_steps: micro-batches per optimizer step.</summary>
    public int GradientAccumulationSteps { get; init; } = 1;
    /// <summary>learning_rate: the schedule's peak.</summary>
    public double LearningRate { get; init; } = 5e-5;
    /// <summary>warmup_steps.</summary>
    public int WarmupSteps { get; init; }
    /// <summary>lr_scheduler_type.</summary>
    public LearningRateScheduleKind LrSchedulerType { get; init; } = LearningRateScheduleKind.Linear;
    /// <summary>weight_decay (not applied to layer norms).</summary>
    public double WeightDecay { get; init; }
    /// <summary>max_grad_norm: clip the global gradient norm to this (0: no clipping).</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>adam_beta1.</summary>
    public double AdamBeta1 { get; init; } = 0.9;
    /// <summary>adam_beta2.</summary>
    public double AdamBeta2 { get; init; } = 0.999;
    /// <summary>adam_epsilon.</summary>
    public double AdamEpsilon { get; init; } = 1e-8;
    /// <summary>seed: the shuffle's seed, and the dropout masks'.</summary>
    public int Seed { get; init; } = 42;
    /// <summary>save_steps: a checkpoint every this many steps (0: none but the final model).</summary>
    public int SaveSteps { get; init; } = 500;
    /// <summary>eval_steps: eval loss every this many steps (null: at the end only, when there is eval data).</summary>
    public int? EvalSteps { get; init; }

    /// <summary>AdamW's hyperparameters from these arguments.</summary>
    public AdamWOptions AdamW => new() { Beta1 = AdamBeta1, Beta2 = AdamBeta2, Epsilon = AdamEpsilon, WeightDecay = WeightDecay };

    /// <summary>Throws an <see cref="ArgumentException"/> whose ParamName is the HF option for the first bad value.</summary>
    public void Validate()
    {
        static void Check(bool ok, string name, string message)
        {
            if (!ok) throw new ArgumentException($"{name}: {message}", name);
        }
        Check(!string.IsNullOrWhiteSpace(OutputDir), "output_dir", "give a folder.");
        Check(MaxSteps is null or >= 1, "max_steps", $"give at least 1 (got {MaxSteps}).");
        Check(NumTrainEpochs > 0 && double.IsFinite(NumTrainEpochs), "num_train_epochs", $"give a number above 0 (got {NumTrainEpochs}).");
        Check(PerDeviceTrainBatchSize >= 1, "per_device_train_batch_size", $"give at least 1 (got {PerDeviceTrainBatchSize}).");
        Check(PerDeviceEvalBatchSize >= 1, "per_device_eval_batch_size", $"give at least 1 (got {PerDeviceEvalBatchSize}).");
        Check(GradientAccumulationSteps >= 1, "gradient_accumulation_steps", $"give at least 1 (got {GradientAccumulationSteps}).");
        Check(LearningRate >= 0 && double.IsFinite(LearningRate), "learning_rate", $"give a number >= 0 (got {LearningRate}).");
        Check(WarmupSteps >= 0, "warmup_steps", $"give 0 or more (got {WarmupSteps}).");
        Check(MaxGradNorm >= 0 && double.IsFinite(MaxGradNorm), "max_grad_norm", $"give a number >= 0 (got {MaxGradNorm}).");
        Check(SaveSteps >= 0, "save_steps", $"give 0 or more (got {SaveSteps}).");
        Check(EvalSteps is null or >= 1, "eval_steps", $"give at least 1 (got {EvalSteps}).");
        AdamW.Validate();
    }

    /// <summary>Optimizer steps the run takes on <paramref name="examples"/> examples: max_steps, or HF's
    /// ceil(num_train_epochs * max(ceil(examples / batch) / accumulation, 1)).</summary>
    public int TotalSteps(int examples)
    {
        if (MaxSteps is int m) return m;
        int batchesPerEpoch = (examples + PerDeviceTrainBatchSize - 1) / PerDeviceTrainBatchSize;
        int stepsPerEpoch = Math.Max(batchesPerEpoch / GradientAccumulationSteps, 1);
        return checked((int)Math.Ceiling(NumTrainEpochs * stepsPerEpoch));
    }
}

/// <summary>What the trainer needs of a model: the tensors it trains, and the loss with and without gradients.</summary>
public interface ITrainable
{
    /// <summary>The trained tensors (their values are updated in place), in a fixed order.</summary>
    IReadOnlyList<TrainedTensor> TrainedTensors { get; }
    /// <summary>Sets every gradient to zero.</summary>
    void ZeroGrad();
    /// <summary>The batch's mean token loss; adds gradScale * dLoss/dparam into the gradients. Training: a model with
    /// dropout draws this pass's masks from <paramref name="dropoutKey"/> alone (the trainer gives
    /// DropoutMask.RunKey(seed, step, micro-batch), so a resumed run drops what a straight run drops).</summary>
    float ForwardBackward(TrainingBatch batch, float gradScale, ulong dropoutKey);
    /// <summary>The batch's mean token loss, without gradients.</summary>
    float Loss(TrainingBatch batch);
    /// <summary>Writes the model (a HF folder, or a PEFT adapter) into <paramref name="directory"/>.</summary>
    void Save(string directory);
}

/// <summary>One optimizer step's log line (HF's names).</summary>
/// <param name="Step">The step, 1-based.</param>
/// <param name="Loss">Mean of the step's micro-batch losses.</param>
/// <param name="LearningRate">The rate the step used.</param>
/// <param name="GradNorm">The global gradient norm before clipping.</param>
/// <param name="Tokens">Input and target tokens the step read (not padding).</param>
/// <param name="Seconds">Wall time of the step.</param>
/// <param name="EvalLoss">The eval loss after this step, when it was computed.</param>
public readonly record struct TrainingLog(int Step, double Loss, double LearningRate, double GradNorm, long Tokens, double Seconds, double? EvalLoss = null);

/// <summary>How a run ended.</summary>
/// <param name="Steps">Optimizer steps done (including those of a resumed checkpoint).</param>
/// <param name="TotalSteps">Steps the run was to take.</param>
/// <param name="Cancelled">True when a cancellation stopped it at a step boundary.</param>
/// <param name="Checkpoint">The last checkpoint written (on cancellation: the resumable one), or null.</param>
/// <param name="EvalLoss">The final eval loss, when there was eval data and the run finished.</param>
/// <param name="Logs">Every step's log of this run.</param>
public sealed record TrainingResult(int Steps, int TotalSteps, bool Cancelled, string? Checkpoint, double? EvalLoss, IReadOnlyList<TrainingLog> Logs);

/// <summary>A training run that met a NaN or infinite loss or gradient: nothing of that step was applied.</summary>
public sealed class TrainingDivergedException(string message, int step, string? checkpoint) : InvalidOperationException(message)
{
    /// <summary>The step (1-based) whose loss or gradient was not finite.</summary>
    public int Step { get; } = step;
    /// <summary>The last good checkpoint, or null when none could be written.</summary>
    public string? Checkpoint { get; } = checkpoint;
}

/// <summary>Runs the training loop on a model.</summary>
public sealed class Trainer
{
    /// <summary>File of a checkpoint's optimizer moments (exp_avg.&lt;name&gt;, exp_avg_sq.&lt;name&gt;).</summary>
    public const string OptimizerFile = "optimizer.safetensors";
    /// <summary>File of a checkpoint's step, data position, arguments and log history.</summary>
    public const string StateFile = "trainer_state.json";

    private readonly ITrainable _model;
    private readonly TrainingData _train;
    private readonly TrainingData? _eval;
    private readonly AdamW _optimizer;
    private readonly TrainedTensor[] _tensors;
    private readonly float[][] _grads;
    private readonly double[] _normPartials;   // chunk sums of the pooled gradient norm
    private readonly List<TrainingLog> _history = [];

    /// <summary>The arguments.</summary>
    public TrainingArguments Arguments { get; }
    /// <summary>The schedule (peak rate, warmup, total steps).</summary>
    public LearningRateSchedule Schedule { get; }
    /// <summary>Optimizer steps done so far.</summary>
    public int GlobalStep { get; private set; }

    /// <summary>A trainer of <paramref name="model"/> on <paramref name="train"/> (eval loss on <paramref name="eval"/>).</summary>
    public Trainer(ITrainable model, TrainingData train, TrainingArguments arguments, TrainingData? eval = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(arguments);
        arguments.Validate();
        _model = model;
        _train = train;
        _eval = eval;
        Arguments = arguments;
        _tensors = [.. model.TrainedTensors];
        if (_tensors.Length == 0) throw new ArgumentException("The model has no trainable parameters.", nameof(model));
        _grads = _tensors.Select(t => t.Grad).ToArray();
        _optimizer = new AdamW(_tensors, arguments.AdamW) { Pool = (model as T5ModelTrainable)?.Pool };
        _normPartials = GradientClipping.Partials(_grads.Max(g => g.Length));   // _tensors is not empty (checked above)
        Schedule = new LearningRateSchedule(arguments.LrSchedulerType, arguments.LearningRate, arguments.WarmupSteps, arguments.TotalSteps(train.Count));
    }

    /// <summary>Runs the remaining steps. <paramref name="onStep"/> sees every step's log; cancellation stops at the next
    /// step boundary and writes a resumable checkpoint. A NaN or infinite loss or gradient throws
    /// <see cref="TrainingDivergedException"/> after writing the last good state as a checkpoint.</summary>
    public TrainingResult Train(Action<TrainingLog>? onStep = null, CancellationToken cancellationToken = default)
    {
        Directory.CreateDirectory(Arguments.OutputDir);
        int total = Schedule.TotalSteps, batch = Arguments.PerDeviceTrainBatchSize, accumulation = Arguments.GradientAccumulationSteps;
        var logs = new List<TrainingLog>(Math.Max(total - GlobalStep, 0));
        _history.EnsureCapacity(total);
        string? checkpoint = null;
        var rows = new int[batch];
        float scale = 1f / accumulation;
        while (GlobalStep < total)
        {
            if (cancellationToken.IsCancellationRequested)
                return new TrainingResult(GlobalStep, total, true, SaveCheckpoint(), null, logs);
            int step = GlobalStep + 1;
            long start = Stopwatch.GetTimestamp(), tokens = 0;
            _model.ZeroGrad();
            double loss = 0;
            for (int a = 0; a < accumulation; a++)
            {
                long microBatch = (long)GlobalStep * accumulation + a;
                TrainingBatch b = _train.ReusedBatch(microBatch, batch, rows);
                float l = _model.ForwardBackward(b, scale, DropoutMask.RunKey(Arguments.Seed, step, a));
                if (!float.IsFinite(l)) throw Diverged(step, $"the loss is {l}", rows);
                loss += l;
                tokens += Tokens(b);
            }
            loss /= accumulation;
            float norm = GradientClipping.GlobalNorm(_grads, _optimizer.Pool, _normPartials);
            if (!float.IsFinite(norm)) throw Diverged(step, $"the gradient norm is {norm}", rows);
            // Clipping's coefficient is applied inside the optimizer's pass (the same float products as multiplying every
            // gradient first, without a pass of its own over them).
            float coef = Arguments.MaxGradNorm > 0 ? GradientClipping.Coefficient(norm, Arguments.MaxGradNorm) : 1f;
            double lr = Schedule.LearningRate(step);
            _optimizer.Update(lr, coef);
            GlobalStep = step;
            double? evalLoss = _eval is not null && Arguments.EvalSteps is int every && step % every == 0 && step < total ? Evaluate() : null;
            var log = new TrainingLog(step, loss, lr, norm, tokens, Stopwatch.GetElapsedTime(start).TotalSeconds, evalLoss);
            logs.Add(log);
            _history.Add(log);
            onStep?.Invoke(log);
            if (Arguments.SaveSteps > 0 && step % Arguments.SaveSteps == 0 && step < total) checkpoint = SaveCheckpoint();
        }
        double? finalEval = _eval is not null ? Evaluate() : null;
        _model.Save(Arguments.OutputDir);
        WriteState(Arguments.OutputDir, finalEval);
        return new TrainingResult(GlobalStep, total, false, checkpoint, finalEval, logs);
    }

    // Input tokens (attention mask 1) and counted target tokens (labels other than -100) of a batch.
    private static long Tokens(TrainingBatch b)
    {
        long n = 0;
        foreach (int m in b.AttentionMask) if (m != 0) n++;
        foreach (int label in b.Labels) if (label != TrainingBatch.IgnoreIndex) n++;
        return n;
    }

    private TrainingDivergedException Diverged(int step, string what, int[] rows)
    {
        // Nothing of this step reached the parameters or the moments: the state now is the last good one.
        string? saved = null;
        try
        {
            saved = SaveCheckpoint();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        string lines = string.Join(", ", rows.Select(_train.LineOf).Distinct());
        return new TrainingDivergedException(
            $"Training stopped at step {step}: {what} on the batch of {_train.Source} lines {lines}; nothing of step {step} was applied. " +
            (saved is null ? "" : $"The last good state (step {GlobalStep}) is in '{saved}'; resume from it with a lower learning_rate or max_grad_norm. "),
            step, saved);
    }

    /// <summary>HF's eval_loss: each eval batch's mean token loss, averaged over the examples.</summary>
    public double Evaluate()
    {
        if (_eval is null) throw new InvalidOperationException("No eval data was given.");
        double sum = 0;
        foreach (TrainingBatch b in _eval.Sequential(Arguments.PerDeviceEvalBatchSize)) sum += (double)_model.Loss(b) * b.Batch;
        return sum / _eval.Count;
    }

    /// <summary>Writes checkpoint-&lt;step&gt; under the output folder (model, optimizer moments, trainer state) and
    /// returns its path.</summary>
    public string SaveCheckpoint()
    {
        string dir = Path.Combine(Arguments.OutputDir, $"checkpoint-{GlobalStep}");
        Directory.CreateDirectory(dir);
        _model.Save(dir);
        var writer = new SafeTensorsWriter();
        for (int i = 0; i < _tensors.Length; i++)
        {
            writer.Add("exp_avg." + _tensors[i].Name, _optimizer.ExpAvg[i], _tensors[i].Shape);
            writer.Add("exp_avg_sq." + _tensors[i].Name, _optimizer.ExpAvgSq[i], _tensors[i].Shape);
        }
        writer.Save(Path.Combine(dir, OptimizerFile), new Dictionary<string, string> { ["step"] = _optimizer.Step.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        WriteState(dir, null);
        return dir;
    }

    private void WriteState(string dir, double? evalLoss)
    {
        var a = Arguments;
        var state = new JsonObject
        {
            ["global_step"] = GlobalStep,
            ["max_steps"] = Schedule.TotalSteps,
            ["micro_batches"] = (long)GlobalStep * a.GradientAccumulationSteps,
            ["epoch"] = (double)GlobalStep * a.GradientAccumulationSteps * a.PerDeviceTrainBatchSize / _train.Count,
            ["train_examples"] = _train.Count,
            ["args"] = new JsonObject
            {
                ["per_device_train_batch_size"] = a.PerDeviceTrainBatchSize,
                ["gradient_accumulation_steps"] = a.GradientAccumulationSteps,
                ["learning_rate"] = a.LearningRate,
                ["warmup_steps"] = a.WarmupSteps,
                ["lr_scheduler_type"] = LearningRateSchedule.Name(a.LrSchedulerType),
                ["weight_decay"] = a.WeightDecay,
                ["max_grad_norm"] = a.MaxGradNorm,
                ["adam_beta1"] = a.AdamBeta1,
                ["adam_beta2"] = a.AdamBeta2,
                ["adam_epsilon"] = a.AdamEpsilon,
                ["seed"] = a.Seed,
                ["shuffle"] = _train.Shuffle,
            },
            ["log_history"] = new JsonArray([.. _history.Select(l => (JsonNode)new JsonObject
            {
                ["step"] = l.Step, ["loss"] = l.Loss, ["learning_rate"] = l.LearningRate, ["grad_norm"] = l.GradNorm,
            })]),
        };
        if (evalLoss is double e) state["eval_loss"] = e;
        File.WriteAllText(Path.Combine(dir, StateFile), state.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Continues from a checkpoint folder written by <see cref="SaveCheckpoint"/>: the optimizer moments and
    /// step (the model's values are the caller's to load from the same folder). The run must use the arguments that
    /// decide the batches and the schedule as before; a difference is an <see cref="ArgumentException"/> naming it.</summary>
    public void Resume(string checkpointDirectory)
    {
        string statePath = Path.Combine(checkpointDirectory, StateFile), optimizerPath = Path.Combine(checkpointDirectory, OptimizerFile);
        if (!File.Exists(statePath) || !File.Exists(optimizerPath))
            throw new ArgumentException($"resume: '{checkpointDirectory}' is not a checkpoint (it needs {StateFile} and {OptimizerFile}); " +
                                        "give a checkpoint-<step> folder of an earlier run.", "resume");
        JsonNode state = JsonNode.Parse(File.ReadAllText(statePath)) ?? throw new ArgumentException($"resume: '{statePath}' is empty.", "resume");
        JsonNode args = state["args"]!;
        void Same<T>(string name, T now)
        {
            T? then = args[name] is JsonNode n ? n.GetValue<T>() : default;
            if (!EqualityComparer<T>.Default.Equals(then, now))
                throw new ArgumentException($"{name}: the checkpoint was trained with {then}, this run asks {now}; give the same value to resume.", name);
        }
        var a = Arguments;
        Same("per_device_train_batch_size", a.PerDeviceTrainBatchSize);
        Same("gradient_accumulation_steps", a.GradientAccumulationSteps);
        Same("seed", a.Seed);
        Same("shuffle", _train.Shuffle);
        Same("learning_rate", a.LearningRate);
        Same("warmup_steps", a.WarmupSteps);
        Same("lr_scheduler_type", LearningRateSchedule.Name(a.LrSchedulerType));
        int examples = state["train_examples"]!.GetValue<int>();
        if (examples != _train.Count)
            throw new ArgumentException($"data: the checkpoint was trained on {examples} examples, this data has {_train.Count}; give the same data to resume.", "data");
        int step = state["global_step"]!.GetValue<int>();
        if (step > Schedule.TotalSteps)
            throw new ArgumentException($"max_steps: the checkpoint is at step {step}, past the {Schedule.TotalSteps} steps asked.", "max_steps");

        using var file = SafeTensorsFile.Open(optimizerPath);
        var expAvg = new float[_tensors.Length][];
        var expAvgSq = new float[_tensors.Length][];
        for (int i = 0; i < _tensors.Length; i++)
        {
            expAvg[i] = Read(file, "exp_avg." + _tensors[i].Name, _tensors[i]);
            expAvgSq[i] = Read(file, "exp_avg_sq." + _tensors[i].Name, _tensors[i]);
        }
        _optimizer.Restore(step, expAvg, expAvgSq);
        GlobalStep = step;
        _history.Clear();
        if (state["log_history"] is JsonArray history)
            foreach (JsonNode? h in history)
                _history.Add(new TrainingLog(h!["step"]!.GetValue<int>(), h["loss"]!.GetValue<double>(), h["learning_rate"]!.GetValue<double>(), h["grad_norm"]!.GetValue<double>(), 0, 0));
    }

    private static float[] Read(SafeTensorsFile file, string name, TrainedTensor t)
    {
        SafeTensorInfo info = file.Find(name) ?? throw new ArgumentException(
            $"resume: '{file.Path}' has no tensor '{name}': the checkpoint trains other parameters than this run (full vs LoRA, or other target modules).", "resume");
        if (!info.Shape.SequenceEqual(t.Shape))
            throw new ArgumentException($"resume: '{file.Path}': '{name}' is [{string.Join(", ", info.Shape)}], the model's is [{string.Join(", ", t.Shape)}].", "resume");
        return file.GetTensor(name).ToSingleArray();
    }
}
