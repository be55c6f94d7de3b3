// managedt5 eval: runs a model over an evaluation set (JSONL, CSV or TSV with a header) and reports the teacher-forced
// loss and perplexity, rank-classification accuracy over each example's options, and BLEU, chrF, TER, ROUGE and exact
// match of generated predictions against the targets; optionally every example's prediction and loss as JSONL.
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using ManagedT5.Evaluation;
using ManagedT5.Generation;

namespace ManagedT5.Cli;

internal static class EvalCommand
{
    /// <summary>Every metric --metrics accepts ("perplexity" is the same as "loss": one gives both).</summary>
    public static readonly string[] MetricNames = ["loss", "accuracy", "exact", "bleu", "chrf", "chrf++", "ter", "rouge"];

    /// <summary>Metrics of generated predictions (the others need no generation).</summary>
    private static readonly string[] GenerationMetrics = ["exact", "bleu", "chrf", "chrf++", "ter", "rouge"];

    /// <summary>One example: the line (or CSV record) it starts on, its input, its references and any options.</summary>
    internal sealed record Example(int Line, string Input, string[] Targets, bool TargetIsList, string[]? Options);

    public static Command Create()
    {
        Option<string> model = CliCommon.ModelOption();
        Option<string> device = CliCommon.DeviceOption();
        Option<int> threads = CliCommon.ThreadsOption(0);
        Option<string?> adapter = CliCommon.AdapterOption();
        var data = new Option<string>("--data")
        {
            Description = "Evaluation set: JSONL (one object per line), or .csv / .tsv with a header row", HelpName = "file", Required = true,
        };
        var inputField = new Option<string>("--input-field") { Description = "Field (column) holding the input", HelpName = "name", DefaultValueFactory = _ => "input" };
        var targetField = new Option<string>("--target-field")
        {
            Description = "Field (column) holding the target; in JSONL a string or a list of references (loss scores the first)", HelpName = "name", DefaultValueFactory = _ => "target",
        };
        var optionsField = new Option<string>("--options-field")
        {
            Description = "JSONL field listing an example's options (rank classification)", HelpName = "name", DefaultValueFactory = _ => "options",
        };
        var metrics = new Option<string?>("--metrics")
        {
            Description = $"Comma-separated metrics: {string.Join(", ", MetricNames)} (default: loss, exact, bleu, chrf, rouge, " +
                          "and accuracy when the set has options)",
            HelpName = "list",
        };
        var batchSize = new Option<int>("--batch-size") { Description = "Examples per batch", HelpName = "n", DefaultValueFactory = _ => 8 };
        var limit = new Option<int?>("--limit") { Description = "Evaluate only the first n examples", HelpName = "n" };
        var predictions = new Option<string?>("--predictions")
        {
            Description = "Write each example's input, target, prediction and loss to this JSONL file", HelpName = "file",
        };
        var json = new Option<bool>("--json") { Description = "Print one JSON object with every metric, n and examples/s" };
        (GenerationOptionInfo Info, Option Flag)[] decoding = DecodingFlags.Create();

        var command = new Command("eval", "Evaluate a model on a data set: loss, perplexity, rank-classification accuracy, " +
                                          "BLEU, chrF, TER, ROUGE, exact match. Decoding flags apply to the generated predictions")
        {
            model, device, threads, adapter, data, inputField, targetField, optionsField, metrics, batchSize, limit, predictions, json,
        };
        foreach (var (_, flag) in decoding) command.Options.Add(flag);
        Option<string> compat = TokenizeCommands.TokenizerCompatOption();
        command.Options.Add(compat);
        command.SetAction(r =>
        {
            int batch = r.GetValue(batchSize);
            if (batch < 1) throw new ArgumentException($"batch_size: give at least 1 (got {batch}).", "batch_size");
            int? max = r.GetValue(limit);
            if (max < 1) throw new ArgumentException($"limit: give at least 1 (got {max}).", "limit");
            var given = DecodingFlags.Given(r, decoding);
            string dataPath = r.GetValue(data)!;
            CliCommon.Doing = $"reading {dataPath}";
            List<Example> examples = ReadData(dataPath, r.GetValue(inputField)!, r.GetValue(targetField)!, r.GetValue(optionsField)!, max);
            List<string> wanted = ParseMetrics(r.GetValue(metrics), examples, dataPath, r.GetValue(optionsField)!);

            string dir = CliCommon.ResolveModel(r, r.GetValue(model)!);
            CliCommon.Doing = $"loading the model from {dir}";
            using T5TextGenerator t5 = T5TextGenerator.Load(dir, new T5LoadOptions
            {
                Device = r.GetValue(device)!,
                Threads = r.GetValue(threads),
                Adapter = r.GetValue(adapter),
                TokenizerCompat = TokenizeCommands.ParseCompat(r.GetValue(compat)),
            });
            if (!t5.Model.HasDecoder) throw new ArgumentException($"model: '{dir}' is an encoder-only model; eval needs a decoder.", "model");
            GenerationOptions o = t5.DefaultOptions;
            foreach (var (info, value) in given) o = info.Set(o, value);
            if (o.NumReturnSequences > 1)
                throw new ArgumentException("num_return_sequences: eval scores one prediction per example; drop it.", "num_return_sequences");

            Run run = Evaluate(t5, examples, wanted, o, batch);
            var result = Report(run, examples, wanted, given);
            if (r.GetValue(predictions) is { } path) WritePredictions(path, examples, run);
            if (r.GetValue(json)) Console.WriteLine(JsonSerializer.Serialize(result, CliCommon.Json));
            else PrintTable(result);
            return 0;
        });
        return command;
    }

