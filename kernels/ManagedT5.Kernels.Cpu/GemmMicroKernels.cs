// GEMM micro-kernels: C tile (MR x NR) (+)= packed A (kc x MR) . packed B (kc x NR), accumulators held in registers.
// Each k step loads one row of B (NR floats), broadcasts MR values of A and does MR * NR / width FMAs. Sizes are
// chosen to fill the register file: AVX-512 has 32 registers (8 x 2 accumulators), AVX2 16 (6 x 2), SSE 16 (6 x 2).
// Each kernel first prefetches its C tile: without that, the tile's rows (in L3 or memory once C is megabytes) were
// missed after the loop, and a 4096 x 768 x 768 GEMM ran at 101 GFLOP/s instead of 143 (AVX2, 2 threads).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedT5.Kernels.Cpu;

/// <summary>A register-blocked inner kernel of the packed GEMM.</summary>
internal unsafe interface IMicroKernel
{
    /// <summary>Rows of A (and C) per tile.</summary>
    static abstract int MR { get; }
    /// <summary>Columns of B (and C) per tile.</summary>
    static abstract int NR { get; }
    /// <summary>c[r * ldc + j] (+)= sum_k a[k * MR + r] * b[k * NR + j] for the whole MR x NR tile.</summary>
    static abstract void Run(float* a, float* b, int kc, float* c, int ldc, bool add);
}

/// <summary>AVX-512: 8 rows x 32 columns (two zmm per row), 16 accumulators.</summary>
internal readonly unsafe struct MicroKernel512 : IMicroKernel
{
    public static int MR => 8;
    public static int NR => 32;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(float* a, float* b, int kc, float* c, int ldc, bool add)
    {
        if (Sse.IsSupported)
            for (int r = 0; r < 8; r++) { Sse.Prefetch0(c + r * ldc); Sse.Prefetch0(c + r * ldc + 16); Sse.Prefetch0(c + r * ldc + 31); }
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default,
            c60 = default, c61 = default, c70 = default, c71 = default;
        for (int k = 0; k < kc; k++, a += 8, b += 32)
        {
            Vector512<float> b0 = Vector512.Load(b), b1 = Vector512.Load(b + 16);
            Vector512<float> ak = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(ak, b0, c00); c01 = Vector512.FusedMultiplyAdd(ak, b1, c01);
            ak = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(ak, b0, c10); c11 = Vector512.FusedMultiplyAdd(ak, b1, c11);
            ak = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(ak, b0, c20); c21 = Vector512.FusedMultiplyAdd(ak, b1, c21);
            ak = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(ak, b0, c30); c31 = Vector512.FusedMultiplyAdd(ak, b1, c31);
            ak = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(ak, b0, c40); c41 = Vector512.FusedMultiplyAdd(ak, b1, c41);
            ak = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(ak, b0, c50); c51 = Vector512.FusedMultiplyAdd(ak, b1, c51);
            ak = Vector512.Create(a[6]);
            c60 = Vector512.FusedMultiplyAdd(ak, b0, c60); c61 = Vector512.FusedMultiplyAdd(ak, b1, c61);
            ak = Vector512.Create(a[7]);
            c70 = Vector512.FusedMultiplyAdd(ak, b0, c70); c71 = Vector512.FusedMultiplyAdd(ak, b1, c71);
        }
        Store(c, c00, c01, add); Store(c + ldc, c10, c11, add);
        Store(c + 2 * ldc, c20, c21, add); Store(c + 3 * ldc, c30, c31, add);
        Store(c + 4 * ldc, c40, c41, add); Store(c + 5 * ldc, c50, c51, add);
        Store(c + 6 * ldc, c60, c61, add); Store(c + 7 * ldc, c70, c71, add);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector512<float> low, Vector512<float> high, bool add)
    {
        if (add) { low += Vector512.Load(c); high += Vector512.Load(c + 16); }
        low.Store(c);
        high.Store(c + 16);
    }
}

