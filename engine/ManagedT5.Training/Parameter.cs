// One trainable tensor of the model: its HF name and shape, the live f32 values the optimizer updates, and the
// gradient the backward pass accumulates into.
namespace ManagedT5.Training;

/// <summary>A named f32 parameter with its gradient, as HF's <c>model.named_parameters()</c> lists it.</summary>
public sealed class Parameter
{
    /// <summary>A parameter named <paramref name="name"/> of <paramref name="shape"/> holding <paramref name="value"/>.</summary>
    public Parameter(string name, int[] shape, float[] value, bool trainable = true)
    {
        long count = shape.Aggregate(1L, (a, d) => a * d);
        if (value.Length != count) throw new ArgumentException($"value: {value.Length} elements, shape [{string.Join(", ", shape)}] needs {count}.", nameof(value));
        Name = name;
        Shape = shape;
        Value = value;
        Grad = [];
        SetTrainable(trainable);
    }

    /// <summary>HF's name, e.g. "encoder.block.0.layer.0.SelfAttention.q.weight"; LoRA's
    /// "base_model.model.&lt;module&gt;.lora_A.weight".</summary>
    public string Name { get; }

    /// <summary>The shape, e.g. [out_features, in_features] for a Linear.</summary>
    public int[] Shape { get; }

    /// <summary>The live values, row-major (the optimizer updates them in place).</summary>
    public float[] Value { get; }

    /// <summary>The accumulated gradient, same length as <see cref="Value"/> while the parameter is trainable; empty
    /// when it is frozen (a frozen base under LoRA keeps no gradient memory).</summary>
    public float[] Grad { get; private set; }

    /// <summary>Whether the backward pass computes this parameter's gradient.</summary>
    public bool Trainable { get; private set; }

    /// <summary>Freezes (dropping the gradient buffer) or unfreezes (a zeroed one) the parameter.</summary>
    internal void SetTrainable(bool trainable)
    {
        Trainable = trainable;
        Grad = trainable ? (Grad.Length == Value.Length ? Grad : new float[Value.Length]) : [];
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name} [{string.Join(", ", Shape)}]";
}