    /// <summary>What the model produced for the set: per example its target score, prediction and best options.</summary>
    internal sealed class Run
    {
        public TargetScore?[] Loss = [];
        public string?[] Predictions = [];
        public int[] BestBySum = [], BestByMean = [];
        public double Seconds;
    }

    private static Run Evaluate(T5TextGenerator t5, List<Example> examples, List<string> wanted, GenerationOptions o, int batch)
    {
        int n = examples.Count;
        var run = new Run { Loss = new TargetScore?[n], Predictions = new string?[n], BestBySum = new int[n], BestByMean = new int[n] };
        bool loss = wanted.Contains("loss"), generate = wanted.Any(GenerationMetrics.Contains), accuracy = wanted.Contains("accuracy");
        bool progress = !Console.IsErrorRedirected;
        Stopwatch clock = Stopwatch.StartNew();
        for (int start = 0; start < n; start += batch)
        {
            List<Example> chunk = examples.GetRange(start, Math.Min(batch, n - start));
            CliCommon.Doing = $"evaluating examples {start + 1}..{start + chunk.Count} (from line {chunk[0].Line})";
            int[][] inputs = chunk.Select(e => t5.Tokenizer.Encode(e.Input)).ToArray();
            if (loss)
            {
                TargetScore[] scores = TargetLikelihood.Score(t5.Model, inputs, chunk.Select(e => t5.Tokenizer.Encode(e.Targets[0])).ToArray());
                for (int i = 0; i < chunk.Count; i++) run.Loss[start + i] = scores[i];
            }
            if (generate)
            {
                GenerationOutput output = t5.GenerateIds(inputs, o);
                for (int i = 0; i < chunk.Count; i++) run.Predictions[start + i] = t5.Tokenizer.Decode(output.Sequences[i]);
            }
            for (int i = 0; i < chunk.Count; i++)
            {
                run.BestBySum[start + i] = run.BestByMean[start + i] = -1;
                if (!accuracy || chunk[i].Options is not { } options) continue;
                TargetScore[] scores = TargetLikelihood.ScoreOptions(t5.Model, inputs[i], options.Select(x => t5.Tokenizer.Encode(x)).ToArray());
                run.BestBySum[start + i] = TargetLikelihood.Best(scores, lengthNormalised: false);
                run.BestByMean[start + i] = TargetLikelihood.Best(scores, lengthNormalised: true);
            }
            if (progress) Progress(start + chunk.Count, n, clock.Elapsed.TotalSeconds);
        }
        if (progress) Console.Error.WriteLine();
        run.Seconds = clock.Elapsed.TotalSeconds;
        return run;
    }

    // One line on a terminal's stderr, redrawn in place: a bar, examples done, rate and time left.
    private static void Progress(int done, int total, double seconds)
    {
        const int width = 30;
        int filled = (int)((long)done * width / total);
        double rate = seconds > 0 ? done / seconds : 0;
        string eta = rate > 0 ? TimeSpan.FromSeconds(Math.Round((total - done) / rate)).ToString() : "?";
        Console.Error.Write($"\r[{new string('#', filled)}{new string('.', width - filled)}] {done}/{total}  {rate:0.0} examples/s  ETA {eta}  ");
    }

