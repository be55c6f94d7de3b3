// Int8Gemm (int8 x uint8 -> int32 GEMM with per-row activation quantization, on AVX-VNNI, or VPMADDUBSW on AVX2 and
// AVX-512BW) against its scalar twin and against fp32 math with the same int8 weights.
// - Twin parity: each vector path and RunScalar do the same quantization and the same epilogue, and the integer dot
//   product is exact, so the outputs must be equal bit for bit, on odd shapes (edge strips and panels, k tails, k not
//   a multiple of 4), with and without accumulate, on 1 and 2 threads. Each path is forced by name (Int8Isa), so the
//   AVX2 kernels run on VNNI machines too, and the AVX-VNNI and AVX-512BW kernels run on every AVX2 machine (emulated
//   without the hardware, the test's display name then ending "(emulated: ...)": Int8Gemm.CanRun); a path this CPU
//   cannot run is skipped with the reason.
// - Accuracy: the only approximation is quantizing x per row, |x - q * sx| <= sx / 2 = max|x_r| / 254 per element, so
//   |y_int8 - y_exact| <= max|x_r| / 254 * sum_k |W[o, k]| for every output, plus fp32 rounding (< 1e-6 of
//   sum_k |x_k W[o, k]|). That worst case is asserted per element against a double-precision product with the
//   dequantized weights. The typical error follows the rounding model (independent errors uniform in +-sx/2, so
//   variance sx^2 / 12 * sum_k W[o, k]^2): the measured rms error is 0.96 to 1.00 times the model's, asserted <= 1.2.
//   Measured max |int8 - fp32 GEMM| / max |fp32 GEMM| at flan-t5-small shapes: 0.4 % for uniform activations, 2 to 3 %
//   when each row has two 8x outliers (the step grows with max|x_r|).
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Reference;
using Xunit.Abstractions;

namespace ManagedT5.Kernels.Tests;

public sealed unsafe class Int8GemmTests : IDisposable
{
    private readonly TensorStore _store = new();
    private readonly ITestOutputHelper _output;

    public Int8GemmTests(ITestOutputHelper output) => _output = output;

    /// <summary>(rows, in, out): every row count against every in_features for small outputs (edge panels), the
    /// encoder-sized outputs on fewer row counts, and the vocabulary once.</summary>
    private static IEnumerable<(int Rows, int In, int Out)> Shapes()
    {
        int[] rows = [1, 2, 5, 6, 7, 17, 128, 129, 257];
        int[] ins = [1, 7, 64, 100, 384, 512, 1024, 1030];
        foreach (int r in rows)
            foreach (int i in ins)
                foreach (int o in new[] { 1, 13, 33 }) yield return (r, i, o);
        foreach (int r in new[] { 5, 17, 128, 129 })
            foreach (int i in new[] { 7, 100, 512, 1030 })
                foreach (int o in new[] { 384, 512, 1024 }) yield return (r, i, o);
        yield return (7, 512, 32128);
    }

    [Int8IsaFact(Int8Isa.AvxVnni)]
    public void VnniGemmEqualsScalarTwinExactly() => GemmEqualsTwin(Int8Isa.AvxVnni);

    [Int8IsaFact(Int8Isa.Avx2)]
    public void Avx2GemmEqualsScalarTwinExactly() => GemmEqualsTwin(Int8Isa.Avx2);

    /// <summary>The 512-bit kernels (emulated where the CPU lacks AVX-512BW; the display name says so).</summary>
    [Int8IsaFact(Int8Isa.Avx512BW)]
    public void Avx512BWGemmEqualsScalarTwinExactly() => GemmEqualsTwin(Int8Isa.Avx512BW);

    private void GemmEqualsTwin(Int8Isa isa) =>
        AssertEqualsTwinOnOneAndTwoThreads($"{isa} GEMM", Shapes(), seed: 1,
            (pool, weight, x, residual, rows, accumulate) => Run(pool, isa, weight, x, residual, rows, accumulate));

    /// <summary>The decode (GEMV) form: 1-8 rows, every tail length of a 32-byte chunk, real decode shapes.</summary>
    [Int8IsaFact(Int8Isa.AvxVnni)]
    public void VnniGemvEqualsScalarTwinExactly() => GemvEqualsTwin(Int8Isa.AvxVnni);

    [Int8IsaFact(Int8Isa.Avx2)]
    public void Avx2GemvEqualsScalarTwinExactly() => GemvEqualsTwin(Int8Isa.Avx2);

