// Writes safetensors files (used by `managedt5 trace` and by tests that build small checkpoints).
using System.Buffers.Binary;
using System.Text.Json;
using ManagedT5.Kernels;

namespace ManagedT5.Loading;

/// <summary>Collects tensors and writes them as one safetensors file (header padded to 8 bytes, data in order).</summary>
public sealed class SafeTensorsWriter
{
    private readonly List<(string Name, DType DType, int[] Shape, byte[] Data)> _tensors = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    /// <summary>Adds a float32 tensor.</summary>
    public void Add(string name, ReadOnlySpan<float> values, params int[] shape) =>
        Add(name, DType.F32, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values).ToArray(), shape);

    /// <summary>Adds a tensor of raw little-endian bytes.</summary>
    public void Add(string name, DType dtype, byte[] data, params int[] shape)
    {
        long count = shape.Aggregate(1L, (a, d) => a * d);
        if (count * dtype.SizeOf() != data.Length)
            throw new ArgumentException($"Tensor '{name}': {data.Length} bytes do not match shape [{string.Join(", ", shape)}] of {dtype}.", nameof(data));
        if (!_names.Add(name)) throw new ArgumentException($"Tensor '{name}' was added twice.", nameof(name));
        _tensors.Add((name, dtype, shape, data));
    }

    /// <summary>Writes the file (to a temporary name first, then renamed, so no half-written file is left).</summary>
    public void Save(string path, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var header = new MemoryStream();
        using (var json = new Utf8JsonWriter(header))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) json.WriteString(k, v);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in _tensors)
            {
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", t.DType.ToSafetensorsString());
                json.WriteStartArray("shape");
                foreach (int d in t.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + t.Data.Length);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += t.Data.Length;
            }
            json.WriteEndObject();
        }
        while (header.Length % 8 != 0) header.WriteByte((byte)' ');

        string temp = path + ".tmp";
        using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write))
        {
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            file.Write(prefix);
            header.Position = 0;
            header.CopyTo(file);
            foreach (var t in _tensors) file.Write(t.Data);
        }
        File.Move(temp, path, overwrite: true);
    }
}
