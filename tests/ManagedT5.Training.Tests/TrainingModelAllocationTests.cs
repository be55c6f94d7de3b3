// After the first step at a batch shape, a training step (forward, loss, backward into the gradients) allocates
// nothing on the managed heap: full fine-tuning and LoRA, counted as the token-loop test counts.
using ManagedT5.Adapters;
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
    [InlineData("tiny-flan-t5", false)]
    [InlineData("tiny-t5-v1_0", false)]
    [InlineData("tiny-flan-t5", true)]
    public void StepAllocatesNothingAfterWarmUp(string model, bool lora)
    {
        using SafeTensorsFile reference = SafeTensorsFile.Open(Path.Combine(TrainingModelFixtures.Training(model), "grads.safetensors"));
        using T5TrainingModel trainer = T5TrainingModel.Load(TrainingModelFixtures.Model(model), new TrainingModelOptions { Threads = 2 });
        if (lora) trainer.AttachLora(LoraAdapter.Load(Path.Combine(TrainingModelFixtures.Training(model), "lora_initial")));
        TrainingBatch batch = TrainingModelFixtures.Batch(reference);

        for (int step = 0; step < 4; step++) { trainer.ZeroGrad(); trainer.ForwardBackward(batch); }   // sizes the buffers
        long before = GC.GetAllocatedBytesForCurrentThread();
        float loss = 0;
        for (int step = 0; step < 6; step++)
        {
            trainer.ZeroGrad();
            loss += trainer.ForwardBackward(batch, 0.5f);
            loss += trainer.Loss(batch);
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(float.IsFinite(loss));
        Assert.Equal(0, allocated);
    }
}
