// Model-based evaluation: the teacher-forced loss against HF's labels= loss of the training fixture's batch, rank
// classification against option scores made independently (one option at a time, log-softmax in float), and
// `managedt5 eval` end to end on the tiny Flan-T5 fixture, with bad input giving one line and a non-zero exit.
using System.Text;
using System.Text.Json;
using ManagedT5.Evaluation;
using ManagedT5.Model;

namespace ManagedT5.Tests;

public sealed class EvalTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("managedt5-eval-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    static string Training(string name) => Path.Combine(Fixtures.Root, "training", name);

    static List<(string Input, string Target)> Instructions() => File.ReadAllLines(Training("instructions.jsonl"))
        .Select(l => JsonDocument.Parse(l).RootElement)
        .Select(e => (e.GetProperty("input").GetString()!, e.GetProperty("target").GetString()!)).ToList();

    static int[][] Rows(JsonElement e) => e.EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray();

    [Theory]
    [InlineData("tiny-flan-t5")]
    [InlineData("tiny-t5-v1_0")]
    public void Loss_of_the_training_batch_matches_HF_labels_loss(string model)
    {
        JsonElement batch = JsonDocument.Parse(File.ReadAllBytes(Training("step1-batch.json"))).RootElement.GetProperty("models").GetProperty(model);
        int[][] inputIds = Rows(batch.GetProperty("input_ids")), labels = Rows(batch.GetProperty("labels"));
        double expected = batch.GetProperty("loss").GetDouble();

        using T5TextGenerator t5 = T5TextGenerator.Load(Fixtures.Model(model));
        var pairs = Instructions().Take(4).ToList();
        int[][] inputs = pairs.Select(p => t5.Tokenizer.Encode(p.Input)).ToArray();
        int[][] targets = pairs.Select(p => t5.Tokenizer.Encode(p.Target)).ToArray();
        // The same tokens as HF's batch: inputs unpadded, labels without the -100 padding.
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(inputIds[i].Take(inputs[i].Length), inputs[i]);
            Assert.All(inputIds[i].Skip(inputs[i].Length), id => Assert.Equal(0, id));
            Assert.Equal(labels[i].Where(l => l != -100), targets[i]);
        }

        TargetScore[] scores = TargetLikelihood.Score(t5.Model, inputs, targets);
        double loss = -scores.Sum(s => s.LogLikelihood) / scores.Sum(s => s.Tokens);   // token-weighted, as HF's batch loss
        Assert.True(Math.Abs(loss - expected) <= 2e-5, $"loss {loss:R}, HF {expected:R}");
        Assert.Equal(targets.Sum(t => t.Length), scores.Sum(s => s.Tokens));
    }

    // A tiny hand-made multiple-choice set: options of different lengths, so sum and mean disagree (on tiny-flan-t5 they
    // pick different options in three examples and score different accuracies).
    internal static readonly (string Input, string[] Options, string Target)[] Choices =
    [
        ("Is the sky blue? Answer yes or no.", ["yes", "no"], "yes"),
        ("translate English to German: Thank you", ["Danke", "Vielen Dank", "Bitte schön, gern geschehen"], "Danke"),
        ("Which is a fruit: apple, car, or house?", ["apple", "car", "house"], "apple"),
        ("summarize: The weather was cold and rainy all week.", ["Cold week.", "A week of cold, rainy weather.", "Sunny"], "Cold week."),
        ("Complete: The quick brown fox", ["jumps", "jumps over the lazy dog"], "jumps"),
    ];

    /// <summary>One option's log-likelihood computed on its own: its own encoder pass, the decoder fed one token per
    /// call, log-softmax in float.</summary>
    internal static (double Sum, int Tokens) OptionAlone(T5TextGenerator t5, string input, string option)
    {
        T5Model m = t5.Model;
        int[] ids = t5.Tokenizer.Encode(input), target = t5.Tokenizer.Encode(option);
        using EncoderOutput encoded = m.Encode(ids, Enumerable.Repeat(1, ids.Length).ToArray(), 1);
        using DecoderState state = m.StartDecoder(encoded, target.Length);
        var logits = new float[m.Config.VocabSize];
        double sum = 0;
        int previous = m.Config.DecoderStartTokenId;
        foreach (int label in target)
        {
            m.Decode(state, [previous], 1);
            m.Backend.Download(state.Logits, logits);
            float max = logits.Max(), total = 0;
            foreach (float x in logits) total += MathF.Exp(x - max);
            sum += logits[label] - max - MathF.Log(total);
            previous = label;
        }
        return (sum, target.Length);
    }

    [Theory]
    [InlineData("tiny-flan-t5")]
    [InlineData("tiny-t5-v1_0")]
    public void Rank_classification_scores_every_option_as_scored_alone(string model)
    {
        using T5TextGenerator t5 = T5TextGenerator.Load(Fixtures.Model(model));
        foreach (var (input, options, _) in Choices)
        {
            var alone = options.Select(o => OptionAlone(t5, input, o)).ToArray();
            TargetScore[] scores = TargetLikelihood.ScoreOptions(t5.Model, t5.Tokenizer.Encode(input), options.Select(o => t5.Tokenizer.Encode(o)).ToArray());
            for (int i = 0; i < options.Length; i++)
            {
                Assert.Equal(alone[i].Tokens, scores[i].Tokens);
                Assert.True(Math.Abs(alone[i].Sum - scores[i].LogLikelihood) <= 1e-4 * Math.Max(1, Math.Abs(alone[i].Sum)),
                    $"{input} / {options[i]}: {scores[i].LogLikelihood} vs alone {alone[i].Sum}");
            }
            int bySum = Array.IndexOf(alone, alone.MaxBy(a => a.Sum)), byMean = Array.IndexOf(alone, alone.MaxBy(a => a.Sum / a.Tokens));
            Assert.Equal(bySum, TargetLikelihood.Best(scores, lengthNormalised: false));
            Assert.Equal(byMean, TargetLikelihood.Best(scores, lengthNormalised: true));
        }
    }

    string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text, new UTF8Encoding(false));
        return path;
    }

    static string JsonLine(object o) => JsonSerializer.Serialize(o) + "\n";

    [Fact]
    public void Eval_reports_loss_accuracy_and_generation_metrics_of_a_JSONL_set()
    {
        string model = Fixtures.Model("tiny-flan-t5");
        var rows = Choices.Select(c => (c.Input, Targets: new[] { c.Target }, c.Options)).ToList();
        rows.Add(("translate English to French: Good morning", ["Bonjour", "Bon matin"], null!));
        rows.Add(("What is two plus two?", ["four"], null!));
        string data = Write("set.jsonl", string.Concat(rows.Select(r => r.Options is null
            ? JsonLine(new { input = r.Input, target = r.Targets })
            : JsonLine(new { input = r.Input, target = r.Targets[0], options = r.Options }))));
        string predictions = Path.Combine(_dir, "predictions.jsonl");

        var (code, output, error) = CliTests.Run("eval", "--model", model, "--data", data, "--json", "--batch-size", "4",
            "--metrics", "loss,accuracy,exact,bleu", "--max-new-tokens", "6", "--predictions", predictions);
        Assert.True(code == 0, error);
        Assert.Equal("", error);                                    // no progress bar when stderr is not a terminal
        JsonElement json = JsonDocument.Parse(output).RootElement;
        Assert.Equal(rows.Count, json.GetProperty("n").GetInt32());

        // Loss: every target token of the set, each scored on its own, token-weighted.
        using T5TextGenerator t5 = T5TextGenerator.Load(model);
        var alone = rows.Select(r => OptionAlone(t5, r.Input, r.Targets[0])).ToArray();
        double loss = -alone.Sum(a => a.Sum) / alone.Sum(a => a.Tokens);
        Assert.True(Math.Abs(json.GetProperty("loss").GetDouble() - loss) <= 1e-5, $"{json.GetProperty("loss")} vs {loss}");
        Assert.Equal(Math.Exp(json.GetProperty("loss").GetDouble()), json.GetProperty("perplexity").GetDouble(), 1e-9);
        Assert.Equal(alone.Sum(a => a.Tokens), json.GetProperty("loss_tokens").GetInt32());

        // Accuracy: the option each example's options score best when scored alone, against its target.
        double hitsBySum = 0, hitsByMean = 0;
        foreach (var (input, options, target) in Choices)
        {
            var scores = options.Select(o => OptionAlone(t5, input, o)).ToArray();
            if (options[Array.IndexOf(scores, scores.MaxBy(s => s.Sum))] == target) hitsBySum++;
            if (options[Array.IndexOf(scores, scores.MaxBy(s => s.Sum / s.Tokens))] == target) hitsByMean++;
        }
        JsonElement accuracy = json.GetProperty("accuracy");
        Assert.Equal(Choices.Length, accuracy.GetProperty("n").GetInt32());
        Assert.Equal(hitsBySum / Choices.Length, accuracy.GetProperty("score").GetDouble());
        Assert.Equal(hitsByMean / Choices.Length, accuracy.GetProperty("length_normalised").GetDouble());
        Assert.NotEqual(hitsBySum, hitsByMean);                     // the set tells the two rules apart

        // Predictions: one line per example, the generated text, the example's own loss; no temporary file left.
        string[] lines = File.ReadAllLines(predictions);
        Assert.Equal(rows.Count, lines.Length);
        Assert.Equal(["predictions.jsonl", "set.jsonl"], Directory.GetFiles(_dir).Select(Path.GetFileName).Order());
        var generated = t5.Generate(rows.Select(r => r.Input).ToList(), t5.DefaultOptions with { MaxNewTokens = 6 }).Select(g => g.Text).ToList();
        for (int i = 0; i < rows.Count; i++)
        {
            JsonElement line = JsonDocument.Parse(lines[i]).RootElement;
            Assert.Equal(rows[i].Input, line.GetProperty("input").GetString());
            Assert.Equal(generated[i], line.GetProperty("prediction").GetString());
            Assert.True(Math.Abs(line.GetProperty("loss").GetDouble() + alone[i].Sum / alone[i].Tokens) <= 1e-5, lines[i]);
            if (rows[i].Options is null) Assert.Equal(rows[i].Targets, line.GetProperty("target").EnumerateArray().Select(x => x.GetString()));
            else Assert.Equal(rows[i].Targets[0], line.GetProperty("target").GetString());
        }
        var refs = rows.Select(r => (IReadOnlyList<string>)r.Targets).ToList();
        Assert.Equal(new Bleu().CorpusScore(generated, refs).Score, json.GetProperty("bleu").GetProperty("score").GetDouble());
        Assert.Equal(generated.Zip(refs).Average(p => ExactMatch.Strict(p.First, p.Second)), json.GetProperty("exact").GetProperty("strict").GetDouble());
        Assert.True(json.GetProperty("examples_per_second").GetDouble() > 0);
    }

    [Fact]
    public void Eval_reads_CSV_with_a_header_and_named_columns()
    {
        string data = Write("set.csv", "id,question,answer\n1,\"translate English to German: Thank you, friend\",Danke\n2,Is the sky blue?,\"yes, \"\"it is\"\"\"\n");
        var (code, output, error) = CliTests.Run("eval", "--model", Fixtures.Model("tiny-flan-t5"), "--data", data, "--json",
            "--metrics", "perplexity", "--input-field", "question", "--target-field", "answer");
        Assert.True(code == 0, error);
        JsonElement json = JsonDocument.Parse(output).RootElement;
        using T5TextGenerator t5 = T5TextGenerator.Load(Fixtures.Model("tiny-flan-t5"));
        var alone = new[] { OptionAlone(t5, "translate English to German: Thank you, friend", "Danke"), OptionAlone(t5, "Is the sky blue?", "yes, \"it is\"") };
        Assert.Equal(2, json.GetProperty("n").GetInt32());
        Assert.True(Math.Abs(json.GetProperty("loss").GetDouble() + alone.Sum(a => a.Sum) / alone.Sum(a => a.Tokens)) <= 1e-5);
        Assert.False(json.TryGetProperty("bleu", out _));
    }

    [Theory]
    [InlineData("bad.jsonl", "{\"input\": \"a\", \"target\": \"b\"}\n{\"input\": \"a\", \"target\": \n", "", "line 2 of", "not valid JSON")]
    [InlineData("bad.jsonl", "{\"input\": \"a\", \"target\": \"b\"}\n\n{\"input\": \"a\", \"answer\": \"b\"}\n", "", "line 3 of", "no field 'target'")]
    [InlineData("bad.jsonl", "{\"input\": \"a\", \"target\": 5}\n", "", "line 1 of", "field 'target' is a JSON number")]
    [InlineData("bad.jsonl", "{\"input\": \"a\", \"target\": \"b\", \"options\": [\"c\", \"d\"]}\n", "", "line 1 of", "not one of the 'options'")]
    [InlineData("bad.jsonl", "{\"input\": \"a\", \"target\": \"b\"}\n", "blue", "--metrics", "unknown metric 'blue'")]
    [InlineData("bad.jsonl", "{\"input\": \"a\", \"target\": \"b\"}\n", "accuracy", "--metrics", "has none")]
    [InlineData("bad.jsonl", "", "", "bad.jsonl", "empty")]
    [InlineData("bad.jsonl", "\n  \n", "", "bad.jsonl", "no examples")]
    [InlineData("bad.csv", "question,target\nx,y\n", "", "line 1 of", "no column 'input'")]
    [InlineData("bad.csv", "input,target\nx,y\n\"a,b\n", "", "line 3 of", "never closes")]
    [InlineData("bad.tsv", "input\ttarget\nx\ty\tz\n", "", "line 2 of", "has 3 field(s)")]
    public void Bad_data_is_one_line_naming_the_file_line_and_field(string name, string content, string metrics, string where, string what)
    {
        string data = Write(name, content);
        string predictions = Path.Combine(_dir, "out.jsonl");
        var args = new List<string> { "eval", "--model", Fixtures.Model("tiny-flan-t5"), "--data", data, "--predictions", predictions };
        if (metrics != "") args.AddRange(["--metrics", metrics]);
        var (code, output, error) = CliTests.Run([.. args]);
        Assert.Equal(2, code);
        Assert.Equal("", output);
        string line = Assert.Single(error.Trim().Split('\n'));
        Assert.Contains(where, line);
        Assert.Contains(what, line);
        if (where.StartsWith("line")) Assert.Contains(name, line);
        Assert.False(File.Exists(predictions));
    }
}
