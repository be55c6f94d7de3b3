// managedt5 generate: prompts (arguments, --input-file or --input-ids) in one batch, HF-named decoding flags whose help
// shows HF's defaults, and text / JSON / streamed (plain or JSON lines) output.
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
        var dtype = new Option<string?>("--dtype") { HelpName = "type", Description = "Keep weights as f32, bf16, f16 or int8 (default: as stored)" };
        Option<int> threads = CliCommon.ThreadsOption(0);
        Option<string?> adapter = CliCommon.AdapterOption();
        var json = new Option<bool>("--json") { Description = "Print {input_ids, sequences, sequences_scores, texts} as JSON; with --stream, JSON lines" };
        var stream = new Option<bool>("--stream")
        {
            Description = "Print text as it is generated (one prompt, greedy or sampling); with --json one {\"text\"} line per piece, " +
                          "then {input_ids, sequences, texts, finish_reason}",
        };
        var inputIds = new Option<string?>("--input-ids") { Description = "Token ids instead of text: \"1,2,3;4,5\" (rows separated by ';')" };
        Option<string?> inputFile = TokenizeCommands.InputFileOption("Prompts");
        // One flag per option of the table (--num-beams for num_beams), its help the table's meaning and default.
        (GenerationOptionInfo Info, Option Flag)[] decoding = DecodingFlags.Create();
        var prompts = new Argument<string[]>("prompt")
        {
            Arity = ArgumentArity.ZeroOrMore,
            Description = "Prompts, one batch (a prompt that starts with '-' goes after --: generate -- \"-5 is negative\")",
        };

        var command = new Command("generate", "Generate text for prompts. Unset decoding flags take the model's " +
                                              "generation_config.json, else HF's default (shown)")
        {
            model, device, dtype, threads, adapter, json, stream, inputFile, inputIds, prompts,
        };
        foreach (var (_, flag) in decoding) command.Options.Add(flag);
        inputIds.HelpName = "ids";
        Option<string> compat = TokenizeCommands.TokenizerCompatOption();
        command.Options.Add(compat);
        command.SetAction(r =>
        {
            string? ids = r.GetValue(inputIds);
            string[] texts = [];
            if (ids is null) texts = TokenizeCommands.Texts(r.GetValue(prompts), r.GetValue(inputFile), "prompt (or --input-ids)");
            else if (r.GetValue(prompts) is { Length: > 0 } || r.GetValue(inputFile) is not null)
                throw new ArgumentException("--input-ids: give either prompts (arguments or --input-file) or --input-ids, not both.");
            int[][]? parsedIds = ids is null ? null : ParseIds(ids);
            WeightFormat? format = ParseDType(r.GetValue(dtype));
            var given = DecodingFlags.Given(r, decoding);

            string dir = CliCommon.ResolveModel(r, r.GetValue(model)!);
            CliCommon.Doing = $"loading the model from {dir}";
            using T5TextGenerator generator = T5TextGenerator.Load(dir, new T5LoadOptions
            {
                Device = r.GetValue(device)!,
                Threads = r.GetValue(threads),
                WeightFormat = format,
                Adapter = r.GetValue(adapter),
                TokenizerCompat = TokenizeCommands.ParseCompat(r.GetValue(compat)),
            });
            GenerationOptions o = generator.DefaultOptions;
            foreach (var (info, value) in given) o = info.Set(o, value);

            CliCommon.Doing = "tokenizing the prompts";
            int[][] input = parsedIds ?? generator.Encode(texts);
            CliCommon.Doing = $"generating for {input.Length} prompt(s)";
            if (r.GetValue(stream)) return Stream(generator, input, o, r.GetValue(json));

            GenerationOutput output = generator.GenerateIds(input, o);
            string[] decoded = output.Sequences.Select(s => generator.Tokenizer.Decode(s)).ToArray();
            if (r.GetValue(json))
            {
                var result = new Dictionary<string, object>
                {
                    ["input_ids"] = output.InputIds,
                    ["sequences"] = output.Sequences,
                };
                if (output.SequencesScores is not null) result["sequences_scores"] = JsonScores(output.SequencesScores);
                result["texts"] = decoded;
                Console.WriteLine(JsonSerializer.Serialize(result, CliCommon.Json));
            }
            else
            {
                foreach (string text in decoded) Console.WriteLine(text);
            }
            return 0;
        });
        return command;
    }

    /// <summary>--stream: the text of one prompt as tokens are chosen (a character is never printed half-made); with
    /// --json one {"text": piece} line per piece and a last line with the ids and why generation stopped.</summary>
    private static int Stream(T5TextGenerator generator, int[][] input, GenerationOptions o, bool json)
    {
        if (input.Length != 1) throw new ArgumentException($"stream: give exactly one prompt (got {input.Length}).", "stream");
        if (o.NumBeams > 1) throw new ArgumentException("stream: needs greedy search or sampling; beam search (num_beams > 1) does not stream.", "stream");
        if (o.NumReturnSequences > 1) throw new ArgumentException("stream: yields one sequence; drop num_return_sequences.", "stream");
        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
        var tokens = new List<int>();
        int emitted = 0;
        GenerationOutput output = Generator.Generate(generator.Model, input, o, cancel.Token, (_, token) =>
        {
            tokens.Add(token);
            string text = generator.Tokenizer.Decode(tokens.ToArray());
            int end = text.Length;
            if (end > 0 && (char.IsHighSurrogate(text[end - 1]) || text[end - 1] == '\uFFFD')) end--;   // wait for the rest
            if (end <= emitted) return;
            string piece = text[emitted..end];
            emitted = end;
            if (json) Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, string> { ["text"] = piece }, CliCommon.Json));
            else Console.Write(piece);
        });
        string full = generator.Tokenizer.Decode(output.Sequences[0]);
        if (!json)
        {
            Console.WriteLine(full.Length > emitted ? full[emitted..] : "");
            return 0;
        }
        if (full.Length > emitted)
            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, string> { ["text"] = full[emitted..] }, CliCommon.Json));
        int eos = o.EosTokenId ?? generator.Model.Config.EosTokenId;
        Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["input_ids"] = output.InputIds,
            ["sequences"] = output.Sequences,
            ["texts"] = new[] { full },
            ["finish_reason"] = output.Sequences[0].Contains(eos) ? "eos" : "length",
        }, CliCommon.Json));
        return 0;
    }

    /// <summary>"1,2,3;4,5" as rows of ids; an empty row (";;", a trailing ';', or nothing) is an error naming it.</summary>
    /// <summary>Beam scores for JSON: a beam whose every continuation was banned scores -inf (as in HF), which JSON cannot
    /// spell, so it is written as null.</summary>
    internal static float?[] JsonScores(float[] scores) => scores.Select(s => float.IsFinite(s) ? s : (float?)null).ToArray();

    private static int[][] ParseIds(string text)
    {
        string[] rows = text.Split(';');
        var ids = new int[rows.Length][];
        for (int i = 0; i < rows.Length; i++)
        {
            string[] fields = rows[i].Split([',', ' ', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (fields.Length == 0)
                throw new ArgumentException($"--input-ids: row {i + 1} of {rows.Length} is empty; give ids like \"1,2,3;4,5\" (rows separated by ';').");
            ids[i] = fields.Select(s => int.TryParse(s, out int v) ? v
                : throw new ArgumentException($"--input-ids: '{s}' in row {i + 1} is not an integer.")).ToArray();
        }
        return ids;
    }

    internal static WeightFormat? ParseDType(string? value) => value?.ToLowerInvariant() switch
    {
        null => null,
        "f32" or "fp32" or "float32" => WeightFormat.F32,
        "bf16" or "bfloat16" => WeightFormat.BF16,
        "f16" or "fp16" or "float16" => WeightFormat.F16,
        "int8" or "i8" => WeightFormat.Int8,
        _ => throw new ArgumentException($"--dtype: '{value}' is not one of f32, bf16, f16, int8."),
    };
}
