// The widest vector path a kernel may take. Kernels check the level before each width, so a test can force the
// Vector256, Vector128 or scalar path on a machine that has AVX-512.
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu;

/// <summary>Widest SIMD width the CPU kernels use, in bits (0 = plain scalar loops).</summary>
public enum SimdLevel
{
    /// <summary>Scalar loops only: the fallback every vector path is checked against.</summary>
    Scalar = 0,
    /// <summary>Vector128 (SSE / NEON).</summary>
    Vector128 = 128,
    /// <summary>Vector256 (AVX2).</summary>
    Vector256 = 256,
    /// <summary>Vector512 (AVX-512).</summary>
    Vector512 = 512,
}

/// <summary>Helpers on <see cref="SimdLevel"/>.</summary>
public static class SimdLevels
{
    /// <summary>The widest level this machine accelerates.</summary>
    public static SimdLevel Best =>
        Vector512.IsHardwareAccelerated ? SimdLevel.Vector512
        : Vector256.IsHardwareAccelerated ? SimdLevel.Vector256
        : Vector128.IsHardwareAccelerated ? SimdLevel.Vector128
        : SimdLevel.Scalar;

    /// <summary>The lower of <paramref name="requested"/> and what the hardware accelerates.</summary>
    public static SimdLevel Clamp(SimdLevel requested) => (SimdLevel)Math.Min((int)requested, (int)Best);

    /// <summary>Every level this machine can run, widest first (the levels a parity test sweeps).</summary>
    public static IReadOnlyList<SimdLevel> Supported()
    {
        var levels = new List<SimdLevel>();
        foreach (SimdLevel level in new[] { SimdLevel.Vector512, SimdLevel.Vector256, SimdLevel.Vector128, SimdLevel.Scalar })
            if (level <= Best) levels.Add(level);
        return levels;
    }
}