    private static Dictionary<string, object> Report(Run run, List<Example> examples, List<string> wanted, (GenerationOptionInfo Info, object Value)[] given)
    {
        int n = examples.Count;
        var result = new Dictionary<string, object>(StringComparer.Ordinal) { ["n"] = n };
        if (wanted.Contains("loss"))
        {
            double sum = run.Loss.Sum(s => s!.Value.LogLikelihood);
            int tokens = run.Loss.Sum(s => s!.Value.Tokens);
            result["loss"] = -sum / tokens;                     // token-weighted over the whole set, as HF's batch loss
            result["perplexity"] = Math.Exp(-sum / tokens);
            result["loss_tokens"] = tokens;
        }
        if (wanted.Contains("accuracy"))
        {
            var scored = Enumerable.Range(0, n).Where(i => run.BestBySum[i] >= 0).ToList();
            bool Hit(int i, int best) => examples[i].Targets.Contains(examples[i].Options![best], StringComparer.Ordinal);
            result["accuracy"] = new Dictionary<string, object>
            {
                ["score"] = (double)scored.Count(i => Hit(i, run.BestBySum[i])) / scored.Count,
                ["length_normalised"] = (double)scored.Count(i => Hit(i, run.BestByMean[i])) / scored.Count,
                ["n"] = scored.Count,
                ["method"] = "rank classification: the option with the highest log-likelihood given the input (score: summed over " +
                             "its tokens; length_normalised: mean per token) against the target",
            };
        }
        var predictions = run.Predictions.Select(p => p ?? "").ToList();
        IReadOnlyList<IReadOnlyList<string>> refs = examples.Select(e => (IReadOnlyList<string>)e.Targets).ToList();
        if (wanted.Contains("exact")) result["exact"] = ScoreCommand.ExactResult(predictions, refs);
        if (wanted.Contains("bleu")) result["bleu"] = ScoreCommand.BleuResult(new Bleu().CorpusScore(predictions, refs));
        if (wanted.Contains("chrf")) result["chrf"] = ScoreCommand.ChrfResult(new Chrf().CorpusScore(predictions, refs));
        if (wanted.Contains("chrf++")) result["chrf++"] = ScoreCommand.ChrfResult(new Chrf(ChrfOptions.ChrfPlusPlus).CorpusScore(predictions, refs));
        if (wanted.Contains("ter")) result["ter"] = ScoreCommand.TerResult(new Ter().CorpusScore(predictions, refs));
        if (wanted.Contains("rouge"))
        {
            var rouge = new Rouge(new RougeOptions());
            foreach (string type in new[] { "rouge1", "rouge2", "rougeL", "rougeLsum" })
                result[type] = ScoreCommand.RougeResult(rouge, type, predictions, refs);
        }
        if (wanted.Any(GenerationMetrics.Contains))
            result["generation"] = given.ToDictionary(g => g.Info.Name, g => g.Value is EarlyStopping e ? e.ToString().ToLowerInvariant() : g.Value);
        result["examples_per_second"] = run.Seconds > 0 ? n / run.Seconds : 0;
        return result;
    }

    private static void PrintTable(Dictionary<string, object> result)
    {
        string F(object v) => ((double)v).ToString("0.0000", CultureInfo.InvariantCulture);
        Console.WriteLine($"{"examples",-12}{result["n"]}");
        if (result.TryGetValue("loss", out object? loss))
            Console.WriteLine($"{"loss",-12}{F(loss)}  (perplexity {F(result["perplexity"])}, {result["loss_tokens"]} target tokens)");
        if (result.TryGetValue("accuracy", out object? acc))
        {
            var a = (Dictionary<string, object>)acc;
            Console.WriteLine($"{"accuracy",-12}{F(a["score"])}  (length-normalised {F(a["length_normalised"])}, {a["n"]} examples with options)");
        }
        foreach (var (name, value) in result)
            if (name is not ("n" or "loss" or "perplexity" or "loss_tokens" or "accuracy" or "generation" or "examples_per_second"))
                Console.WriteLine(ScoreCommand.TextLine(name, value));
        Console.WriteLine($"{"examples/s",-12}{((double)result["examples_per_second"]).ToString("0.00", CultureInfo.InvariantCulture)}");
    }