/// <summary>AVX2: 6 rows x 16 columns (two ymm per row), 12 accumulators.</summary>
internal readonly unsafe struct MicroKernel256 : IMicroKernel
{
    public static int MR => 6;
    public static int NR => 16;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(float* a, float* b, int kc, float* c, int ldc, bool add)
    {
        if (Sse.IsSupported)
        {
            // The tile's rows (two lines each when unaligned): fetched while the loop runs, not missed after it.
            // C of an encoder batch is megabytes, so the tile is usually in L3 or memory by the next depth slab.
            for (int r = 0; r < 6; r++) { Sse.Prefetch0(c + r * ldc); Sse.Prefetch0(c + r * ldc + 15); }
        }
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int k = 0; k < kc; k++, a += 6, b += 16)
        {
            Vector256<float> b0 = Vector256.Load(b), b1 = Vector256.Load(b + 8);
            Vector256<float> ak = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(ak, b0, c00); c01 = Vector256.FusedMultiplyAdd(ak, b1, c01);
            ak = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(ak, b0, c10); c11 = Vector256.FusedMultiplyAdd(ak, b1, c11);
            ak = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(ak, b0, c20); c21 = Vector256.FusedMultiplyAdd(ak, b1, c21);
            ak = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(ak, b0, c30); c31 = Vector256.FusedMultiplyAdd(ak, b1, c31);
            ak = Vector256.Create(a[4]);
            c40 = Vector256.FusedMultiplyAdd(ak, b0, c40); c41 = Vector256.FusedMultiplyAdd(ak, b1, c41);
            ak = Vector256.Create(a[5]);
            c50 = Vector256.FusedMultiplyAdd(ak, b0, c50); c51 = Vector256.FusedMultiplyAdd(ak, b1, c51);
        }
        Store(c, c00, c01, add); Store(c + ldc, c10, c11, add); Store(c + 2 * ldc, c20, c21, add);
        Store(c + 3 * ldc, c30, c31, add); Store(c + 4 * ldc, c40, c41, add); Store(c + 5 * ldc, c50, c51, add);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector256<float> low, Vector256<float> high, bool add)
    {
        if (add) { low += Vector256.Load(c); high += Vector256.Load(c + 8); }
        low.Store(c);
        high.Store(c + 8);
    }
}

/// <summary>SSE / NEON: 6 rows x 8 columns (two xmm per row), 12 accumulators.</summary>
internal readonly unsafe struct MicroKernel128 : IMicroKernel
{
    public static int MR => 6;
    public static int NR => 8;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(float* a, float* b, int kc, float* c, int ldc, bool add)
    {
        if (Sse.IsSupported)
            for (int r = 0; r < 6; r++) { Sse.Prefetch0(c + r * ldc); Sse.Prefetch0(c + r * ldc + 7); }
        Vector128<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int k = 0; k < kc; k++, a += 6, b += 8)
        {
            Vector128<float> b0 = Vector128.Load(b), b1 = Vector128.Load(b + 4);
            Vector128<float> ak = Vector128.Create(a[0]);
            c00 = Vector128.FusedMultiplyAdd(ak, b0, c00); c01 = Vector128.FusedMultiplyAdd(ak, b1, c01);
            ak = Vector128.Create(a[1]);
            c10 = Vector128.FusedMultiplyAdd(ak, b0, c10); c11 = Vector128.FusedMultiplyAdd(ak, b1, c11);
            ak = Vector128.Create(a[2]);
            c20 = Vector128.FusedMultiplyAdd(ak, b0, c20); c21 = Vector128.FusedMultiplyAdd(ak, b1, c21);
            ak = Vector128.Create(a[3]);
            c30 = Vector128.FusedMultiplyAdd(ak, b0, c30); c31 = Vector128.FusedMultiplyAdd(ak, b1, c31);
            ak = Vector128.Create(a[4]);
            c40 = Vector128.FusedMultiplyAdd(ak, b0, c40); c41 = Vector128.FusedMultiplyAdd(ak, b1, c41);
            ak = Vector128.Create(a[5]);
            c50 = Vector128.FusedMultiplyAdd(ak, b0, c50); c51 = Vector128.FusedMultiplyAdd(ak, b1, c51);
        }
        Store(c, c00, c01, add); Store(c + ldc, c10, c11, add); Store(c + 2 * ldc, c20, c21, add);
        Store(c + 3 * ldc, c30, c31, add); Store(c + 4 * ldc, c40, c41, add); Store(c + 5 * ldc, c50, c51, add);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector128<float> low, Vector128<float> high, bool add)
    {
        if (add) { low += Vector128.Load(c); high += Vector128.Load(c + 4); }
        low.Store(c);
        high.Store(c + 4);
    }
}

/// <summary>Scalar: 4 x 4 with plain loops; the fallback and the twin the vector kernels are checked against.</summary>
internal readonly unsafe struct MicroKernelScalar : IMicroKernel
{
    public static int MR => 4;
    public static int NR => 4;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(float* a, float* b, int kc, float* c, int ldc, bool add)
    {
        float* acc = stackalloc float[16];
        for (int i = 0; i < 16; i++) acc[i] = 0;
        for (int k = 0; k < kc; k++, a += 4, b += 4)
            for (int r = 0; r < 4; r++)
                for (int j = 0; j < 4; j++)
                    acc[r * 4 + j] = MathF.FusedMultiplyAdd(a[r], b[j], acc[r * 4 + j]);
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 4; j++)
                c[r * ldc + j] = add ? c[r * ldc + j] + acc[r * 4 + j] : acc[r * 4 + j];
    }
}