    [Int8IsaFact(Int8Isa.Avx512BW)]
    public void Avx512BWGemvEqualsScalarTwinExactly() => GemvEqualsTwin(Int8Isa.Avx512BW);

    private void GemvEqualsTwin(Int8Isa isa) =>
        AssertEqualsTwinOnOneAndTwoThreads($"{isa} GEMV", GemvShapes(), seed: 500,
            (pool, weight, x, residual, rows, accumulate) => RunGemv(pool, isa, weight, x, residual, rows, accumulate));

    /// <summary>The products at their largest: every |q| = 127 against weights of +-127 with the same signs, so each
    /// adjacent pair sums to 2 * 127 * 127 = 32258 (VPMADDUBSW's int16 holds it; with the zero point's u = q + 128 it
    /// would be up to 64770 and saturate at 32767), and the most negative sums (opposite signs). The GEMM's split form
    /// multiplies |q| by w ^ s, which is -w - 1 = -128 for q &lt; 0 and w = 127: pairs of -2 * 127 * 128 = -32512, the
    /// edge of its int16 range, occur here too (odd rows have negative q against +127 weights).</summary>
    [Int8IsaFact(Int8Isa.Avx2)]
    public void Avx2LargestProductsStayExact() => LargestProductsStayExact(Int8Isa.Avx2);

    [Int8IsaFact(Int8Isa.AvxVnni)]
    public void VnniLargestProductsStayExact() => LargestProductsStayExact(Int8Isa.AvxVnni);

    [Int8IsaFact(Int8Isa.Avx512BW)]
    public void Avx512BWLargestProductsStayExact() => LargestProductsStayExact(Int8Isa.Avx512BW);

