// Inverted dropout for training with counter-based masks: whether element i of a site is kept is a hash of (the site's
// key, i), so the backward pass regenerates the forward's mask instead of storing it, and the result does not depend on
// the thread count or split. DropoutMask holds the hash (shared by the SIMD kernel and its scalar twin); the kernel is
// TrainingKernels.Dropout.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu.Training;

/// <summary>
/// The masks of <see cref="TrainingKernels.Dropout"/>: element <c>i</c> of a site is dropped when
/// <c>Hash(siteKey, i) &lt; Threshold(rate)</c> (probability rate, to 2⁻³²) and kept values are multiplied by
/// <c>Scale(rate)</c> = 1/(1 − rate), as torch.nn.Dropout does. Keys: <see cref="RunKey"/> of (seed, optimizer step,
/// micro-batch), then <see cref="SiteKey"/> per place dropout is applied. PyTorch draws its masks from its own generator,
/// so the masks (not the rule) differ from PyTorch's.
/// </summary>
public static class DropoutMask
{
    /// <summary>SplitMix64's finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix.</summary>
    public static ulong SplitMix64(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The key of one forward/backward pass: a hash of the run's seed, the optimizer step and the micro-batch
    /// within it (so a resumed run draws the masks a straight run draws).</summary>
    public static ulong RunKey(int seed, long step, int microBatch) =>
        SplitMix64(SplitMix64(SplitMix64((ulong)(uint)seed) ^ (ulong)step) ^ (uint)microBatch);

    /// <summary>The key of one dropout site (a tensor the pass drops from) within a pass.</summary>
    public static ulong SiteKey(ulong runKey, int site) => SplitMix64(runKey ^ ((ulong)(uint)site * 0xD1B54A32D192ED03UL));

    /// <summary>Hash values below this are dropped: round(rate · 2³²). <paramref name="rate"/> in [0, 1).</summary>
    public static uint Threshold(double rate) => (uint)Math.Min(Math.Round(rate * 4294967296.0), uint.MaxValue);

    /// <summary>The factor kept values are multiplied by: 1/(1 − rate), in f32.</summary>
    public static float Scale(double rate) => (float)(1.0 / (1.0 - rate));

    /// <summary>The 32-bit hash of element <paramref name="index"/> of a site: two rounds of the lowbias32 integer mix
    /// (C. Wellons), each keyed with one half of <paramref name="siteKey"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Hash(ulong siteKey, uint index) => Mix(Mix(index ^ (uint)siteKey) + (uint)(siteKey >> 32));

    /// <summary>Whether element <paramref name="index"/> of the site is kept at <paramref name="threshold"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Kept(ulong siteKey, uint index, uint threshold) => Hash(siteKey, index) >= threshold;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Mix(uint x)
    {
        x ^= x >> 16;
        x *= 0x7FEB352DU;
        x ^= x >> 15;
        x *= 0x846CA68BU;
        return x ^ (x >> 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Mix(Vector256<uint> x)
    {
        x ^= Vector256.ShiftRightLogical(x, 16);
        x *= Vector256.Create(0x7FEB352DU);
        x ^= Vector256.ShiftRightLogical(x, 15);
        x *= Vector256.Create(0x846CA68BU);
        return x ^ Vector256.ShiftRightLogical(x, 16);
    }

    /// <summary>
    /// y[e] (+)= kept(first + e) ? x[e]·scale : 0 for e in [0, count): the fast loop (8 lanes of the hash at a time), equal
    /// bit for bit to the scalar rule. <paramref name="x"/> may be <paramref name="y"/> when not accumulating.
    /// </summary>
    internal static unsafe void Apply(float* x, float* y, int count, uint first, ulong siteKey, uint threshold, float scale, bool accumulate)
    {
        int e = 0;
        if (Vector256.IsHardwareAccelerated && count >= 8)
        {
            Vector256<uint> k0 = Vector256.Create((uint)siteKey), k1 = Vector256.Create((uint)(siteKey >> 32)), t = Vector256.Create(threshold);
            Vector256<uint> index = Vector256.Create(first) + Vector256.Create(0u, 1, 2, 3, 4, 5, 6, 7), eight = Vector256.Create(8u);
            Vector256<float> s = Vector256.Create(scale);
            for (; e + 8 <= count; e += 8, index += eight)
            {
                Vector256<float> kept = Vector256.GreaterThanOrEqual(Mix(Mix(index ^ k0) + k1), t).AsSingle();
                Vector256<float> value = Vector256.ConditionalSelect(kept, Vector256.Load(x + e) * s, Vector256<float>.Zero);
                if (accumulate) value = Vector256.Load(y + e) + value;
                value.Store(y + e);
            }
        }
        for (; e < count; e++)
        {
            float value = Kept(siteKey, first + (uint)e, threshold) ? x[e] * scale : 0f;
            y[e] = accumulate ? y[e] + value : value;
        }
    }
}

public sealed unsafe partial class TrainingKernels
{
    /// <summary>
    /// Inverted dropout: y[i] (+)= x[i]·1/(1 − rate) where <see cref="DropoutMask"/> keeps element i of the site
    /// <paramref name="siteKey"/>, else 0. Its backward is the same call on dy with the same key (the op is linear and
    /// its own transpose). <paramref name="x"/> may be <paramref name="y"/> (in place) when not accumulating. rate in [0, 1);
    /// rate 0 copies (or adds) x unchanged.
    /// </summary>
    public void Dropout(ReadOnlySpan<float> x, Span<float> y, double rate, ulong siteKey, bool accumulate = false)
    {
        if (!(rate is >= 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(rate), rate, "rate: the dropout probability must be in [0, 1).");
        if ((Twins & TrainingOps.Dropout) != 0) { TrainingReference.Dropout(x, y, rate, siteKey, accumulate); return; }
        Check(y, x.Length, nameof(y));
        fixed (float* px = x, py = y)
        {
            var job = new DropoutJob
            {
                X = px, Y = py, Length = x.Length, Key = siteKey, Threshold = DropoutMask.Threshold(rate), Scale = DropoutMask.Scale(rate), Accumulate = accumulate,
            };
            _pool.RunRanges(ref job, (x.Length + DropoutJob.Grain - 1) / DropoutJob.Grain, 1);
        }
    }

    private struct DropoutJob : IRangeJob
    {
        public const int Grain = 8192;
        public float* X, Y;
        public int Length;
        public ulong Key;
        public uint Threshold;
        public float Scale;
        public bool Accumulate;

        public readonly void Execute(int first, int end)
        {
            int e0 = first * Grain, e1 = (int)Math.Min((long)end * Grain, Length);
            DropoutMask.Apply(X + e0, Y + e0, e1 - e0, (uint)e0, Key, Threshold, Scale, Accumulate);
        }
    }
}
