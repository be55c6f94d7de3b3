// The safetensors reader: valid files, every kind of malformed header, and a bounded mutation fuzz that must only
// ever produce ModelLoadException (never a crash, an AccessViolation or another exception type).
using System.Buffers.Binary;
using System.Text;
using ManagedT5.Kernels;
using ManagedT5.Loading;

namespace ManagedT5.Tests;

public sealed class SafeTensorsTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mt5-st-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(byte[] bytes, string name = "m.safetensors")
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static byte[] Build(string header, int dataBytes)
    {
        byte[] h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)h.Length);
        h.CopyTo(bytes, 8);
        return bytes;
    }

    [Fact]
    public void ReadsTensorsOfEveryDType()
    {
        string header = """{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]},"c":{"dtype":"F16","shape":[1],"data_offsets":[20,22]},"d":{"dtype":"I64","shape":[1],"data_offsets":[22,30]},"e":{"dtype":"I8","shape":[2],"data_offsets":[30,32]},"f":{"dtype":"U8","shape":[0],"data_offsets":[32,32]}}""";
        byte[] bytes = Build(header, 32);
        int data = bytes.Length - 32;
        for (int i = 0; i < 4; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(data + 4 * i), i + 0.5f);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(data + 16), DTypes.SingleToBFloat16(1.5f));
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(data + 18), DTypes.SingleToBFloat16(-2f));
        BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(data + 20), (Half)0.25f);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(data + 22), 32099);
        bytes[data + 30] = unchecked((byte)-3);
        bytes[data + 31] = 7;

        using var file = SafeTensorsFile.Open(Write(bytes));
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal([0.5f, 1.5f, 2.5f, 3.5f], file.GetTensor("a").ToSingleArray());
        Assert.Equal([1.5f, -2f], file.GetTensor("b").ToSingleArray());
        Assert.Equal([0.25f], file.GetTensor("c").ToSingleArray());
        Assert.Equal([32099L], file.GetTensor("d").ToInt64Array());
        Assert.Equal([-3f, 7f], file.GetTensor("e").ToSingleArray());
        Assert.Empty(file.GetTensor("f").ToSingleArray());
    }

    /// <summary>A tensor read from the file (what the loader does for tensors it converts, so the map's pages stay out
    /// of the resident set) holds the same bytes as the mapped view; too small a buffer is refused.</summary>
    [Fact]
    public unsafe void ReadTensorCopiesTheSameBytesAsTheMap()
    {
        using var file = SafeTensorsFile.Open(Path.Combine(Fixtures.Model("tiny-flan-t5"), "model.safetensors"));
        long largest = file.Tensors.Max(t => t.End - t.Begin);
        byte[] buffer = new byte[largest + 8];
        fixed (byte* p = buffer)
        {
            foreach (SafeTensorInfo info in file.Tensors)
            {
                HostTensor mapped = file.GetTensor(info.Name), read = file.ReadTensor(info.Name, p + 8, largest);
                Assert.Equal((nint)(p + 8), read.Data);
                Assert.Equal(mapped.DType, read.DType);
                Assert.Equal(mapped.Shape, read.Shape);
                Assert.True(mapped.Bytes.SequenceEqual(read.Bytes), info.Name);
            }
        }
        SafeTensorInfo first = file.Tensors.First(t => t.End > t.Begin);
        Assert.Throws<ArgumentOutOfRangeException>(() => { fixed (byte* p = buffer) file.ReadTensor(first.Name, p, first.End - first.Begin - 1); });
        Assert.Throws<ModelLoadException>(() => { fixed (byte* p = buffer) file.ReadTensor("nope", p, largest); });
    }

    /// <summary>An HF cache snapshot's file is a relative link into blobs/ (snapshots/{commit}/model.safetensors ->
    /// ../../blobs/{sha256}), whose own length is a few bytes: the file opens with its target's length and holds the
    /// target's tensors.</summary>
    [HostileFiles.FactNeeding(HostileFiles.Need.Symlinks)]
    public void OpensThroughARelativeSymbolicLink()
    {
        string real = Path.Combine(Fixtures.Model("tiny-flan-t5"), "model.safetensors");
        File.Copy(real, Path.Combine(Directory.CreateDirectory(Path.Combine(_dir, "blobs")).FullName, "0123abcd"));
        string link = Path.Combine(Directory.CreateDirectory(Path.Combine(_dir, "snapshots", "c0ffee")).FullName, "model.safetensors");
        File.CreateSymbolicLink(link, Path.Combine("..", "..", "blobs", "0123abcd"));

        using var viaLink = SafeTensorsFile.Open(link);
        using var direct = SafeTensorsFile.Open(real);
        Assert.Equal(link, viaLink.Path);
        Assert.Equal(direct.Tensors.Select(t => (t.Name, t.DType, t.Begin, t.End)), viaLink.Tensors.Select(t => (t.Name, t.DType, t.Begin, t.End)));
        foreach (SafeTensorInfo t in direct.Tensors)
            Assert.True(direct.GetTensor(t.Name).Bytes.SequenceEqual(viaLink.GetTensor(t.Name).Bytes), t.Name);
    }

    public static IEnumerable<object[]> BadFiles()
    {
        static object[] Case(string why, byte[] bytes, string mustMention) => [why, bytes, mustMention];
        const string ok = """{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""";
        yield return Case("empty file", [], "truncated");
        yield return Case("4 bytes", [1, 2, 3, 4], "truncated");
        byte[] huge = Build(ok, 8); BinaryPrimitives.WriteUInt64LittleEndian(huge, ulong.MaxValue);
        yield return Case("header length past the end", huge, "does not fit");
        byte[] zero = Build(ok, 8); BinaryPrimitives.WriteUInt64LittleEndian(zero, 0);
        yield return Case("zero header length", zero, "header length");
        yield return Case("not JSON", Build("{not json", 8), "not valid JSON");
        yield return Case("JSON array", Build("[1,2]", 8), "not a JSON object");
        yield return Case("unknown dtype", Build("""{"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}""", 8), "'w'");
        yield return Case("missing dtype", Build("""{"w":{"shape":[2],"data_offsets":[0,8]}}""", 8), "dtype");
        yield return Case("negative dim", Build("""{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}""", 8), "shape");
        yield return Case("huge dims overflow", Build("""{"w":{"dtype":"F32","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,8]}}""", 8), "overflow");
        yield return Case("size mismatch", Build("""{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8), "needs 12");
        yield return Case("offsets past data", Build("""{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8), "outside the data section");
        yield return Case("end before begin", Build("""{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}""", 8), "outside");
        yield return Case("overlap", Build("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8), "overlaps");
        yield return Case("duplicate name", Build("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8), "twice");
        yield return Case("offsets not ints", Build("""{"w":{"dtype":"F32","shape":[2],"data_offsets":["0","8"]}}""", 8), "data_offsets");
        yield return Case("metadata not strings", Build("""{"__metadata__":{"a":1}}""", 0), "__metadata__");
        yield return Case("lone surrogate in a tensor name", Build("""{"w\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8), "surrogate");
        yield return Case("lone surrogate in a dtype", Build("""{"w":{"dtype":"F3\udfff","shape":[2],"data_offsets":[0,8]}}""", 8), "surrogate");
        yield return Case("lone surrogate in a metadata key", Build("""{"__metadata__":{"\ud800":"pt"}}""", 0), "surrogate");
        yield return Case("lone surrogate in a metadata value", Build("""{"__metadata__":{"format":"p\udc00t"}}""", 0), "surrogate");
        yield return Case("deep nesting", Build(new string('[', 100) + new string(']', 100), 0), "JSON");
    }

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void MalformedFileGivesModelLoadExceptionNamingFile(string why, byte[] bytes, string mustMention)
    {
        string path = Write(bytes, why.Replace(' ', '_') + ".safetensors");
        var e = Assert.Throws<ModelLoadException>(() => SafeTensorsFile.Open(path).Dispose());
        output.WriteLine($"{why}: {e.Message}");
        Assert.Contains(path, e.Message);
        Assert.Contains(mustMention, e.Message, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>A tensor name carrying terminal escapes (a downloaded header can hold anything) is shown escaped in the
    /// error, never raw.</summary>
    [Fact]
    public void TensorNameWithTerminalEscapesIsShownEscaped()
    {
        string path = Write(Build("""{"w\u001b[2J\u001b]0;x\u0007":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8));
        var e = Assert.Throws<ModelLoadException>(() => SafeTensorsFile.Open(path).Dispose());
        output.WriteLine(e.Message);
        Assert.Contains(@"\u001b[2J\u001b]0;x\u0007", e.Message);
        Assert.DoesNotContain(e.Message, char.IsControl);
    }

    [Fact]
    public void MissingFileIsModelLoadException()
    {
        var e = Assert.Throws<ModelLoadException>(() => SafeTensorsFile.Open(Path.Combine(_dir, "nope.safetensors")));
        Assert.Contains("nope.safetensors", e.Message);
    }

    /// <summary>Thousands of random byte flips, truncations and header edits of a real fixture file: every outcome is
    /// a successful open (the edit only touched tensor data) or a ModelLoadException.</summary>
    [Fact]
    public void MutationFuzzOnlyEverGivesModelLoadException()
    {
        // A small real file: every tensor of the fixture model under 1 KB, in all three float dtypes.
        var writer = new SafeTensorsWriter();
        using (var model = SafeTensorsFile.Open(Path.Combine(Fixtures.Model("tiny-flan-t5"), "model.safetensors")))
            foreach (SafeTensorInfo t in model.Tensors.Where(t => t.End - t.Begin <= 1024))
            {
                float[] v = model.GetTensor(t.Name).ToSingleArray();
                writer.Add(t.Name, v, t.Shape);
                writer.Add(t.Name + ".bf16", DType.BF16, v.SelectMany(x => BitConverter.GetBytes(DTypes.SingleToBFloat16(x))).ToArray(), t.Shape);
                writer.Add(t.Name + ".f16", DType.F16, v.SelectMany(x => BitConverter.GetBytes((Half)x)).ToArray(), t.Shape);
            }
        string source = Path.Combine(_dir, "source.safetensors");
        writer.Save(source, new Dictionary<string, string> { ["format"] = "pt" });
        byte[] original = File.ReadAllBytes(source);
        int headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(original);
        string header = Encoding.UTF8.GetString(original, 8, headerLength);
        var random = new Random(20261126);
        int opened = 0, rejected = 0;
        const int iterations = 5000;
        string path = Path.Combine(_dir, "fuzz.safetensors");
        for (int i = 0; i < iterations; i++)
        {
            byte[] bytes;
            switch (i % 5)
            {
                case 0: // flip bytes in the length prefix and header
                    bytes = (byte[])original.Clone();
                    for (int k = random.Next(1, 4); k > 0; k--) bytes[random.Next(0, 8 + headerLength)] ^= (byte)random.Next(1, 256);
                    break;
                case 1: // truncate anywhere
                    bytes = original.AsSpan(0, random.Next(0, original.Length)).ToArray();
                    break;
                case 2: // edit a digit in the header text (shapes, offsets)
                {
                    char[] chars = header.ToCharArray();
                    int[] digits = Enumerable.Range(0, chars.Length).Where(j => char.IsDigit(chars[j])).ToArray();
                    for (int k = random.Next(1, 3); k > 0; k--) chars[digits[random.Next(digits.Length)]] = (char)('0' + random.Next(10));
                    bytes = Build(new string(chars), original.Length - 8 - headerLength);
                    original.AsSpan(8 + headerLength).CopyTo(bytes.AsSpan(bytes.Length - (original.Length - 8 - headerLength)));
                    break;
                }
                case 3: // cut the header text short or splice junk into it
                {
                    int at = random.Next(0, header.Length);
                    string edited = random.Next(2) == 0 ? header[..at] : header[..at] + "\",{[]}:"[random.Next(7)] + header[at..];
                    bytes = Build(edited, original.Length - 8 - headerLength);
                    break;
                }
                default: // random length prefix
                    bytes = (byte[])original.Clone();
                    BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)random.NextInt64(0, long.MaxValue) >> random.Next(0, 63));
                    break;
            }
            File.WriteAllBytes(path, bytes);
            try
            {
                using var file = SafeTensorsFile.Open(path);
                foreach (SafeTensorInfo t in file.Tensors) _ = file.GetTensor(t.Name).ToSingleArray().Length; // touch every byte
                opened++;
            }
            catch (ModelLoadException)
            {
                rejected++;
            }
        }
        output.WriteLine($"{iterations} mutations: {opened} still valid, {rejected} rejected with ModelLoadException");
        Assert.Equal(iterations, opened + rejected);
        Assert.True(rejected > iterations / 2, "most mutations must be caught");
    }
}
