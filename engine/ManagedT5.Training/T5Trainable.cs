// The T5 training model as the trainer sees it: its trainable parameters, the loss with and without gradients, and
// saving (full fine-tuning: a HF model folder written from the base model's folder and the trained values).
namespace ManagedT5.Training;

/// <summary><see cref="ITrainable"/> over a <see cref="T5TrainingModel"/> trained in full.</summary>
public sealed class T5Trainable : ITrainable, IPooledTrainable
{
    private readonly T5TrainingModel _model;
    private readonly string _baseModelDirectory;

    /// <summary>Trains every parameter of <paramref name="model"/>, loaded from <paramref name="baseModelDirectory"/>
    /// (whose config.json, generation_config.json and tokenizer files the saved folders copy).</summary>
    public T5Trainable(T5TrainingModel model, string baseModelDirectory)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _baseModelDirectory = baseModelDirectory;
        TrainedTensors = model.TrainableParameters.Select(p => new TrainedTensor(p.Name, p.Shape, p.Value, p.Grad)).ToArray();
    }

    /// <inheritdoc />
    public IReadOnlyList<TrainedTensor> TrainedTensors { get; }

    /// <inheritdoc />
    public void ZeroGrad() => _model.ZeroGrad();

    ManagedT5.Kernels.Cpu.WorkerPool IPooledTrainable.Pool => _model.Pool;

    /// <inheritdoc />
    public float ForwardBackward(TrainingBatch batch, float gradScale) => _model.ForwardBackward(batch, gradScale);

    /// <inheritdoc />
    public float Loss(TrainingBatch batch) => _model.Loss(batch);

    /// <inheritdoc />
    public void Save(string directory) =>
        HfModelFolder.Write(directory, _baseModelDirectory, _model.Config,
            _model.Parameters.Select(p => new TrainedTensor(p.Name, p.Shape, p.Value, p.Grad)).ToArray());
}

/// <summary><see cref="ITrainable"/> over a <see cref="T5TrainingModel"/> with a LoRA adapter attached: only the
/// adapter's A/B are trained; checkpoints and the output are the adapter in PEFT's format (adapter_config.json +
/// adapter_model.safetensors), which <c>managedt5 generate --adapter</c> and PEFT load.</summary>
public sealed class LoraTrainable : ITrainable, IPooledTrainable
{
    private readonly T5TrainingModel _model;

    /// <summary>Trains the LoRA A/B of <paramref name="model"/>, to which <see cref="T5TrainingModel.AttachLora"/> has
    /// attached an adapter.</summary>
    public LoraTrainable(T5TrainingModel model)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _ = model.ExportLora();   // throws when no adapter is attached
        TrainedTensors = model.TrainableParameters.Select(p => new TrainedTensor(p.Name, p.Shape, p.Value, p.Grad)).ToArray();
    }

    /// <inheritdoc />
    public IReadOnlyList<TrainedTensor> TrainedTensors { get; }

    /// <inheritdoc />
    public void ZeroGrad() => _model.ZeroGrad();

    ManagedT5.Kernels.Cpu.WorkerPool IPooledTrainable.Pool => _model.Pool;

    /// <inheritdoc />
    public float ForwardBackward(TrainingBatch batch, float gradScale) => _model.ForwardBackward(batch, gradScale);

    /// <inheritdoc />
    public float Loss(TrainingBatch batch) => _model.Loss(batch);

    /// <inheritdoc />
    public void Save(string directory) => _model.ExportLora().Save(directory);
}

/// <summary>A trainable whose kernels' worker pool the trainer may borrow between steps (for the optimizer's update).</summary>
internal interface IPooledTrainable
{
    /// <summary>The pool.</summary>
    ManagedT5.Kernels.Cpu.WorkerPool Pool { get; }
}