    private void LargestProductsStayExact(Int8Isa isa)
    {
        using var pool = new WorkerPool(2);
        const int rows = 8, inDim = 100, outDim = 19;
        HostTensor source = _store.Random("w", WeightFormat.Int8, outDim, inDim, 3, scale: 0.1f);
        var wp = (float*)source.Data;
        float[] x = new float[rows * inDim];
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < inDim; k++)
                x[r * inDim + k] = (r == rows - 1 || (k * 7 + r) % 3 == 0 ? -1f : 1f) * (r + 1);   // the last row all negative
        for (int o = 0; o < outDim; o++)
            for (int k = 0; k < inDim; k++)
                wp[o * inDim + k] = o == outDim - 1 ? 2f                                      // the last row all +127
                    : (o % 2 == 0) == ((k * 7) % 3 == 0) ? -2f : 2f;  // even rows match row 0's signs
        using CpuWeight weight = CpuWeight.Create(source, WeightFormat.Int8);
        float[] residual = new float[rows * outDim];
        float[] expected = RunScalar(weight, x, residual, rows, accumulate: false);
        Assert.Equal(2f * inDim, expected[0], 0.01f);   // row 0 x weight row 0: every product at +127 * 127
        Assert.Equal(-2f * rows * inDim, expected[rows * outDim - 1], 0.01f);   // q = -127 x w = +127 everywhere
        AssertIdentical(expected, Run(pool, isa, weight, x, residual, rows, accumulate: false), $"{isa} GEMM");
        AssertIdentical(expected, RunGemv(pool, isa, weight, x, residual, rows, accumulate: false), $"{isa} GEMV");
    }

    [Fact]
    public void EachLevelTakesTheBestIntegerPathThisCpuHas()
    {
        Assert.Equal(Int8Isa.Scalar, Int8Gemm.Isa(SimdLevel.Scalar));
        Assert.Equal(Int8Isa.Scalar, Int8Gemm.Isa(SimdLevel.Vector128));
        Int8Isa best = Int8Gemm.Isa(SimdLevels.Best);
        Int8Isa expected = SimdLevels.Best < SimdLevel.Vector256 ? Int8Isa.Scalar
            : Int8Gemm.IsSupported(Int8Isa.AvxVnni) ? Int8Isa.AvxVnni
            : SimdLevels.Best == SimdLevel.Vector512 && Int8Gemm.IsSupported(Int8Isa.Avx512BW) ? Int8Isa.Avx512BW
            : Int8Gemm.IsSupported(Int8Isa.Avx2) ? Int8Isa.Avx2 : Int8Isa.Scalar;
        Assert.Equal(expected, best);
        // The 512-bit path only at Vector512, and never emulated in production: a level picks it only with the hardware.
        if (SimdLevels.Best >= SimdLevel.Vector256 && !Int8Gemm.IsSupported(Int8Isa.AvxVnni))
            Assert.NotEqual(Int8Isa.Avx512BW, Int8Gemm.Isa(SimdLevel.Vector256));
        foreach (SimdLevel level in SimdLevels.Supported())
            Assert.True(Int8Gemm.IsSupported(Int8Gemm.Isa(level)), $"{level} picks {Int8Gemm.Isa(level)}, which this CPU lacks");
        _output.WriteLine($"best int8 path here: {best}");
    }

    private static IEnumerable<(int Rows, int In, int Out)> GemvShapes()
    {
        foreach (int rows in new[] { 1, 2, 3, 4, 8 })
            foreach ((int inDim, int outDim) in new[] { (1, 3), (31, 5), (32, 7), (33, 40), (63, 9), (64, 17), (100, 33), (512, 384), (768, 2048), (1024, 512), (512, 32128) })
                if (rows <= 2 || outDim < 10000) yield return (rows, inDim, outDim);
    }

    private delegate float[] Form(WorkerPool pool, CpuWeight weight, float[] x, float[] residual, int rows, bool accumulate);

    /// <summary>Every shape, with and without accumulation, on one and two threads: bit for bit the scalar twin.</summary>
    private void AssertEqualsTwinOnOneAndTwoThreads(string name, IEnumerable<(int Rows, int In, int Out)> shapes, int seed, Form form)
    {
        using var one = new WorkerPool(1);
        using var two = new WorkerPool(2);
        foreach ((int rows, int inDim, int outDim) in shapes)
        {
            using CpuWeight weight = Int8Weight(outDim, inDim, seed);
            float[] x = Activations(rows, inDim, seed + 1);
            float[] residual = TestData.Random(rows * outDim, seed + 2);
            foreach (bool accumulate in new[] { false, true })
            {
                float[] expected = RunScalar(weight, x, residual, rows, accumulate);
                foreach (WorkerPool pool in new[] { one, two })
                    AssertIdentical(expected, form(pool, weight, x, residual, rows, accumulate),
                        $"{name} {rows}x{inDim}x{outDim} accumulate={accumulate} threads={pool.Threads}");
            }
            seed += 3;
        }
    }

    /// <summary>The row sums the vector paths subtract the zero point with are the sums of the stored integers (the
    /// scalar twin never reads them, so the twin tests above check their use, and this their value).</summary>
    [Fact]
    public void QuantizedWeightKeepsTheSumOfEachStoredRow()
    {
        // 101 columns: three 32-wide vector steps and a scalar tail; row 3 all zero (scale 0), row 5 with a tie.
        HostTensor source = _store.Random("w", WeightFormat.Int8, 37, 101, 21, scale: 0.1f);
        var x = (float*)source.Data;
        new Span<float>(x + 3 * 101, 101).Clear();
        x[5 * 101] = 1f; x[5 * 101 + 40] = 0.5f * (1f / 127f) * 3;   // 1.5 steps: rounds to even (2)
        using CpuWeight weight = CpuWeight.Create(source, WeightFormat.Int8);
        Assert.Equal(37, weight.RowSums.Length);
        var data = (sbyte*)weight.Data;
        for (int r = 0; r < weight.Rows; r++)
        {
            // The stored bytes are the scalar formula's (max|row| / 127, round half to even, clamp), whatever path made them.
            float max = 0;
            for (int k = 0; k < weight.Cols; k++) max = MathF.Max(max, MathF.Abs(x[r * 101 + k]));
            float scale = max / 127f, inverse = scale == 0 ? 0 : 1f / scale;
            Assert.Equal(scale, weight.Scales[r]);
            int sum = 0;
            for (int k = 0; k < weight.Cols; k++)
            {
                Assert.Equal((sbyte)Math.Clamp(MathF.Round(x[r * 101 + k] * inverse), -127, 127), data[(long)r * weight.Cols + k]);
                sum += data[(long)r * weight.Cols + k];
            }
            Assert.Equal(sum, weight.RowSums[r]);
        }
        Assert.Contains(weight.RowSums.ToArray(), s => s != 0);
        using CpuWeight f32 = CpuWeight.Create(_store.Random("f", WeightFormat.F32, 3, 5, 1), null);
        Assert.True(f32.RowSums.IsEmpty && f32.Scales.IsEmpty);
    }

    [Fact]
    public void UnsupportedLevelRunsTheScalarTwin()
    {
        using var pool = new WorkerPool(2);
        using CpuWeight weight = Int8Weight(40, 100, 5);
        float[] x = Activations(9, 100, 6);
        float[] residual = TestData.Random(9 * 40, 7);
        Assert.False(Int8Gemm.IsSupported(SimdLevel.Scalar));
        AssertIdentical(RunScalar(weight, x, residual, 9, true), Run(pool, SimdLevel.Scalar, weight, x, residual, 9, true), "scalar level");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ErrorAgainstFp32IsWithinTheActivationQuantizationBound(bool outliers)
    {
        using var pool = new WorkerPool(2);
        SimdLevel level = SimdLevels.Best;
        int seed = 100;
        foreach ((int rows, int inDim, int outDim) in new[] { (128, 512, 1024), (128, 1024, 512), (128, 512, 384), (33, 100, 13) })
        {
            using CpuWeight weight = Int8Weight(outDim, inDim, seed);
            float[] x = outliers ? Activations(rows, inDim, seed + 1) : TestData.Random(rows * inDim, seed + 1);
            float[] int8 = Run(pool, level, weight, x, new float[rows * outDim], rows, accumulate: false);
            float[] fp32 = new float[rows * outDim];
            ReferenceKernels.Linear(x, weight, fp32, rows, accumulate: false);   // the int8 weights widened, fp32 activations

            var exact = new float[rows * outDim];
            double squaredError = 0, squaredPredicted = 0;
            for (int r = 0; r < rows; r++)
            {
                double maxAbs = 0;
                for (int k = 0; k < inDim; k++) maxAbs = Math.Max(maxAbs, Math.Abs(x[r * inDim + k]));
                double step = maxAbs / 127; // sx
                for (int o = 0; o < outDim; o++)
                {
                    double sum = 0, sumAbsW = 0, sumSquaredW = 0, sumAbsXW = 0;
                    for (int k = 0; k < inDim; k++)
                    {
                        double w = weight.Get(o, k);
                        sum += x[r * inDim + k] * w;
                        sumAbsW += Math.Abs(w);
                        sumSquaredW += w * w;
                        sumAbsXW += Math.Abs(x[r * inDim + k] * w);
                    }
                    // Worst case: every element off by half a step, all in the same direction.
                    double bound = step / 2 * sumAbsW + 1e-6 * sumAbsXW;
                    double error = int8[r * outDim + o] - sum;
                    Assert.True(Math.Abs(error) <= bound, $"{rows}x{inDim}x{outDim} [{r}, {o}]: |error| {Math.Abs(error):E3} > bound {bound:E3}");
                    exact[r * outDim + o] = (float)sum;
                    squaredError += error * error;
                    // Typical case: independent rounding errors uniform in [-step/2, step/2], variance step^2 / 12.
                    squaredPredicted += step * step / 12 * sumSquaredW;
                }
            }

            // The widening fp32 GEMM is exact to ~1e-6 here, so the int8 path's error is the quantization's.
            TestData.AssertClose(exact, fp32, "fp32 GEMM vs exact");
            double rmsRatio = Math.Sqrt(squaredError / squaredPredicted);
            double normalized = Errors.RelativeError(fp32, int8);
            _output.WriteLine($"{rows}x{inDim}x{outDim} outliers={outliers}: max |int8 - fp32| / max |fp32| = {normalized:E2}, " +
                $"rms error / predicted rms = {rmsRatio:F3}");
            Assert.True(rmsRatio <= 1.2, $"{rows}x{inDim}x{outDim}: rms error {rmsRatio:F3} x the rounding model's");
            seed += 2;
        }
    }

    /// <summary>A zero row (scale 0), rows of one huge element among small ones, and constant rows quantize cleanly.</summary>
    [Fact]
    public void DegenerateRowsMatchTheTwin()
    {
        using var pool = new WorkerPool(2);
        const int rows = 8, inDim = 96, outDim = 48;
        using CpuWeight weight = Int8Weight(outDim, inDim, 9);
        float[] x = TestData.Random(rows * inDim, 10);
        Array.Clear(x, 0, inDim);                                   // row 0: all zero
        x[inDim + 5] = 1e4f;                                        // row 1: one outlier
        Array.Fill(x, -0.25f, 2 * inDim, inDim);                    // row 2: constant
        for (int k = 0; k < inDim; k++) x[3 * inDim + k] = k % 2 == 0 ? 0.5f : -0.5f; // row 3: halves (ties round to even)
        float[] residual = TestData.Random(rows * outDim, 11);
        float[] expected = RunScalar(weight, x, residual, rows, accumulate: false);
        foreach (Int8Isa isa in new[] { Int8Isa.AvxVnni, Int8Isa.Avx2, Int8Isa.Avx512BW })
        {
            if (!Int8Gemm.CanRun(isa)) continue;
            AssertIdentical(expected, Run(pool, isa, weight, x, residual, rows, accumulate: false), $"{isa} degenerate rows");
            AssertIdentical(expected, RunGemv(pool, isa, weight, x, residual, rows, accumulate: false), $"{isa} GEMV degenerate rows");
        }
        for (int o = 0; o < outDim; o++) Assert.Equal(0f, expected[o]);
    }

    private CpuWeight Int8Weight(int outDim, int inDim, int seed)
    {
        var weight = CpuWeight.Create(_store.Random("w", WeightFormat.Int8, outDim, inDim, seed, scale: 0.1f), WeightFormat.Int8);
        Assert.Equal(WeightFormat.Int8, weight.Format);
        return weight;
    }

    /// <summary>Uniform activations with a few 8x outliers per row, as transformer activations tend to have.</summary>
    private static float[] Activations(int rows, int inDim, int seed)
    {
        float[] x = TestData.Random(rows * inDim, seed);
        var random = new Random(seed);
        for (int r = 0; r < rows; r++)
            for (int n = 0; n < 2; n++) x[r * inDim + random.Next(inDim)] *= 8;
        return x;
    }

    /// <summary>Int8Gemm.Run into a copy of <paramref name="residual"/> padded with sentinels that must stay untouched.</summary>
    private static float[] Run(WorkerPool pool, SimdLevel level, CpuWeight weight, float[] x, float[] residual, int rows, bool accumulate) =>
        Invoke(weight, x, residual, (float* xp, in WeightView view, float* yp) => Int8Gemm.Run(pool, level, xp, view, yp, rows, accumulate));

    private static float[] Run(WorkerPool pool, Int8Isa isa, CpuWeight weight, float[] x, float[] residual, int rows, bool accumulate) =>
        Invoke(weight, x, residual, (float* xp, in WeightView view, float* yp) => Int8Gemm.Run(pool, isa, xp, view, yp, rows, accumulate));

    private static float[] RunGemv(WorkerPool pool, Int8Isa isa, CpuWeight weight, float[] x, float[] residual, int rows, bool accumulate) =>
        Invoke(weight, x, residual, (float* xp, in WeightView view, float* yp) => Int8Gemm.RunGemv(pool, isa, xp, view, yp, rows, accumulate));

    private static float[] RunScalar(CpuWeight weight, float[] x, float[] residual, int rows, bool accumulate) =>
        Invoke(weight, x, residual, (float* xp, in WeightView view, float* yp) => Int8Gemm.RunScalar(xp, view, yp, rows, accumulate));

    private delegate void Kernel(float* x, in WeightView view, float* y);

    private static float[] Invoke(CpuWeight weight, float[] x, float[] residual, Kernel kernel)
    {
        const int pad = 7;
        var y = new float[residual.Length + pad];
        residual.CopyTo(y, 0);
        y.AsSpan(residual.Length).Fill(float.NaN);
        fixed (float* xp = x, yp = y) kernel(xp, WeightView.Of(weight), yp);
        for (int i = residual.Length; i < y.Length; i++) Assert.True(float.IsNaN(y[i]), "wrote past the output");
        return y[..residual.Length];
    }

    private static void AssertIdentical(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, the scalar twin gives {expected[i]:R}");
    }

    public void Dispose() => _store.Dispose();
}

/// <summary>A fact that runs where the forced <see cref="Int8Isa"/> can run (<see cref="Int8Gemm.CanRun"/>: AVX-512BW
/// emulated on AVX2 machines, its display name then saying "emulated"), and is reported skipped, with the reason,
/// elsewhere.</summary>
internal sealed class Int8IsaFactAttribute : FactAttribute
{
    public Int8IsaFactAttribute(Int8Isa isa, [System.Runtime.CompilerServices.CallerMemberName] string test = "")
    {
        if (!Int8Gemm.CanRun(isa)) Skip = $"This CPU lacks {isa}; the {isa} int8 kernels run on CPUs that have it.";
        else if (Int8Gemm.IsEmulated(isa)) DisplayName = $"{typeof(Int8GemmTests).FullName}.{test} (emulated: this CPU lacks {isa})";
    }
}
