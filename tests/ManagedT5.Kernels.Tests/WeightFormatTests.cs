// The narrow-format readers against .NET's own conversions, bit for bit: every one of the 65536 IEEE half patterns
// (subnormals, infinities, NaNs, -0) through the shift-and-multiply widening at each vector width, and the lane
// layout that the GEMV's x must follow.
using System.Runtime.Intrinsics;
using ManagedT5.Kernels.Cpu;

namespace ManagedT5.Kernels.Tests;

public sealed unsafe class WeightFormatTests
{
    [Fact]
    public void HalfBitsWidensEveryHalfExactly()
    {
        uint* lanes = stackalloc uint[16];
        for (int low = 0; low < 65536; low += 16)
        {
            // 16 lanes: low halves take the patterns low .. low+15, high halves the same patterns reversed
            for (int l = 0; l < 16; l++) lanes[l] = (uint)(low + l) | (uint)(low + 15 - l) << 16;
            Vector512<uint> v512 = Vector512.Load(lanes);
            Vector512<float> lo = HalfBits.Low(v512), hi = HalfBits.High(v512);
            Vector256<float> lo256 = HalfBits.Low(v512.GetLower()), hi256 = HalfBits.High(v512.GetLower());
            Vector128<float> lo128 = HalfBits.Low(v512.GetLower().GetLower()), hi128 = HalfBits.High(v512.GetLower().GetLower());
            for (int l = 0; l < 16; l++)
            {
                Check((ushort)(low + l), lo[l]);
                Check((ushort)(low + 15 - l), hi[l]);
                if (l < 8) { Check((ushort)(low + l), lo256[l]); Check((ushort)(low + 15 - l), hi256[l]); }
                if (l < 4) { Check((ushort)(low + l), lo128[l]); Check((ushort)(low + 15 - l), hi128[l]); }
            }
        }
    }

    /// <summary>The bulk float -> bfloat16 conversion (checkpoints converted at load) equals the scalar one on every
    /// upper-half pattern (NaNs, infinities, subnormals, -0) with the lower halves that decide rounding (0, just below
    /// and at the tie, just above, all ones), at span lengths that leave every tail; and a few values by hand.</summary>
    [Fact]
    public void BulkBFloat16ConversionEqualsTheScalarOneBitForBit()
    {
        uint[] lows = [0, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x1234];
        var values = new float[65536 * lows.Length];
        for (int high = 0; high < 65536; high++)
            for (int j = 0; j < lows.Length; j++) values[high * lows.Length + j] = BitConverter.UInt32BitsToSingle((uint)high << 16 | lows[j]);
        var bulk = new ushort[values.Length];
        DTypes.SingleToBFloat16(values, bulk);
        for (int i = 0; i < values.Length; i++)
            if (bulk[i] != DTypes.SingleToBFloat16(values[i]))
                Assert.Fail($"0x{BitConverter.SingleToUInt32Bits(values[i]):X8}: bulk 0x{bulk[i]:X4}, scalar 0x{DTypes.SingleToBFloat16(values[i]):X4}");
        for (int length = 0; length < 40; length++)
        {
            var part = new ushort[length + 1];
            DTypes.SingleToBFloat16(values.AsSpan(70000, length), part);
            Assert.Equal(bulk.AsSpan(70000, length).ToArray(), part[..length]);
            Assert.Equal(0, part[length]);   // nothing written past the span
        }
        ushort[] known = new ushort[5];
        DTypes.SingleToBFloat16([1.5f, BitConverter.UInt32BitsToSingle(0x3F808000), BitConverter.UInt32BitsToSingle(0x3F818000), float.MaxValue, -0f], known);
        Assert.Equal(new ushort[] { 0x3FC0, 0x3F80, 0x3F82, 0x7F80, 0x8000 }, known);   // ties to even; overflow to infinity
        Assert.True(float.IsNaN(DTypes.BFloat16ToSingle(bulk[0x7FC0 * lows.Length + 1])));
        Assert.Throws<ArgumentException>(() => DTypes.SingleToBFloat16(new float[3], new ushort[2]));
    }

    /// <summary>An F32 tensor loaded as F16 or BF16 (the bulk conversions at load) stores each element's scalar
    /// conversion, specials included, on a length that leaves a tail.</summary>
    [Fact]
    public void F32LoadedAsHalfOrBFloat16StoresTheScalarConversion()
    {
        using var store = new TensorStore();
        float[] values = TestData.Random(37 * 11, 4, scale: 1e3f);
        values[0] = float.NaN; values[1] = float.PositiveInfinity; values[2] = -0f; values[3] = 1e-42f; values[4] = 70000f;
        HostTensor source = store.Make("w", DType.F32, [37, 11], values);
        using CpuWeight half = CpuWeight.Create(source, WeightFormat.F16), bf16 = CpuWeight.Create(source, WeightFormat.BF16);
        for (int i = 0; i < values.Length; i++)
        {
            Assert.Equal(BitConverter.HalfToUInt16Bits((Half)values[i]), ((ushort*)half.Data)[i]);
            Assert.Equal(DTypes.SingleToBFloat16(values[i]), ((ushort*)bf16.Data)[i]);
        }
    }

    private static void Check(ushort bits, float actual)
    {
        float expected = (float)BitConverter.UInt16BitsToHalf(bits);
        if (float.IsNaN(expected)) Assert.True(float.IsNaN(actual), $"half 0x{bits:X4}: expected NaN, got {actual}");
        else Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual),
            $"half 0x{bits:X4}: expected {expected:R}, got {actual:R}");
    }

    [Theory]
    [InlineData(SimdLevel.Vector512, 1)]
    [InlineData(SimdLevel.Vector512, 2)]
    [InlineData(SimdLevel.Vector256, 2)]
    [InlineData(SimdLevel.Vector128, 1)]
    [InlineData(SimdLevel.Scalar, 2)]
    public void LaneLayoutPutsEachWeightIndexWhereItsLaneReadsIt(SimdLevel level, int elementSize)
    {
        const int length = 200; // whole chunks, then a natural-order tail
        float* x = stackalloc float[length], laid = stackalloc float[length];
        for (int i = 0; i < length; i++) x[i] = i;
        LaneLayout.Arrange(x, laid, length, level, elementSize);
        int chunk = LaneLayout.ChunkElements(level, elementSize);
        int parts = 4 / elementSize, lanes = chunk / parts;
        int whole = chunk == 0 ? 0 : length / chunk * chunk;
        for (int c = 0; c < whole; c += chunk)
            for (int l = 0; l < lanes; l++)
                for (int j = 0; j < parts; j++)
                    Assert.Equal(c + l * parts + j, laid[c + j * lanes + l]);
        for (int i = whole; i < length; i++) Assert.Equal(i, laid[i]);
    }
}
