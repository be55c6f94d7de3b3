// The data path: instructions.jsonl tokenized and batched into exactly HF's step-1 batch of both fixture models, the
// wrap-around and shuffle rules of the training stream, HF's truncation (counted), and bad data files each giving one
// ArgumentException that names the file and the line.
using System.Text.Json;
using ManagedT5.Tokenizer;

namespace ManagedT5.Training.Tests;

public sealed class DataTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("managedt5-data-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    static int[] Flat(JsonElement rows) => rows.EnumerateArray().SelectMany(r => r.EnumerateArray().Select(x => x.GetInt32())).ToArray();

    static TrainingData Fixture(string model, bool shuffle = false, int maxSource = 1024, int maxTarget = 128) =>
        new(TrainingDataFile.ReadJsonLines(TrainerFixtures.Instructions), T5Tokenizer.FromDirectory(TrainerFixtures.Model(model)),
            maxSource, maxTarget, decoderStartTokenId: 0, shuffle, seed: 42);

    [Theory]
    [InlineData("tiny-flan-t5")]
    [InlineData("tiny-t5-v1_0")]
    public void The_first_batch_is_HFs_step_1_batch(string model)
    {
        JsonElement expected = JsonDocument.Parse(File.ReadAllBytes(TrainerFixtures.Training("step1-batch.json"))).RootElement
            .GetProperty("models").GetProperty(model);
        TrainingBatch batch = Fixture(model).Batch(0, 4);
        Assert.Equal(4, batch.Batch);
        Assert.Equal(Flat(expected.GetProperty("input_ids")), batch.InputIds);
        Assert.Equal(Flat(expected.GetProperty("attention_mask")), batch.AttentionMask);
        Assert.Equal(Flat(expected.GetProperty("labels")), batch.Labels);
        Assert.Equal(20, batch.SourceLength);
        Assert.Equal(12, batch.TargetLength);
        // decoder_input_ids: start token 0, then the labels shifted right with -100 read as 0.
        for (int b = 0; b < 4; b++)
        {
            Assert.Equal(0, batch.DecoderInputIds[b * 12]);
            for (int j = 1; j < 12; j++)
                Assert.Equal(Math.Max(0, batch.Labels[b * 12 + j - 1]), batch.DecoderInputIds[b * 12 + j]);
        }
    }

    [Fact]
    public void Without_shuffle_batches_take_the_file_in_order_and_wrap_around()
    {
        TrainingData data = Fixture("tiny-flan-t5");
        Assert.Equal(24, data.Count);
        var rows = new int[4];
        data.Batch(6, 4, rows);                    // step 7 of the fixture rule: examples 24..27 mod 24
        Assert.Equal([0, 1, 2, 3], rows);
        Assert.Equal(data.Batch(0, 4).InputIds, data.Batch(6, 4).InputIds);
        var five = new int[5];
        data.Batch(4, 5, five);                    // positions 20..24
        Assert.Equal([20, 21, 22, 23, 0], five);
        Assert.Equal(1, data.LineOf(0));
        Assert.Equal(24, data.LineOf(23));
    }

    [Fact]
    public void Shuffling_permutes_each_epoch_with_the_seed()
    {
        TrainingData data = Fixture("tiny-flan-t5", shuffle: true);
        int[] epoch0 = Enumerable.Range(0, 24).Select(p => data.ExampleAt(p)).ToArray();
        int[] epoch1 = Enumerable.Range(24, 24).Select(p => data.ExampleAt(p)).ToArray();
        Assert.Equal(Enumerable.Range(0, 24), epoch0.Order());
        Assert.Equal(Enumerable.Range(0, 24), epoch1.Order());
        Assert.NotEqual(Enumerable.Range(0, 24), epoch0);
        Assert.NotEqual(epoch0, epoch1);
        Assert.Equal(epoch0, TrainingData.Permutation(24, 42, 0));          // the same seed gives the same order
        Assert.NotEqual(epoch0, TrainingData.Permutation(24, 43, 0));
        // Random access (what a resumed run does) gives the same rows as the straight walk.
        Assert.Equal(epoch1[5], Fixture("tiny-flan-t5", shuffle: true).ExampleAt(29));
    }

    [Fact]
    public void Long_examples_are_truncated_as_HF_does_and_counted()
    {
        var tokenizer = T5Tokenizer.FromDirectory(TrainerFixtures.Model("tiny-flan-t5"));
        var examples = TrainingDataFile.ReadJsonLines(TrainerFixtures.Instructions);
        var data = new TrainingData(examples, tokenizer, maxSourceLength: 6, maxTargetLength: 4, 0, false, 42);
        int cutInputs = examples.Count(e => tokenizer.Encode(e.Input).Length > 6);
        int cutTargets = examples.Count(e => tokenizer.Encode(e.Target).Length > 4);
        Assert.True(cutInputs > 0 && cutTargets > 0);
        Assert.Equal(cutInputs, data.TruncatedInputs);
        Assert.Equal(cutTargets, data.TruncatedTargets);
        TrainingBatch b = data.Batch(0, 1);
        int[] full = tokenizer.Encode(examples[0].Input);   // "translate English to Spanish: Hello world": 8 ids
        Assert.Equal([.. full.Take(5), tokenizer.EosId], b.InputIds);
        Assert.Equal(TrainingData.Truncate([5, 6, 1], 4, 1, out bool cut), new[] { 5, 6, 1 });
        Assert.False(cut);
    }

    string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    [Theory]
    [InlineData("{\"input\": \"a\", \"target\": \"b\"}\n{\"input\": \"a\", \"target\": \n", "line 2 of", "not valid JSON")]
    [InlineData("{\"input\": \"a\", \"target\": \"b\"}\n\n[1, 2]\n", "line 3 of", "not an object")]
    [InlineData("{\"input\": \"a\", \"target\": \"b\"}\n{\"input\": \"a\"}\n", "line 2 of", "no field \"target\"")]
    [InlineData("{\"input\": 5, \"target\": \"b\"}\n", "line 1 of", "not a string")]
    [InlineData("\n \n", "holds no examples", "")]
    public void Bad_data_files_name_the_file_and_line(string text, string where, string what)
    {
        string path = Write("train.jsonl", text);
        var e = Assert.Throws<ArgumentException>(() => TrainingDataFile.ReadJsonLines(path));
        Assert.Equal("data", e.ParamName);
        Assert.StartsWith("data: ", e.Message);
        Assert.Contains(where, e.Message);
        Assert.Contains(what, e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void Missing_and_empty_files_are_refused_with_the_option_name()
    {
        var e = Assert.Throws<ArgumentException>(() => TrainingDataFile.ReadJsonLines(Path.Combine(_dir, "nope.jsonl"), option: "eval_data"));
        Assert.Equal("eval_data", e.ParamName);
        Assert.Contains("does not exist", e.Message);
        string empty = Write("empty.jsonl", "");
        Assert.Contains("empty", Assert.Throws<ArgumentException>(() => TrainingDataFile.ReadJsonLines(empty)).Message);
    }

    [Fact]
    public void Field_names_are_configurable()
    {
        string path = Write("qa.jsonl", "{\"question\": \"Why?\", \"answer\": \"Because.\"}\r\n");
        var ex = TrainingDataFile.ReadJsonLines(path, "question", "answer");
        Assert.Equal(new TrainingExample(1, "Why?", "Because."), Assert.Single(ex));
        var e = Assert.Throws<ArgumentException>(() => TrainingDataFile.ReadJsonLines(path));
        Assert.Contains("input_field", e.Message);
    }
}