    /// <summary>--predictions: one JSON line per example, written to a temporary file beside the target and renamed
    /// over it at the end, so the file is never seen half-written.</summary>
    private static void WritePredictions(string path, List<Example> examples, Run run)
    {
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new ArgumentException($"predictions: '{path}' is a folder; give a file name.", "predictions");
        string temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var writer = new StreamWriter(temp, append: false, new UTF8Encoding(false)))
            {
                for (int i = 0; i < examples.Count; i++)
                {
                    Example e = examples[i];
                    var line = new Dictionary<string, object?>
                    {
                        ["input"] = e.Input,
                        ["target"] = e.TargetIsList ? e.Targets : e.Targets[0],
                        ["prediction"] = run.Predictions[i] ?? (run.BestBySum[i] >= 0 ? e.Options![run.BestBySum[i]] : null),
                        ["loss"] = run.Loss[i]?.Loss,
                    };
                    if (run.BestBySum[i] >= 0)
                    {
                        line["choice"] = e.Options![run.BestBySum[i]];
                        line["choice_length_normalised"] = e.Options![run.BestByMean[i]];
                    }
                    writer.WriteLine(JsonSerializer.Serialize(line, CliCommon.Json));
                }
            }
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>The metrics asked for, each once, in a fixed order; an unknown one, or accuracy on a set without options,
    /// is a usage error.</summary>
    private static List<string> ParseMetrics(string? list, List<Example> examples, string path, string optionsField)
    {
        bool hasOptions = examples.Any(e => e.Options is not null);
        if (list is null) return ["loss", .. hasOptions ? new[] { "accuracy" } : [], "exact", "bleu", "chrf", "rouge"];
        var asked = new HashSet<string>();
        foreach (string raw in list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            string name = raw.ToLowerInvariant() == "perplexity" ? "loss" : raw.ToLowerInvariant();
            if (!MetricNames.Contains(name))
                throw new ArgumentException($"metrics: unknown metric '{raw}'; choose from {string.Join(", ", MetricNames)}.", "metrics");
            asked.Add(name);
        }
        if (asked.Count == 0) throw new ArgumentException($"metrics: the list is empty; choose from {string.Join(", ", MetricNames)}.", "metrics");
        if (asked.Contains("accuracy") && !hasOptions)
            throw new ArgumentException($"metrics: accuracy needs examples with a '{optionsField}' list, and '{path}' has none; " +
                                        "drop accuracy or add options.", "metrics");
        return MetricNames.Where(asked.Contains).ToList();
    }

    // ---------------------------------------------------------------- data

    /// <summary>The examples of a JSONL, CSV or TSV file (by extension), at most <paramref name="limit"/>. Any problem is
    /// one error naming the file, the line and the field.</summary>
    internal static List<Example> ReadData(string path, string inputField, string targetField, string optionsField, int? limit)
    {
        byte[] bytes = ManagedT5.IO.InputFile.ReadAllBytes(path, CliCommon.MaxInputFileBytes, out string? problem);
        if (problem is not null) throw new ArgumentException($"data: {problem}", "data");
        string text = ManagedT5.IO.InputFile.DecodeUtf8(bytes, $"'{path}'", out string? notUtf8)
            ?? throw new ArgumentException($"data: {notUtf8}", "data");
        string extension = Path.GetExtension(path).ToLowerInvariant();
        List<Example> examples = extension is ".csv" or ".tsv"
            ? ReadTable(text, extension == ".tsv" ? '\t' : ',', path, inputField, targetField, limit)
            : ReadJsonLines(text, path, inputField, targetField, optionsField, limit);
        if (examples.Count == 0) throw new ArgumentException($"data: '{path}' holds no examples; give at least one.", "data");
        return examples;
    }

    private static List<Example> ReadJsonLines(string text, string path, string inputField, string targetField, string optionsField, int? limit)
    {
        var examples = new List<Example>();
        string[] lines = text.Split('\n');
        for (int i = 0; i < lines.Length && examples.Count < (limit ?? int.MaxValue); i++)
        {
            int number = i + 1;
            if (string.IsNullOrWhiteSpace(lines[i])) continue;
            JsonElement row;
            try
            {
                using JsonDocument doc = JsonDocument.Parse(lines[i]);
                row = doc.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw Bad(path, number, $"is not valid JSON ({e.Message.Split(" LineNumber")[0].TrimEnd('.')}); give one JSON object per line");
            }
            if (row.ValueKind != JsonValueKind.Object) throw Bad(path, number, $"is a JSON {row.ValueKind.ToString().ToLowerInvariant()}, not an object");
            string input = row.TryGetProperty(inputField, out JsonElement inputValue)
                ? Text(inputValue, path, number, inputField) : throw Missing(path, number, inputField, "--input-field");
            if (string.IsNullOrWhiteSpace(input)) throw Bad(path, number, $"field '{inputField}' is empty; give the input text");
            if (!row.TryGetProperty(targetField, out JsonElement targetValue)) throw Missing(path, number, targetField, "--target-field");
            bool isList = targetValue.ValueKind == JsonValueKind.Array;
            string[] targets = isList ? targetValue.EnumerateArray().Select(x => Text(x, path, number, targetField)).ToArray()
                                      : [Text(targetValue, path, number, targetField)];
            if (targets.Length == 0) throw Bad(path, number, $"field '{targetField}' is an empty list; give at least one reference");
            string[]? options = null;
            if (row.TryGetProperty(optionsField, out JsonElement optionsValue) && optionsValue.ValueKind != JsonValueKind.Null)
            {
                if (optionsValue.ValueKind != JsonValueKind.Array || optionsValue.GetArrayLength() == 0)
                    throw Bad(path, number, $"field '{optionsField}' is not a list of strings; give the options as [\"a\", \"b\"]");
                options = optionsValue.EnumerateArray().Select(x => Text(x, path, number, optionsField)).ToArray();
                if (!targets.Any(t => options.Contains(t, StringComparer.Ordinal)))
                    throw Bad(path, number, $"field '{targetField}' is not one of the '{optionsField}'; the target must be one of the options");
            }
            examples.Add(new Example(number, input, targets, isList, options));
        }
        return examples;
    }

