// managedt5 finetune: full or LoRA fine-tuning of a T5 model on JSONL instruction data with HF Trainer's and PEFT's
// defaults and names (kebab case), AdamW, clipping, schedules, checkpoints and --resume; one JSON line per step with
// --json, else a progress line on stderr. Ctrl+C stops at the step boundary and saves a resumable checkpoint.
using System.CommandLine;
using System.Text.Json;
using ManagedT5.Adapters;
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
        var loraR = new Option<int?>("--lora-r") { Description = "LoRA fine-tuning with this rank (PEFT r; any --lora-* option turns LoRA on, default r 8)", HelpName = "r" };
        var loraAlpha = new Option<double?>("--lora-alpha") { Description = "LoRA alpha (scale alpha / r; default 8)", HelpName = "a" };
        var loraDropout = new Option<double?>("--lora-dropout") { Description = "Dropout on the LoRA adapters' input while training (PEFT lora_dropout; default 0)", HelpName = "p" };
        var dropoutRate = new Option<double?>("--dropout-rate") { Description = "The model's dropout while training (default: config.json's dropout_rate, 0.1 for Flan-T5; 0 turns it off)", HelpName = "p" };
        var loraTargets = new Option<string[]?>("--lora-target-modules") { Description = "Linears to adapt: names (q k v o wi wi_0 wi_1 wo) or all-linear; default q v", HelpName = "names", AllowMultipleArgumentsPerToken = true };
        var loraInit = new Option<string?>("--lora-init") { Description = "Start from this PEFT LoRA adapter folder (its r, alpha and targets)", HelpName = "dir" };
        Option<int> threads = CliCommon.ThreadsOption(0);
        var json = new Option<bool>("--json") { Description = "One JSON line per step and a final {\"output\": ...} line" };
        var command = new Command("finetune", "Fine-tune a T5 model on JSONL (input, target) pairs, exact to PyTorch (HF Trainer's defaults)")
        {
            model, data, evalData, output, inputField, targetField, maxSteps, epochs, batchSize, accumulation, lr, warmup, schedule, weightDecay,
            maxGradNorm, maxSource, maxTarget, seed, noShuffle, saveSteps, evalSteps, resume, overwrite, loraR, loraAlpha, loraDropout, loraTargets,
            loraInit, threads, json, dropoutRate,
        };
        command.SetAction(r =>
        {
            string? initDir = r.GetValue(loraInit);
            bool loraShape = r.GetValue(loraR) is not null || r.GetValue(loraAlpha) is not null || r.GetValue(loraDropout) is not null || r.GetValue(loraTargets) is { Length: > 0 };
            if (initDir is not null && loraShape)
                throw new ArgumentException($"lora_init: the adapter in '{initDir}' brings its own r, lora_alpha, lora_dropout and target_modules; drop --lora-r, --lora-alpha, --lora-dropout and --lora-target-modules, or --lora-init.", "lora_init");
            if (r.GetValue(loraDropout) is double p && !(p is >= 0 and < 1))
                throw new ArgumentException($"lora_dropout: {p} is not a probability below 1; give a number from 0 (no dropout) up to, not including, 1.", "lora_dropout");
            if (r.GetValue(loraR) is int badRank && badRank < 1)
                throw new ArgumentException($"lora_r: {badRank}; the rank must be at least 1.", "lora_r");
            if (r.GetValue(loraAlpha) is double badAlpha && !(badAlpha > 0 && double.IsFinite(badAlpha)))
                throw new ArgumentException($"lora_alpha: {badAlpha}; give a number above 0.", "lora_alpha");
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
            // A LoRA checkpoint holds the adapter (adapter_config.json), a full one the model; LoRA resumes on the base model.
            bool resumeLora = resumeDir is not null && File.Exists(Path.Combine(resumeDir, LoraAdapter.ConfigFileName));
            bool lora = loraShape || initDir is not null || resumeLora;
            if (resumeDir is not null && lora && !resumeLora)
                throw new ArgumentException($"resume: '{resumeDir}' is a full fine-tuning checkpoint (no {LoraAdapter.ConfigFileName}); drop the --lora-* options to resume it.", "resume");
            CliCommon.Doing = $"loading {(lora ? dir : resumeDir ?? dir)}";
            using T5TrainingModel t5 = T5TrainingModel.Load(lora ? dir : resumeDir ?? dir, new TrainingModelOptions { Threads = r.GetValue(threads), DropoutRate = r.GetValue(dropoutRate) });
            if (lora)
            {
                LoraAdapter adapter;
                if ((resumeLora ? resumeDir : initDir) is string adapterDir)
                {
                    CliCommon.Doing = $"loading the adapter in {adapterDir}";
                    adapter = LoraAdapter.Load(adapterDir);
                    adapter.CheckFits(t5.Modules, t5.Config, adapterDir);
                }
                else
                {
                    var config = new LoraConfig { BaseModelNameOrPath = r.GetValue(model) };
                    if (r.GetValue(loraR) is int rank) config = config with { R = rank };
                    if (r.GetValue(loraAlpha) is double alpha) config = config with { LoraAlpha = alpha };
                    if (r.GetValue(loraDropout) is double dropout) config = config with { LoraDropout = dropout };
                    if (r.GetValue(loraTargets) is { Length: > 0 } targets)   // "q v" or "q,v"
                        config = config with { TargetModules = [.. targets.SelectMany(t => t.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))] };
                    adapter = LoraAdapter.Create(config, t5.Modules, t5.Config, r.GetValue(seed));
                }
                t5.AttachLora(adapter);
            }
            var train = new TrainingData(examples, tokenizer, r.GetValue(maxSource), r.GetValue(maxTarget), t5.Config.DecoderStartTokenId,
                                         !r.GetValue(noShuffle), r.GetValue(seed), r.GetValue(data)!);
            TrainingData? eval = r.GetValue(evalData) is string e
                ? new TrainingData(TrainingDataFile.ReadJsonLines(e, r.GetValue(inputField)!, r.GetValue(targetField)!, "eval_data"), tokenizer,
                                   r.GetValue(maxSource), r.GetValue(maxTarget), t5.Config.DecoderStartTokenId, false, 0, e)
                : null;
            var trainer = new Trainer(lora ? new LoraTrainable(t5) : new T5Trainable(t5, dir), train, args, eval);
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
                        Console.WriteLine(JsonSerializer.Serialize(new { step = log.Step, loss = log.Loss, learning_rate = log.LearningRate, grad_norm = log.GradNorm, eval_loss = log.EvalLoss, tokens = log.Tokens, seconds = log.Seconds }));
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
                output = outDir, lora, steps = result.Steps, dropout_rate = t5.Config.DropoutRate, lora_dropout = t5.LoraConfig?.LoraDropout, train_loss = result.Logs.Count > 0 ? result.Logs.Average(l => l.Loss) : (double?)null,
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
