// Element-wise Add and Scale (the residual add, the tied-embedding rescale). Each is a cascade: the widest allowed
// vector loop, then narrower ones for what is left, then a scalar tail. TensorPrimitives is as fast here, but
// hand loops let a test force each width.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu;

/// <summary>Element-wise kernels over raw float pointers.</summary>
internal static unsafe class ElementWiseKernels
{
    /// <summary>destination[i] += source[i] for i &lt; length.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Add(float* source, float* destination, int length, SimdLevel level)
    {
        int i = 0;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated)
            for (; i <= length - 16; i += 16) (Vector512.Load(destination + i) + Vector512.Load(source + i)).Store(destination + i);
        if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated)
            for (; i <= length - 8; i += 8) (Vector256.Load(destination + i) + Vector256.Load(source + i)).Store(destination + i);
        if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated)
            for (; i <= length - 4; i += 4) (Vector128.Load(destination + i) + Vector128.Load(source + i)).Store(destination + i);
        for (; i < length; i++) destination[i] += source[i];
    }

    /// <summary>buffer[i] *= factor for i &lt; length.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scale(float* buffer, float factor, int length, SimdLevel level)
    {
        int i = 0;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated)
            for (; i <= length - 16; i += 16) (Vector512.Load(buffer + i) * factor).Store(buffer + i);
        if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated)
            for (; i <= length - 8; i += 8) (Vector256.Load(buffer + i) * factor).Store(buffer + i);
        if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated)
            for (; i <= length - 4; i += 4) (Vector128.Load(buffer + i) * factor).Store(buffer + i);
        for (; i < length; i++) buffer[i] *= factor;
    }
}
