// A safetensors file, memory-mapped and validated before any tensor data is touched.
// Layout: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}}, then data.
using Microsoft.Win32.SafeHandles;
using System.IO.MemoryMappedFiles;
using System.Text.Json;
using ManagedT5.IO;
using ManagedT5.Kernels;

namespace ManagedT5.Loading;

/// <summary>One tensor's entry in a safetensors header.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Shape, outermost first.</param>
/// <param name="Begin">Start offset within the data section.</param>
/// <param name="End">End offset (exclusive) within the data section.</param>
public sealed record SafeTensorInfo(string Name, DType DType, int[] Shape, long Begin, long End)
{
    /// <summary>Number of elements.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, d) => a * d);
}

/// <summary>
/// A read-only, memory-mapped safetensors file. The header is parsed and fully checked when the file is opened:
/// header length within the file, known dtypes, unique names, offsets inside the data section, in order and
/// non-overlapping, byte length = product(shape) x dtype size. Any violation is a <see cref="ModelLoadException"/>
/// naming the file and tensor. Tensor views stay valid until the file is disposed.
/// </summary>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    /// <summary>Largest header we accept (the format's own reference implementation caps it at 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _base;
    private readonly long _dataStart;
    private readonly Dictionary<string, SafeTensorInfo> _tensors;
    private readonly SafeFileHandle _file;  // the one open handle: mapped, and read by ReadTensor

    /// <summary>Full path of the file.</summary>
    public string Path { get; }
    /// <summary>The header's __metadata__ entries (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>Every tensor, in header order.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    private SafeTensorsFile(string path, SafeFileHandle file, MemoryMappedFile map, MemoryMappedViewAccessor view,
        byte* basePointer, long dataStart, List<SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _file = file;
        _map = map;
        _view = view;
        _base = basePointer;
        _dataStart = dataStart;
        Tensors = tensors;
        _tensors = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        Metadata = metadata;
    }

    /// <summary>
    /// Opens, maps and validates <paramref name="path"/>. Links are followed (an HF cache snapshot's files link into
    /// blobs/); the file behind them must be a regular, non-empty file (not a FIFO, a device or a folder). The file is
    /// opened once: its length is the open handle's, the map is made from that handle, and
    /// <see cref="ReadTensor"/> reads through it.
    /// </summary>
    public static SafeTensorsFile Open(string path)
    {
        path = System.IO.Path.GetFullPath(path);
        if (InputFile.Problem(path, long.MaxValue) is string problem) throw new ModelLoadException(problem, path);

        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelLoadException($"Cannot open '{path}': {e.Message}", path, e);
        }

        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        byte* p = null;
        try
        {
            long fileLength = RandomAccess.GetLength(handle); // the file's, not a link's: HF cache snapshots are links
            if (fileLength < 8)
                throw Bad(path, $"the file is {fileLength} bytes, shorter than the 8-byte header length; it is truncated or not a safetensors file");
            try
            {
                map = MemoryMappedFile.CreateFromFile(handle, null, fileLength, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
                view = map.CreateViewAccessor(0, fileLength, MemoryMappedFileAccess.Read);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
            {
                throw new ModelLoadException($"Cannot map '{path}': {e.Message}", path, e);
            }
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            p += view.PointerOffset;
            var (tensors, metadata, dataStart) = ParseHeader(path, p, fileLength);
            return new SafeTensorsFile(path, handle, map, view, p, dataStart, tensors, metadata);
        }
        catch
        {
            if (p != null) view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            map?.Dispose();
            handle.Dispose();
            throw;
        }
    }

    private static (List<SafeTensorInfo>, Dictionary<string, string>, long) ParseHeader(string path, byte* p, long fileLength)
    {
        ulong headerLength = *(ulong*)p; // little-endian on every platform .NET memory-maps here
        if (!BitConverter.IsLittleEndian) headerLength = System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(headerLength);
        if (headerLength == 0 || headerLength > (ulong)(fileLength - 8))
            throw Bad(path, $"the header length {headerLength} does not fit in the file ({fileLength} bytes); the file is truncated or not a safetensors file");
        if (headerLength > MaxHeaderBytes)
            throw Bad(path, $"the header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");

        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;
        var headerBytes = new ReadOnlySpan<byte>(p + 8, (int)headerLength);

        if (!System.Text.Unicode.Utf8.IsValid(headerBytes))
            throw Bad(path, "the header is not valid UTF-8; the file is corrupt or not a safetensors file");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(headerBytes.ToArray(), new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw Bad(path, $"the header is not valid JSON ({e.Message})", e);
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw Bad(path, "the header is not a JSON object");

            var tensors = new List<SafeTensorInfo>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (JsonProperty entry in document.RootElement.EnumerateObject())
            {
                string name = NameOf(path, entry, $"entry {seen.Count + 1} of the header");
                if (!seen.Add(name))
                    throw Bad(path, $"tensor {Quote(name)} appears twice in the header");
                if (name == "__metadata__")
                {
                    if (entry.Value.ValueKind != JsonValueKind.Object)
                        throw Bad(path, "__metadata__ is not an object of strings");
                    foreach (JsonProperty m in entry.Value.EnumerateObject())
                    {
                        string key = NameOf(path, m, $"__metadata__ entry {metadata.Count + 1}");
                        if (m.Value.ValueKind != JsonValueKind.String)
                            throw Bad(path, $"__metadata__ entry {Quote(key)} is not a string");
                        metadata[key] = StringOf(path, m.Value, $"__metadata__ entry {Quote(key)}");
                    }
                    continue;
                }
                tensors.Add(ParseEntry(path, name, entry.Value, dataLength));
            }

            // Offsets must be in order and must not overlap.
            var byOffset = tensors.OrderBy(t => t.Begin).ThenBy(t => t.End).ToList();
            for (int i = 1; i < byOffset.Count; i++)
                if (byOffset[i].Begin < byOffset[i - 1].End)
                    throw Bad(path, $"tensor {Quote(byOffset[i].Name)} (bytes {byOffset[i].Begin}..{byOffset[i].End}) overlaps {Quote(byOffset[i - 1].Name)} (bytes {byOffset[i - 1].Begin}..{byOffset[i - 1].End})");
            return (tensors, metadata, dataStart);
        }
    }

    private static SafeTensorInfo ParseEntry(string path, string name, JsonElement e, long dataLength)
    {
        if (e.ValueKind != JsonValueKind.Object)
            throw Bad(path, "entry is not an object", tensor: name);

        if (!e.TryGetProperty("dtype", out JsonElement dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw Bad(path, "missing or non-string 'dtype'", tensor: name);
        string dtypeText = StringOf(path, dtypeElement, $"tensor {Quote(name)}'s dtype");
        if (!DTypes.TryParse(dtypeText, out DType dtype))
            throw Bad(path, $"unsupported dtype {Quote(dtypeText)} (readable: F32, F16, BF16, I8, U8, I64); convert the checkpoint to F32, F16 or BF16", tensor: name);

        if (!e.TryGetProperty("shape", out JsonElement shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw Bad(path, "missing or non-array 'shape'", tensor: name);
        var shape = new int[shapeElement.GetArrayLength()];
        if (shape.Length > 8) throw Bad(path, $"shape has {shape.Length} dimensions (at most 8 supported)", tensor: name);
        long elements = 1;
        int k = 0;
        foreach (JsonElement d in shapeElement.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out int dim) || dim < 0)
                throw Bad(path, $"shape dimension {k} is not a non-negative 32-bit integer", tensor: name);
            shape[k++] = dim;
            try { elements = checked(elements * dim); }
            catch (OverflowException) { throw Bad(path, "the product of the shape overflows", tensor: name); }
        }

        if (!e.TryGetProperty("data_offsets", out JsonElement offsets) || offsets.ValueKind != JsonValueKind.Array
            || offsets.GetArrayLength() != 2)
            throw Bad(path, "missing 'data_offsets' [begin, end]", tensor: name);
        if (offsets[0].ValueKind != JsonValueKind.Number || offsets[1].ValueKind != JsonValueKind.Number
            || !offsets[0].TryGetInt64(out long begin) || !offsets[1].TryGetInt64(out long end))
            throw Bad(path, "data_offsets are not integers", tensor: name);
        if (begin < 0 || end < begin || end > dataLength)
            throw Bad(path, $"data_offsets [{begin}, {end}] are outside the data section of {dataLength} bytes; the file is truncated or corrupt", tensor: name);

        long expected;
        try { expected = checked(elements * dtype.SizeOf()); }
        catch (OverflowException) { throw Bad(path, "the byte size of the shape overflows", tensor: name); }
        if (end - begin != expected)
            throw Bad(path, $"holds {end - begin} bytes but shape [{string.Join(", ", shape)}] of {dtype} needs {expected}", tensor: name);

        return new SafeTensorInfo(name, dtype, shape, begin, end);
    }

    /// <summary>True when the file holds <paramref name="name"/>.</summary>
    public bool Contains(string name) => _tensors.ContainsKey(name);

    /// <summary>The entry for <paramref name="name"/>, or null.</summary>
    public SafeTensorInfo? Find(string name) => _tensors.GetValueOrDefault(name);

    /// <summary>A view of tensor <paramref name="name"/>'s data (valid until this file is disposed).</summary>
    public HostTensor GetTensor(string name)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        if (!_tensors.TryGetValue(name, out SafeTensorInfo? info))
            throw new ModelLoadException($"Tensor '{name}' is not in '{Path}'.", Path);
        return new HostTensor(name, info.DType, info.Shape, (nint)(_base + _dataStart + info.Begin));
    }

    /// <summary>
    /// Tensor <paramref name="name"/>'s bytes copied into <paramref name="destination"/> (at least
    /// <paramref name="capacity"/> bytes) by a file read rather than through the map, and a view of that copy. For
    /// tensors a backend converts or uploads: the map's pages are then never touched, so they do not stay in this
    /// process's resident set beside the converted weights (they stay in the page cache, which the OS can reclaim).
    /// </summary>
    internal HostTensor ReadTensor(string name, byte* destination, long capacity)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        if (!_tensors.TryGetValue(name, out SafeTensorInfo? info))
            throw new ModelLoadException($"Tensor '{name}' is not in '{Path}'.", Path);
        long length = info.End - info.Begin;
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, length);
        try
        {
            for (long done = 0; done < length;)
            {
                int chunk = (int)Math.Min(length - done, 1 << 30);
                int read = RandomAccess.Read(_file, new Span<byte>(destination + done, chunk), _dataStart + info.Begin + done);
                if (read <= 0) throw Bad(Path, $"the file ended after {done} of the tensor's {length} bytes (was it truncated while open?)", tensor: name);
                done += read;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelLoadException($"Cannot read tensor '{name}' from '{Path}': {e.Message}", Path, e);
        }
        return new HostTensor(name, info.DType, info.Shape, (nint)destination);
    }

    private static ModelLoadException Bad(string path, string what, Exception? inner = null, string? tensor = null) =>
        new(tensor is null
                ? $"Invalid safetensors file '{path}': {what}."
                : $"Invalid safetensors file '{path}', tensor {Quote(tensor)}: {what}.", path, inner);

    /// <summary>A name from a header for a message: <c>'name'</c> when it is printable ASCII, else JSON-escaped
    /// (<c>"w\u001b[2J"</c>), so a name never sends control characters to a terminal.</summary>
    internal static string Quote(string name) =>
        name.AsSpan().ContainsAnyExceptInRange(' ', '~') || name.Contains('\'') ? InputFile.Escaped(name) : $"'{name}'";

    // System.Text.Json reads a lone surrogate escape (\ud800) without complaint but cannot make a string of it
    // (InvalidOperationException): a file holding one is corrupt, said once, naming where.
    private static string NameOf(string path, JsonProperty property, string where)
    {
        try { return property.Name; }
        catch (InvalidOperationException e) { throw Bad(path, $"{where} has a name that is not valid Unicode (a lone surrogate escape such as \\ud800); the file is corrupt", e); }
    }

    private static string StringOf(string path, JsonElement element, string where)
    {
        try { return element.GetString()!; }
        catch (InvalidOperationException e) { throw Bad(path, $"{where} is not valid Unicode (a lone surrogate escape such as \\ud800); the file is corrupt", e); }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_base == null) return;
        _base = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
        _file.Dispose();
    }
}
