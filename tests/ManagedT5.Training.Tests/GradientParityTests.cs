// Loss and the gradient of every parameter on the step-1 batch, against HF transformers + PyTorch (fp32), for both
// fixture architectures: tiny-flan-t5 (gated-gelu, untied head) and tiny-t5-v1_0 (ReLU, tied embeddings).
using ManagedT5.Loading;

namespace ManagedT5.Training.Tests;

public sealed class GradientParityTests(ITestOutputHelper output)
{
    private const double LossTolerance = 2e-5;   // fixture README: losses within 2e-5
    private const double GradTolerance = 1e-4;   // each gradient within 1e-4 of its tensor's largest |reference|

    [Theory]
    [InlineData("tiny-flan-t5")]
    [InlineData("tiny-t5-v1_0")]
    public void LossAndEveryGradientMatchPyTorch(string model)
    {
        using SafeTensorsFile reference = SafeTensorsFile.Open(Path.Combine(TrainingModelFixtures.Training(model), "grads.safetensors"));
        using T5TrainingModel trainer = T5TrainingModel.Load(TrainingModelFixtures.Model(model), new TrainingModelOptions { Threads = 2, DropoutRate = 0 });
        TrainingBatch batch = TrainingModelFixtures.Batch(reference);
        trainer.ZeroGrad();
        float loss = trainer.ForwardBackward(batch);
        float expectedLoss = TrainingModelFixtures.Scalar(reference, "loss");
        output.WriteLine($"{model}: loss {loss} vs {expectedLoss}");
        Assert.True(Math.Abs(loss - expectedLoss) <= LossTolerance, $"{model}: loss {loss} vs PyTorch {expectedLoss}");

        // Every parameter has a reference gradient and nothing in the reference is left over.
        var names = reference.Tensors.Select(t => t.Name).Where(n => n.StartsWith("grad.", StringComparison.Ordinal)).Select(n => n[5..]).ToList();
        Assert.Equal(names, trainer.Parameters.Select(p => p.Name).ToList());
        string worst = "";
        double worstError = 0;
        foreach (Parameter p in trainer.Parameters)
        {
            double error = Errors.RelativeError(reference.GetTensor("grad." + p.Name).ToSingleArray(), p.Grad);
            if (error >= worstError) (worst, worstError) = (p.Name, error);
        }
        output.WriteLine($"{model}: worst gradient {worst} at {worstError:g3} of its largest magnitude");
        Assert.True(worstError <= GradTolerance, $"{model}: gradient of {worst} is off by {worstError:g3} of its largest magnitude (tolerance {GradTolerance:g3})");
    }

    [Fact]
    public void GradientsAccumulateWithTheirScale()
    {
        using SafeTensorsFile reference = SafeTensorsFile.Open(Path.Combine(TrainingModelFixtures.Training("tiny-flan-t5"), "grads.safetensors"));
        using T5TrainingModel trainer = T5TrainingModel.Load(TrainingModelFixtures.Model("tiny-flan-t5"), new TrainingModelOptions { Threads = 2, DropoutRate = 0 });
        TrainingBatch batch = TrainingModelFixtures.Batch(reference);
        trainer.ZeroGrad();
        trainer.ForwardBackward(batch, 0.25f);
        trainer.ForwardBackward(batch, 0.75f);   // 0.25 + 0.75 of the same gradient = the gradient
        Parameter q = trainer.Find("encoder.block.0.layer.0.SelfAttention.q.weight")!;
        Assert.True(Errors.RelativeError(reference.GetTensor("grad." + q.Name).ToSingleArray(), q.Grad) <= GradTolerance);
        Assert.Equal(TrainingModelFixtures.Scalar(reference, "loss"), trainer.Loss(batch), 2e-5f);
    }
}
