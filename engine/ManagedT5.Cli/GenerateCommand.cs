// managedt5 generate: prompts (or --input-ids) in one batch, HF-named decoding flags, text / JSON / streamed output.
using System.CommandLine;
using System.Text.Json;
using ManagedT5.Generation;
using ManagedT5.Kernels;

namespace ManagedT5.Cli;

internal static class GenerateCommand
{
    public static Command Create()
    {
        Option<string> model = CliCommon.ModelOption();
        Option<string> device = CliCommon.DeviceOption();
        var dtype = new Option<string?>("--dtype") { Description = "Keep weights as f32, bf16 or int8 (default: as stored)" };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0: all cores)" };
        var json = new Option<bool>("--json") { Description = "Print {input_ids, sequences, sequences_scores, texts} as JSON" };
        var stream = new Option<bool>("--stream") { Description = "Print text as it is generated (one prompt, greedy or sampling)" };
        var inputIds = new Option<string?>("--input-ids") { Description = "Token ids instead of text: \"1,2,3;4,5\" (rows separated by ';')" };
        var maxNewTokens = new Option<int?>("--max-new-tokens");
        var maxLength = new Option<int?>("--max-length");
        var minLength = new Option<int?>("--min-length");
        var minNewTokens = new Option<int?>("--min-new-tokens");
        var numBeams = new Option<int?>("--num-beams");
        var lengthPenalty = new Option<float?>("--length-penalty");
        var earlyStopping = new Option<string?>("--early-stopping") { Description = "true, false or never" };
        var numReturn = new Option<int?>("--num-return-sequences");
        var doSample = new Option<bool?>("--do-sample");
        var temperature = new Option<float?>("--temperature");
        var topK = new Option<int?>("--top-k");
        var topP = new Option<float?>("--top-p");
        var repetition = new Option<float?>("--repetition-penalty");
        var noRepeat = new Option<int?>("--no-repeat-ngram-size");
        var seed = new Option<ulong?>("--seed");
        var eos = new Option<int?>("--eos-token-id");
        var pad = new Option<int?>("--pad-token-id");
        var start = new Option<int?>("--decoder-start-token-id");
        var maxInput = new Option<int?>("--max-input-tokens") { Description = "Refuse prompts longer than this (default 4096)" };
        var prompts = new Argument<string[]>("prompt") { Arity = ArgumentArity.ZeroOrMore, Description = "Prompts (one batch)" };

        var command = new Command("generate", "Generate text for prompts")
        {
            model, device, dtype, threads, json, stream, inputIds, maxNewTokens, maxLength, minLength, minNewTokens, numBeams,
            lengthPenalty, earlyStopping, numReturn, doSample, temperature, topK, topP, repetition, noRepeat, seed, eos, pad,
            start, maxInput, prompts,
        };
        command.SetAction(r => CliCommon.Run(() =>
        {
            string[] texts = r.GetValue(prompts) ?? [];
            string? ids = r.GetValue(inputIds);
            if (texts.Length == 0 && ids is null) throw new ArgumentException("prompt: give at least one prompt, or --input-ids.");
            if (texts.Length > 0 && ids is not null) throw new ArgumentException("--input-ids: give either prompts or --input-ids, not both.");

            using T5TextGenerator generator = T5TextGenerator.Load(CliCommon.ResolveModel(r.GetValue(model)!), new T5LoadOptions
            {
                Device = r.GetValue(device)!,
                Threads = r.GetValue(threads),
                WeightFormat = ParseDType(r.GetValue(dtype)),
            });
            GenerationOptions d = generator.DefaultOptions;
            GenerationOptions o = d with
            {
                MaxNewTokens = r.GetValue(maxNewTokens) ?? d.MaxNewTokens,
                MaxLength = r.GetValue(maxLength) ?? d.MaxLength,
                MinLength = r.GetValue(minLength) ?? d.MinLength,
                MinNewTokens = r.GetValue(minNewTokens) ?? d.MinNewTokens,
                NumBeams = r.GetValue(numBeams) ?? d.NumBeams,
                LengthPenalty = r.GetValue(lengthPenalty) ?? d.LengthPenalty,
                EarlyStopping = ParseEarlyStopping(r.GetValue(earlyStopping)) ?? d.EarlyStopping,
                NumReturnSequences = r.GetValue(numReturn) ?? d.NumReturnSequences,
                DoSample = r.GetValue(doSample) ?? d.DoSample,
                Temperature = r.GetValue(temperature) ?? d.Temperature,
                TopK = r.GetValue(topK) ?? d.TopK,
                TopP = r.GetValue(topP) ?? d.TopP,
                RepetitionPenalty = r.GetValue(repetition) ?? d.RepetitionPenalty,
                NoRepeatNgramSize = r.GetValue(noRepeat) ?? d.NoRepeatNgramSize,
                Seed = r.GetValue(seed) ?? d.Seed,
                EosTokenId = r.GetValue(eos) ?? d.EosTokenId,
                PadTokenId = r.GetValue(pad) ?? d.PadTokenId,
                DecoderStartTokenId = r.GetValue(start) ?? d.DecoderStartTokenId,
                MaxInputTokens = r.GetValue(maxInput) ?? d.MaxInputTokens,
            };

            if (r.GetValue(stream))
            {
                if (texts.Length != 1) throw new ArgumentException("--stream: give exactly one prompt.");
                using var cancel = new CancellationTokenSource();
                Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
                var pieces = generator.StreamAsync(texts[0], o, cancel.Token).GetAsyncEnumerator(cancel.Token);
                while (pieces.MoveNextAsync().AsTask().GetAwaiter().GetResult()) Console.Write(pieces.Current);
                Console.WriteLine();
                return 0;
            }

            int[][] input = ids is not null ? ParseIds(ids) : generator.Encode(texts);
            GenerationOutput output = generator.GenerateIds(input, o);
            string[] decoded = output.Sequences.Select(s => generator.Tokenizer.Decode(s)).ToArray();
            if (r.GetValue(json))
            {
                var result = new Dictionary<string, object>
                {
                    ["input_ids"] = output.InputIds,
                    ["sequences"] = output.Sequences,
                };
                if (output.SequencesScores is not null) result["sequences_scores"] = output.SequencesScores;
                result["texts"] = decoded;
                Console.WriteLine(JsonSerializer.Serialize(result, CliCommon.Json));
            }
            else
            {
                foreach (string text in decoded) Console.WriteLine(text);
            }
            return 0;
        }));
        return command;
    }

    private static int[][] ParseIds(string text) =>
        text.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select((row, i) => row.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => int.TryParse(s, out int v) ? v : throw new ArgumentException($"--input-ids: '{s}' in row {i} is not an integer."))
                .ToArray())
            .ToArray();

    private static WeightFormat? ParseDType(string? value) => value?.ToLowerInvariant() switch
    {
        null => null,
        "f32" or "fp32" or "float32" => WeightFormat.F32,
        "bf16" or "bfloat16" => WeightFormat.BF16,
        "f16" or "fp16" or "float16" => WeightFormat.F16,
        "int8" or "i8" => WeightFormat.Int8,
        _ => throw new ArgumentException($"--dtype: '{value}' is not one of f32, bf16, f16, int8."),
    };

    private static EarlyStopping? ParseEarlyStopping(string? value) => value?.ToLowerInvariant() switch
    {
        null => null,
        "true" => EarlyStopping.True,
        "false" => EarlyStopping.False,
        "never" => EarlyStopping.Never,
        _ => throw new ArgumentException($"--early-stopping: '{value}' is not true, false or never."),
    };
}
