// What this CPU is and which instruction sets the CPU kernels use on it, for benchmark records: a figure read on a
// machine without the instruction sets it was measured with (AVX-VNNI, AVX-512) does not reproduce.
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedT5.Kernels.Cpu;

/// <summary>The CPU's model and the instruction sets the CPU kernels take on it.</summary>
public static class CpuFeatures
{
    /// <summary>The CPU's model name (Linux: /proc/cpuinfo's "model name"; elsewhere PROCESSOR_IDENTIFIER, else the
    /// architecture).</summary>
    public static string Model
    {
        get
        {
            try
            {
                if (File.Exists("/proc/cpuinfo"))
                    foreach (string line in File.ReadLines("/proc/cpuinfo"))
                        if (line.StartsWith("model name", StringComparison.Ordinal) && line.IndexOf(':') is int colon and > 0)
                            return line[(colon + 1)..].Trim();
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            return Environment.GetEnvironmentVariable("PROCESSOR_IDENTIFIER")
                ?? System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString();
        }
    }

    /// <summary>The x86 instruction sets the runtime reports that the kernels can use (AVX2, FMA, AVX-512F/BW, AVX-VNNI),
    /// or the architecture's name elsewhere.</summary>
    public static IReadOnlyList<string> InstructionSets
    {
        get
        {
            var sets = new List<string>();
            if (Avx2.IsSupported) sets.Add("AVX2");
            if (Fma.IsSupported) sets.Add("FMA");
            if (Avx512F.IsSupported) sets.Add("AVX-512F");
            if (Avx512BW.IsSupported) sets.Add("AVX-512BW");
            if (AvxVnni.IsSupported) sets.Add("AVX-VNNI");
            if (sets.Count == 0) sets.Add(Vector128.IsHardwareAccelerated ? "Vector128" : "scalar");
            return sets;
        }
    }

    /// <summary>The widest vector width the kernels take at <paramref name="level"/> and the int8 kernel
    /// ("AvxVnni" = VPDPBUSD, "Avx512BW" or "Avx2" = VPMADDUBSW + VPMADDWD, "Scalar" = widening to fp32 instead).</summary>
    public static string KernelsAt(SimdLevel level) => $"Vector{(int)level}, int8 {Int8Gemm.Isa(level)}";
}
