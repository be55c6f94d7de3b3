// managedt5 embed: sentence embeddings of texts (arguments, --input-file or standard input) with a sentence-transformers
// T5 folder or a plain T5 folder; one vector per line, or {"embeddings", "dim"} with --json; --similarity adds the
// cosine matrix. Progress goes to stderr for inputs of more than one batch.
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ManagedT5.Embeddings;
using ManagedT5.Kernels;

namespace ManagedT5.Cli;

internal static class EmbedCommand
{
    public static Command Create()
    {
        Option<string> model = CliCommon.ModelOption();
        model.Description = "sentence-transformers folder (modules.json; sentence-t5, GTR), T5 / Flan-T5 folder (encoder + mean pooling) or hub id";
        Option<string> device = CliCommon.DeviceOption();
        Option<int> threads = CliCommon.ThreadsOption(0);
        var dtype = new Option<string?>("--dtype") { HelpName = "type", Description = "Keep encoder weights as f32, bf16, f16 or int8 (default: as stored)" };
        var json = new Option<bool>("--json") { Description = "Print {\"embeddings\": [[...]], \"dim\": N, \"token_counts\", \"truncated_texts\"} (and \"similarity\")" };
        var similarity = new Option<bool>("--similarity") { Description = "Print the cosine similarity matrix of the texts (with --json: a \"similarity\" field)" };
        var batchSize = new Option<int>("--batch-size") { HelpName = "n", Description = "Texts per encoder batch", DefaultValueFactory = _ => 32 };
        var maxSeqLength = new Option<int?>("--max-seq-length")
        {
            HelpName = "n", Description = "Most tokens per text, </s> included; longer texts are cut (default: sentence_bert_config.json, else 512)",
        };
        var normalize = new Option<bool>("--normalize") { Description = "L2-normalize the embeddings even without a Normalize module" };
        var noNormalize = new Option<bool>("--no-normalize") { Description = "Skip the model's Normalize module" };
        Option<string?> inputFile = TokenizeCommands.InputFileOption("Texts to embed");
        var texts = new Argument<string[]>("text")
        {
            Arity = ArgumentArity.ZeroOrMore,
            Description = "Texts to embed (a text that starts with '-' goes after --: embed -- \"-x\")",
        };
        var command = new Command("embed", "Sentence embeddings of texts, as sentence-transformers computes them (special-token " +
                                           "spellings in texts are plain text)")
        {
            model, device, dtype, threads, json, similarity, batchSize, maxSeqLength, normalize, noNormalize, inputFile, texts,
        };
        command.SetAction(r =>
        {
            string[] input = TokenizeCommands.Texts(r.GetValue(texts), r.GetValue(inputFile), "text");
            if (r.GetValue(normalize) && r.GetValue(noNormalize))
                throw new ArgumentException("--normalize: give --normalize or --no-normalize, not both.");
            var options = new T5EmbedderOptions
            {
                Device = r.GetValue(device)!,
                Threads = r.GetValue(threads),
                WeightFormat = GenerateCommand.ParseDType(r.GetValue(dtype)),
                BatchSize = r.GetValue(batchSize),
                MaxSeqLength = r.GetValue(maxSeqLength),
                Normalize = r.GetValue(normalize) ? true : r.GetValue(noNormalize) ? false : null,
            };
            string dir = CliCommon.ResolveModel(r, r.GetValue(model)!);
            CliCommon.Doing = $"loading the embedding model from {dir}";
            using T5Embedder embedder = T5Embedder.Load(dir, options);

            CliCommon.Doing = $"embedding {input.Length} text(s)";
            using var cancel = new CancellationTokenSource();
            Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
            EmbeddingBatchResult result = embedder.Embed(input, Progress(input.Length, options.BatchSize), cancel.Token);
            if (result.TruncatedTexts > 0)
                Console.Error.WriteLine($"note: {result.TruncatedTexts} of {input.Length} text(s) were longer than {embedder.MaxSeqLength} tokens " +
                                        "and were cut (--max-seq-length).");
            float[][]? cosine = r.GetValue(similarity)
                ? result.Embeddings.Select(a => result.Embeddings.Select(b => T5Embedder.Cosine(a, b)).ToArray()).ToArray()
                : null;

            if (r.GetValue(json))
            {
                var document = new Dictionary<string, object>
                {
                    ["embeddings"] = result.Embeddings,
                    ["dim"] = embedder.Dimension,
                    ["token_counts"] = result.TokenCounts,
                    ["truncated_texts"] = result.TruncatedTexts,
                };
                if (cosine is not null) document["similarity"] = cosine;
                Console.WriteLine(JsonSerializer.Serialize(document, CliCommon.Json));
            }
            else
            {
                using var stdout = new StreamWriter(Console.OpenStandardOutput()) { AutoFlush = false };
                foreach (float[] row in cosine ?? result.Embeddings)
                    stdout.WriteLine(string.Join(' ', row.Select(v => v.ToString(cosine is null ? "R" : "F6", CultureInfo.InvariantCulture))));
            }
            return 0;
        });
        return command;
    }

    /// <summary>Texts done so far on stderr, for inputs of more than one batch: a line rewritten in place on a terminal,
    /// else a line per tenth.</summary>
    private static IProgress<int>? Progress(int total, int batchSize)
    {
        if (total <= batchSize) return null;
        int lastTenth = 0;
        bool terminal = !Console.IsErrorRedirected;
        return new SyncProgress(done =>
        {
            if (terminal)
            {
                Console.Error.Write($"\rembedded {done}/{total} texts");
                if (done == total) Console.Error.WriteLine();
            }
            else if (done * 10 / total > lastTenth || done == total)
            {
                lastTenth = done * 10 / total;
                Console.Error.WriteLine($"embedded {done}/{total} texts");
            }
        });
    }

    /// <summary>Reports on the embedding thread (Progress&lt;T&gt; would post to the thread pool and print out of order).</summary>
    private sealed class SyncProgress(Action<int> report) : IProgress<int>
    {
        public void Report(int value) => report(value);
    }
}