    // A CSV (RFC 4180: fields may be quoted, "" inside quotes is a quote, quoted fields may hold newlines) or TSV file with
    // a header row naming the columns.
    private static List<Example> ReadTable(string text, char separator, string path, string inputField, string targetField, int? limit)
    {
        List<(int Line, List<string> Fields)> records = Records(text, separator, path);
        if (records.Count == 0) throw new ArgumentException($"data: '{path}' is empty; give a header row and examples.", "data");
        List<string> header = records[0].Fields;
        int Column(string field, string flag) => header.IndexOf(field) is int c and >= 0 ? c
            : throw Bad(path, records[0].Line, $"(the header) has no column '{field}'; name it there or pass {flag}");
        int input = Column(inputField, "--input-field"), target = Column(targetField, "--target-field");
        var examples = new List<Example>();
        foreach (var (line, fields) in records.Skip(1))
        {
            if (examples.Count >= (limit ?? int.MaxValue)) break;
            if (fields.Count == 1 && fields[0].Length == 0) continue;                           // a blank line
            if (fields.Count != header.Count)
                throw Bad(path, line, $"has {fields.Count} field(s) but the header has {header.Count}; quote fields that hold '{(separator == '\t' ? "\\t" : ",")}'");
            if (string.IsNullOrWhiteSpace(fields[input])) throw Bad(path, line, $"field '{inputField}' is empty; give the input text");
            examples.Add(new Example(line, fields[input], [fields[target]], false, null));
        }
        return examples;
    }

    private static List<(int Line, List<string> Fields)> Records(string text, char separator, string path)
    {
        var records = new List<(int, List<string>)>();
        var fields = new List<string>();
        var field = new StringBuilder();
        int line = 1, recordLine = 1;
        bool quoted = false, any = false;
        for (int i = 0; i < text.Length; i++)
        {
            char ch = text[i];
            if (quoted)
            {
                if (ch == '"' && i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                else if (ch == '"') quoted = false;
                else { if (ch == '\n') line++; field.Append(ch); }
                continue;
            }
            if (ch == '"' && field.Length == 0 && separator == ',') { quoted = true; any = true; }
            else if (ch == separator) { fields.Add(field.ToString()); field.Clear(); any = true; }
            else if (ch == '\n')
            {
                fields.Add(field.ToString().TrimEnd('\r'));
                records.Add((recordLine, fields));
                (fields, field, any) = (new List<string>(), new StringBuilder(), false);
                recordLine = ++line;
            }
            else { field.Append(ch); any = true; }
        }
        if (quoted) throw Bad(path, recordLine, "has a quoted field that never closes; end it with '\"'");
        if (any || field.Length > 0) { fields.Add(field.ToString().TrimEnd('\r')); records.Add((recordLine, fields)); }
        return records;
    }

    private static string Text(JsonElement value, string path, int line, string field) => value.ValueKind == JsonValueKind.String
        ? value.GetString()!
        : throw Bad(path, line, $"field '{field}' is a JSON {value.ValueKind.ToString().ToLowerInvariant()}, not a string");

    private static ArgumentException Missing(string path, int line, string field, string flag) =>
        Bad(path, line, $"has no field '{field}'; add it or name the field with {flag}");

    private static ArgumentException Bad(string path, int line, string what) =>
        new($"data: line {line} of '{path}' {what}.", "data");
}
