// A hook that sees intermediate tensors as the forward pass makes them (tests, `managedt5 trace`).
using ManagedT5.Kernels;

namespace ManagedT5.Model;

/// <summary>Receives named intermediate tensors. Names follow HF's module paths
/// ("encoder.block.0.layer.0.SelfAttention.q", "decoder.final_layer_norm", "lm_head").</summary>
public interface ITensorObserver
{
    /// <summary>Called with a buffer whose first product(shape) floats hold the tensor; valid only during the call.</summary>
    void Observe(string name, IBuffer buffer, int[] shape);
}
