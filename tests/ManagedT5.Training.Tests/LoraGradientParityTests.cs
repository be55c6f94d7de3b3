// LoRA in the training graph against HF PEFT + PyTorch on tiny-flan-t5 (q and v of all 7 attention modules, r 4,
// alpha 8): from lora_initial, the step-1 loss and every lora_A / lora_B gradient; with lora_final attached, the
// teacher-forced logits of the step-1 batch.
using ManagedT5.Adapters;
using ManagedT5.Loading;

namespace ManagedT5.Training.Tests;

public sealed class LoraGradientParityTests(ITestOutputHelper output)
{
    private static string Lora => TrainingModelFixtures.Training("tiny-flan-t5");

    [Fact]
    public void LossAndAdapterGradientsMatchPeft()
    {
        using SafeTensorsFile reference = SafeTensorsFile.Open(Path.Combine(Lora, "lora.safetensors"));
        using T5TrainingModel model = T5TrainingModel.Load(TrainingModelFixtures.Model("tiny-flan-t5"), new TrainingModelOptions { Threads = 2, DropoutRate = 0 });
        int baseCount = model.Parameters.Count;
        model.AttachLora(LoraAdapter.Load(Path.Combine(Lora, "lora_initial")));
        Assert.Equal(28, model.TrainableParameters.Count);
        Assert.All(model.Parameters.Take(baseCount), p => Assert.False(p.Trainable));
        Assert.All(model.Parameters.Take(baseCount), p => Assert.Empty(p.Grad));   // frozen: no dW computed or kept

        using SafeTensorsFile grads = SafeTensorsFile.Open(Path.Combine(Lora, "grads.safetensors"));   // the step-1 batch
        TrainingBatch batch = TrainingModelFixtures.Batch(grads);
        model.ZeroGrad();
        float loss = model.ForwardBackward(batch);
        float expected = TrainingModelFixtures.Scalar(reference, "loss_step1");
        output.WriteLine($"LoRA loss {loss} vs {expected}");
        Assert.True(Math.Abs(loss - expected) <= 2e-5, $"LoRA step-1 loss {loss} vs PEFT {expected}");

        var names = reference.Tensors.Select(t => t.Name).Where(n => n.StartsWith("grad.", StringComparison.Ordinal)).Select(n => n[5..]).Order().ToList();
        Assert.Equal(names, model.TrainableParameters.Select(p => p.Name).Order().ToList());
        string worst = "";
        double worstError = 0;
        foreach (Parameter p in model.TrainableParameters)
        {
            double error = Errors.RelativeError(reference.GetTensor("grad." + p.Name).ToSingleArray(), p.Grad);
            if (error >= worstError) (worst, worstError) = (p.Name, error);
        }
        output.WriteLine($"worst LoRA gradient {worst} at {worstError:g3} of its largest magnitude");
        Assert.True(worstError <= 1e-4, $"gradient of {worst} is off by {worstError:g3} of its largest magnitude (tolerance 1e-4)");
    }

    [Fact]
    public void LogitsWithTheFinalAdapterMatchPeft()
    {
        using SafeTensorsFile reference = SafeTensorsFile.Open(Path.Combine(Lora, "lora.safetensors"));
        using T5TrainingModel model = T5TrainingModel.Load(TrainingModelFixtures.Model("tiny-flan-t5"), new TrainingModelOptions { Threads = 2, DropoutRate = 0 });
        LoraAdapter final = LoraAdapter.Load(Path.Combine(Lora, "lora_final"));
        model.AttachLora(final);
        using SafeTensorsFile grads = SafeTensorsFile.Open(Path.Combine(Lora, "grads.safetensors"));   // the step-1 batch
        TrainingBatch batch = TrainingModelFixtures.Batch(grads);
        float[] expected = reference.GetTensor("final.batch0.logits").ToSingleArray();
        var logits = new float[batch.Batch * batch.TargetLength * model.Config.VocabSize];
        model.Logits(batch, logits);
        double error = Errors.RelativeError(expected, logits);
        output.WriteLine($"logits with lora_final: {error:g3} relative");
        Assert.True(error <= 1e-4, $"logits with lora_final are off by {error:g3} relative (tolerance 1e-4)");

        // ExportLora hands back what was attached, under the same config.
        LoraAdapter exported = model.ExportLora();
        Assert.Equal(final.Config, exported.Config);
        foreach (LoraModule m in final.Modules)
        {
            LoraModule e = exported.Find(m.Module)!;
            Assert.Equal(m.A, e.A);
            Assert.Equal(m.B, e.B);
        }
    }
}
