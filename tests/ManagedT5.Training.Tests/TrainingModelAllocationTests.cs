// After the first step at a batch shape, a training step (forward, loss, backward into the gradients) allocates
// nothing on the managed heap: full fine-tuning and LoRA, counted as the token-loop test counts; with the buffers
// grow-only, batches of alternating shapes allocate nothing once the largest has been seen, and give the results of
// a fresh model. With dropout on (the model's and LoRA's) as well: the masks are hashed, never stored.
using ManagedT5.Adapters;
using ManagedT5.Kernels.Cpu.Training;
using ManagedT5.Loading;

namespace ManagedT5.Training.Tests;

/// <summary>The allocation counters run alone, not beside other test classes.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TrainingAllocationCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Training allocation counters (not parallel)";
}

[Collection(TrainingAllocationCollection.Name)]
public sealed class TrainingModelAllocationTests
{
    [Theory]
    [InlineData("tiny-flan-t5", false, 0)]
    [InlineData("tiny-t5-v1_0", false, 0)]
    [InlineData("tiny-flan-t5", true, 0)]
    [InlineData("tiny-flan-t5", false, 0.1)]
    [InlineData("tiny-t5-v1_0", false, 0.1)]
    [InlineData("tiny-flan-t5", true, 0.1)]
    public void StepAllocatesNothingAfterWarmUp(string model, bool lora, double dropout)
    {
        using SafeTensorsFile reference = SafeTensorsFile.Open(Path.Combine(TrainingModelFixtures.Training(model), "grads.safetensors"));
        using T5TrainingModel trainer = T5TrainingModel.Load(TrainingModelFixtures.Model(model), new TrainingModelOptions { Threads = 2, DropoutRate = dropout });
        if (lora)
        {
            LoraAdapter initial = LoraAdapter.Load(Path.Combine(TrainingModelFixtures.Training(model), "lora_initial"));
            trainer.AttachLora(new LoraAdapter(initial.Config with { LoraDropout = dropout }, initial.Modules));
        }
        TrainingBatch batch = TrainingModelFixtures.Batch(reference);

        for (int step = 0; step < 4; step++) { trainer.ZeroGrad(); trainer.ForwardBackward(batch, 1f, DropoutMask.RunKey(42, step, 0)); }   // sizes the buffers
        long before = GC.GetAllocatedBytesForCurrentThread();
        float loss = 0;
        for (int step = 0; step < 6; step++)
        {
            trainer.ZeroGrad();
            loss += trainer.ForwardBackward(batch, 0.5f, DropoutMask.RunKey(42, step + 4, 0));
            loss += trainer.Loss(batch);
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(float.IsFinite(loss));
        Assert.Equal(0, allocated);
    }

    /// <summary>Two smaller batches of other shapes (fewer rows, a longer target in one) beside the fixture's.</summary>
    internal static TrainingBatch[] Shapes(TrainingBatch large) =>
    [
        large,
        TrainingBatch.FromIds([[13959, 1566, 12, 1], [8774, 1]], [[5093, 1], [296, 10, 1]], 0),
        TrainingBatch.FromIds([[8774, 296, 1]], [[13959, 1566, 12, 5093, 10, 8774, 296, 1]], 0),
    ];

    [Theory]
    [InlineData("tiny-flan-t5", false)]
    [InlineData("tiny-t5-v1_0", false)]
    [InlineData("tiny-flan-t5", true)]
    public void AlternatingShapesAllocateNothingOnceTheLargestWasSeen(string model, bool lora)
    {
        using SafeTensorsFile reference = SafeTensorsFile.Open(Path.Combine(TrainingModelFixtures.Training(model), "grads.safetensors"));
        using T5TrainingModel trainer = T5TrainingModel.Load(TrainingModelFixtures.Model(model), new TrainingModelOptions { Threads = 2 });
        if (lora) trainer.AttachLora(LoraAdapter.Load(Path.Combine(TrainingModelFixtures.Training(model), "lora_initial")));
        TrainingBatch[] shapes = Shapes(TrainingModelFixtures.Batch(reference));
        foreach (TrainingBatch batch in shapes) { trainer.ZeroGrad(); trainer.ForwardBackward(batch); }   // grows the buffers
        long before = GC.GetAllocatedBytesForCurrentThread();
        float loss = 0;
        for (int step = 0; step < 9; step++)
        {
            trainer.ZeroGrad();
            loss += trainer.ForwardBackward(shapes[(step * 2) % 3]);   // 0, 2, 1, 0, ...: every change of shape
            loss += trainer.Loss(shapes[(step + 1) % 3]);
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(float.IsFinite(loss));
        Assert.Equal(0, allocated);
    }
}

/// <summary>A batch after a larger one (whose values stay in the buffers' tails) gives a fresh model's loss and gradients bit for bit.</summary>
public sealed class TrainingModelShapeTests
{
    [Theory]
    [InlineData("tiny-flan-t5")]
    [InlineData("tiny-t5-v1_0")]
    public void A_smaller_batch_after_a_larger_one_matches_a_fresh_model(string model)
    {
        using SafeTensorsFile reference = SafeTensorsFile.Open(Path.Combine(TrainingModelFixtures.Training(model), "grads.safetensors"));
        TrainingBatch[] shapes = TrainingModelAllocationTests.Shapes(TrainingModelFixtures.Batch(reference));
        using T5TrainingModel used = T5TrainingModel.Load(TrainingModelFixtures.Model(model), new TrainingModelOptions { Threads = 2 });
        used.ZeroGrad();
        used.ForwardBackward(shapes[0]);
        for (int i = 1; i < shapes.Length; i++)
        {
            using T5TrainingModel fresh = T5TrainingModel.Load(TrainingModelFixtures.Model(model), new TrainingModelOptions { Threads = 2 });
            used.ZeroGrad();
            fresh.ZeroGrad();
            Assert.Equal(fresh.ForwardBackward(shapes[i]), used.ForwardBackward(shapes[i]));
            for (int p = 0; p < used.Parameters.Count; p++) Assert.Equal(fresh.Parameters[p].Grad, used.Parameters[p].Grad);
        }
    }
}
