// managedt5 finetune: full fine-tuning of a T5 model on JSONL instruction data with HF Trainer's defaults and names
// (kebab case), AdamW, clipping, schedules, checkpoints and --resume; one JSON line per step with --json, else a
// progress line on stderr. Ctrl+C stops at the step boundary and saves a resumable checkpoint.
using System.CommandLine;
using System.Text.Json;
using ManagedT5.Tokenizer;
using ManagedT5.Training;

namespace ManagedT5.Cli;

internal static class FinetuneCommand
{
    public static Command Create()
    {
        Option<string> model = CliCommon.ModelOption();
        var data = new Option<string>("--data") { Description = "Training data: JSONL, one {\"input\": ..., \"target\": ...} per line", HelpName = "file", Required = true };
        var evalData = new Option<string?>("--eval-data") { Description = "Evaluation data (JSONL): eval loss at the end and every --eval-steps", HelpName = "file" };
        var output = new Option<string>("--out") { Description = "Output folder (the model, checkpoint-<step> folders)", HelpName = "dir", Required = true };
        var inputField = new Option<string>("--input-field") { Description = "JSONL field of the input", HelpName = "name", DefaultValueFactory = _ => "input" };
        var targetField = new Option<string>("--target-field") { Description = "JSONL field of the target", HelpName = "name", DefaultValueFactory = _ => "target" };
        var maxSteps = new Option<int?>("--max-steps") { Description = "Optimizer steps (overrides --num-train-epochs)", HelpName = "n" };
        var epochs = new Option<double>("--num-train-epochs") { Description = "Epochs", HelpName = "e", DefaultValueFactory = _ => 3 };
        var batchSize = new Option<int>("--batch-size") { Description = "Examples per micro-batch (HF per_device_train_batch_size)", HelpName = "b", DefaultValueFactory = _ => 8 };
        var accumulation = new Option<int>("--gradient-accumulation-steps") { Description = "Micro-batches per optimizer step", HelpName = "k", DefaultValueFactory = _ => 1 };
        var lr = new Option<double>("--learning-rate") { Description = "Peak learning rate", HelpName = "lr", DefaultValueFactory = _ => 5e-5 };
        var warmup = new Option<int>("--warmup-steps") { Description = "Warmup steps", HelpName = "w", DefaultValueFactory = _ => 0 };
        var schedule = new Option<string>("--lr-scheduler-type") { Description = "linear, constant, constant_with_warmup or cosine", HelpName = "type", DefaultValueFactory = _ => "linear" };
        var weightDecay = new Option<double>("--weight-decay") { Description = "AdamW weight decay (not on layer norms)", HelpName = "wd", DefaultValueFactory = _ => 0 };
        var maxGradNorm = new Option<double>("--max-grad-norm") { Description = "Clip the global gradient norm to this (0: off)", HelpName = "g", DefaultValueFactory = _ => 1.0 };
        var maxSource = new Option<int>("--max-source-length") { Description = "Longest input in tokens (longer ones are truncated, as HF does)", HelpName = "n", DefaultValueFactory = _ => 1024 };
        var maxTarget = new Option<int>("--max-target-length") { Description = "Longest target in tokens (longer ones are truncated)", HelpName = "n", DefaultValueFactory = _ => 128 };
        var seed = new Option<int>("--seed") { Description = "Shuffle seed", HelpName = "s", DefaultValueFactory = _ => 42 };
        var noShuffle = new Option<bool>("--no-shuffle") { Description = "Take batches in file order, wrapping around" };
        var saveSteps = new Option<int>("--save-steps") { Description = "A checkpoint every n steps (0: none)", HelpName = "n", DefaultValueFactory = _ => 500 };
        var evalSteps = new Option<int?>("--eval-steps") { Description = "Eval loss every n steps (with --eval-data)", HelpName = "n" };
        var resume = new Option<string?>("--resume") { Description = "Continue from a checkpoint-<step> folder", HelpName = "dir" };
        var overwrite = new Option<bool>("--overwrite-output-dir") { Description = "Write into a non-empty --out" };
        var loraR = new Option<int?>("--lora-r") { Description = "LoRA rank (PEFT r, default 8): LoRA fine-tuning is not in this build yet", HelpName = "r" };
        Option<int> threads = CliCommon.ThreadsOption(0);
        var json = new Option<bool>("--json") { Description = "One JSON line per step and a final {\"output\": ...} line" };
        var command = new Command("finetune", "Fine-tune a T5 model on JSONL (input, target) pairs, exact to PyTorch (HF Trainer's defaults)")
        {
            model, data, evalData, output, inputField, targetField, maxSteps, epochs, batchSize, accumulation, lr, warmup, schedule, weightDecay,
            maxGradNorm, maxSource, maxTarget, seed, noShuffle, saveSteps, evalSteps, resume, overwrite, loraR, threads, json,
        };
        command.SetAction(r =>
        {
            if (r.GetValue(loraR) is not null)
                throw new ArgumentException("lora_r: LoRA fine-tuning from the command line is not in this build yet; drop lora_r for full fine-tuning.", "lora_r");
            string outDir = r.GetValue(output)!;
            string? resumeDir = r.GetValue(resume);
            if (Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any() && !r.GetValue(overwrite) && resumeDir is null)
                throw new ArgumentException($"out: '{outDir}' is not empty; give an empty folder, or overwrite_output_dir to write into it.", "out");
            var args = new TrainingArguments
            {
                OutputDir = outDir, MaxSteps = r.GetValue(maxSteps), NumTrainEpochs = r.GetValue(epochs), PerDeviceTrainBatchSize = r.GetValue(batchSize),
                PerDeviceEvalBatchSize = r.GetValue(batchSize), GradientAccumulationSteps = r.GetValue(accumulation), LearningRate = r.GetValue(lr),
                WarmupSteps = r.GetValue(warmup), LrSchedulerType = LearningRateSchedule.Parse(r.GetValue(schedule)!), WeightDecay = r.GetValue(weightDecay),
                MaxGradNorm = r.GetValue(maxGradNorm), Seed = r.GetValue(seed), SaveSteps = r.GetValue(saveSteps), EvalSteps = r.GetValue(evalSteps),
            };
            args.Validate();
            string dir = CliCommon.ResolveModel(r, r.GetValue(model)!);
            CliCommon.Doing = $"reading {r.GetValue(data)}";
            var tokenizer = T5Tokenizer.FromDirectory(dir);
            var examples = TrainingDataFile.ReadJsonLines(r.GetValue(data)!, r.GetValue(inputField)!, r.GetValue(targetField)!);
            CliCommon.Doing = $"loading {resumeDir ?? dir}";
            using T5TrainingModel t5 = T5TrainingModel.Load(resumeDir ?? dir, new TrainingModelOptions { Threads = r.GetValue(threads) });
            var train = new TrainingData(examples, tokenizer, r.GetValue(maxSource), r.GetValue(maxTarget), t5.Config.DecoderStartTokenId,
                                         !r.GetValue(noShuffle), r.GetValue(seed), r.GetValue(data)!);
            TrainingData? eval = r.GetValue(evalData) is string e
                ? new TrainingData(TrainingDataFile.ReadJsonLines(e, r.GetValue(inputField)!, r.GetValue(targetField)!, "eval_data"), tokenizer,
                                   r.GetValue(maxSource), r.GetValue(maxTarget), t5.Config.DecoderStartTokenId, false, 0, e)
                : null;
            var trainer = new Trainer(new T5Trainable(t5, dir), train, args, eval);
            if (resumeDir is not null) trainer.Resume(resumeDir);
            using var cts = new CancellationTokenSource();
            ConsoleCancelEventHandler onCancel = (_, ev) => { ev.Cancel = true; cts.Cancel(); };
            Console.CancelKeyPress += onCancel;
            bool asJson = r.GetValue(json);
            long tokens = 0;
            double seconds = 0;
            TrainingResult result;
            try
            {
                CliCommon.Doing = "training";
                result = trainer.Train(log =>
                {
                    tokens += log.Tokens;
                    seconds += log.Seconds;
                    if (asJson)
                        Console.WriteLine(JsonSerializer.Serialize(new { step = log.Step, loss = log.Loss, learning_rate = log.LearningRate, grad_norm = log.GradNorm, eval_loss = log.EvalLoss }));
                    else
                    {
                        int total = trainer.Schedule.TotalSteps;
                        double eta = seconds / Math.Max(1, log.Step - (trainer.GlobalStep - log.Step)) * (total - log.Step);
                        Console.Error.Write($"\rstep {log.Step}/{total}  loss {log.Loss:F4}  lr {log.LearningRate:G3}  {tokens / Math.Max(seconds, 1e-9):F0} tokens/s  ETA {TimeSpan.FromSeconds(Math.Round(eta))}   ");
                    }
                }, cts.Token);
            }
            finally
            {
                Console.CancelKeyPress -= onCancel;
                if (!asJson) Console.Error.WriteLine();
            }
            if (result.Cancelled)
            {
                Console.Error.WriteLine($"error: interrupted at step {result.Steps}; a resumable checkpoint is in '{result.Checkpoint}' (continue with --resume {result.Checkpoint}).");
                return 130;
            }
            var summary = new
            {
                output = outDir, steps = result.Steps, train_loss = result.Logs.Count > 0 ? result.Logs.Average(l => l.Loss) : (double?)null,
                eval_loss = result.EvalLoss, examples = train.Count, truncated_inputs = train.TruncatedInputs, truncated_targets = train.TruncatedTargets,
                tokens_per_second = seconds > 0 ? tokens / seconds : 0,
            };
            if (asJson) Console.WriteLine(JsonSerializer.Serialize(summary));
            else Console.WriteLine($"saved to {outDir}: {result.Steps} steps, eval loss {summary.eval_loss?.ToString("F4") ?? "-"}, " +
                                   $"{train.TruncatedInputs} inputs and {train.TruncatedTargets} targets truncated");
            return 0;
        });
        return command;
    }
}
