// The T5 training model as the trainer sees it: its trainable parameters, the loss with and without gradients, and
// saving (full fine-tuning: a HF model folder written from the base model's folder and the trained values; LoRA: the
// adapter in PEFT's format).
namespace ManagedT5.Training;

/// <summary><see cref="ITrainable"/> over a <see cref="T5TrainingModel"/>: what full fine-tuning and LoRA share (the
/// trained tensors, gradients, losses); they differ in what is trained and in what <see cref="Save"/> writes.</summary>
public abstract class T5ModelTrainable : ITrainable
{
    private protected T5ModelTrainable(T5TrainingModel model)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        TrainedTensors = model.TrainableParameters.Select(p => new TrainedTensor(p.Name, p.Shape, p.Value, p.Grad)).ToArray();
    }

    /// <summary>The model trained.</summary>
    private protected T5TrainingModel Model { get; }

    /// <summary>The model's kernels' worker pool: the trainer runs the optimizer's update on it between steps.</summary>
    internal ManagedT5.Kernels.Cpu.WorkerPool Pool => Model.Pool;

    /// <inheritdoc />
    public IReadOnlyList<TrainedTensor> TrainedTensors { get; }

    /// <inheritdoc />
    public void ZeroGrad() => Model.ZeroGrad();

    /// <inheritdoc />
    public float ForwardBackward(TrainingBatch batch, float gradScale, ulong dropoutKey) => Model.ForwardBackward(batch, gradScale, dropoutKey);

    /// <inheritdoc />
    public float Loss(TrainingBatch batch) => Model.Loss(batch);

    /// <inheritdoc />
    public abstract void Save(string directory);
}

/// <summary><see cref="ITrainable"/> over a <see cref="T5TrainingModel"/> trained in full.</summary>
public sealed class T5Trainable : T5ModelTrainable
{
    private readonly string _baseModelDirectory;

    /// <summary>Trains every parameter of <paramref name="model"/>, loaded from <paramref name="baseModelDirectory"/>
    /// (whose config.json, generation_config.json and tokenizer files the saved folders copy).</summary>
    public T5Trainable(T5TrainingModel model, string baseModelDirectory) : base(model) => _baseModelDirectory = baseModelDirectory;

    /// <inheritdoc />
    public override void Save(string directory) =>
        HfModelFolder.Write(directory, _baseModelDirectory, Model.Config,
            Model.Parameters.Select(p => new TrainedTensor(p.Name, p.Shape, p.Value, p.Grad)).ToArray());
}

/// <summary><see cref="ITrainable"/> over a <see cref="T5TrainingModel"/> with a LoRA adapter attached: only the
/// adapter's A/B are trained; checkpoints and the output are the adapter in PEFT's format (adapter_config.json +
/// adapter_model.safetensors), which <c>managedt5 generate --adapter</c> and PEFT load.</summary>
public sealed class LoraTrainable : T5ModelTrainable
{
    /// <summary>Trains the LoRA A/B of <paramref name="model"/>, to which <see cref="T5TrainingModel.AttachLora"/> has
    /// attached an adapter.</summary>
    public LoraTrainable(T5TrainingModel model) : base(model) => _ = model.ExportLora();   // throws when no adapter is attached

    /// <inheritdoc />
    public override void Save(string directory) => Model.ExportLora().Save(directory);
}
