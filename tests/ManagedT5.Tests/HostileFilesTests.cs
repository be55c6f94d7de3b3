// Weights and indexes that are not what they claim: FIFOs and devices behind links, folders, link loops, indexes that
// are not objects or hold lone surrogates, shard names that leave the folder or carry terminal escapes. Each must end
// within seconds in one ModelLoadException naming the file; none may hang, crash or echo control characters.
using System.ComponentModel;
using System.Diagnostics;
using ManagedT5.Kernels.Cpu;
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Tests;

/// <summary>What the hostile-file tests need from the machine (symbolic links, <c>mkfifo</c>, <c>/dev/zero</c>), the
/// attributes that skip a test with the reason where it is missing, and the helpers that make such files.</summary>
public static class HostileFiles
{
    /// <summary>Machine features a test needs.</summary>
    [Flags]
    public enum Need { Symlinks = 1, Fifos = 2, DevZero = 4 }

    private static readonly Lazy<string?> NoSymlinks = new(() =>
    {
        string dir = Directory.CreateTempSubdirectory("mt5-probe-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "target"), "x");
            File.CreateSymbolicLink(Path.Combine(dir, "link"), "target");
            return File.ReadAllText(Path.Combine(dir, "link")) == "x" ? null : "symbolic links do not resolve here";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            return $"cannot make symbolic links here ({e.Message})";
        }
        finally { Directory.Delete(dir, recursive: true); }
    });

    private static readonly Lazy<string?> NoFifos = new(() =>
    {
        string dir = Directory.CreateTempSubdirectory("mt5-probe-").FullName;
        try { MakeFifo(Path.Combine(dir, "fifo")); return null; }
        catch (Exception e) when (e is Win32Exception or InvalidOperationException) { return $"cannot make FIFOs here: {e.Message}"; }
        finally { Directory.Delete(dir, recursive: true); }
    });

    /// <summary>Null when the machine has everything in <paramref name="need"/>, else why the test is skipped.</summary>
    public static string? Missing(Need need) =>
        (need.HasFlag(Need.Symlinks) ? NoSymlinks.Value : null)
        ?? (need.HasFlag(Need.Fifos) ? NoFifos.Value : null)
        ?? (need.HasFlag(Need.DevZero) && !File.Exists("/dev/zero") ? "there is no /dev/zero here" : null);

    /// <summary>A fact skipped, with the reason, where the machine lacks what it needs.</summary>
    public sealed class FactNeedingAttribute : FactAttribute
    {
        /// <summary>Runs the fact only where everything in <paramref name="need"/> is available.</summary>
        public FactNeedingAttribute(Need need) => Skip = Missing(need);
    }

    /// <summary>A theory skipped, with the reason, where the machine lacks what it needs.</summary>
    public sealed class TheoryNeedingAttribute : TheoryAttribute
    {
        /// <summary>Runs the theory only where everything in <paramref name="need"/> is available.</summary>
        public TheoryNeedingAttribute(Need need) => Skip = Missing(need);
    }

    /// <summary>Makes a FIFO at <paramref name="path"/> by running <c>mkfifo</c> (Win32Exception where there is none).</summary>
    public static void MakeFifo(string path)
    {
        using Process mkfifo = Process.Start(new ProcessStartInfo("mkfifo", [path]) { RedirectStandardError = true })!;
        string error = mkfifo.StandardError.ReadToEnd();
        mkfifo.WaitForExit();
        if (mkfifo.ExitCode != 0) throw new InvalidOperationException($"mkfifo {path} failed: {error.Trim()}");
    }

    /// <summary>
    /// Runs <paramref name="load"/> on its own thread; it must end within 10 seconds by throwing one
    /// <see cref="ModelLoadException"/>, which is returned. A load still running then (blocked opening a FIFO) fails the
    /// test; the FIFOs in <paramref name="fifos"/> are then opened for writing, which lets the blocked open return.
    /// </summary>
    public static ModelLoadException FailsFast(Action load, params string[] fifos)
    {
        Task task = Task.Factory.StartNew(load, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        if (!((IAsyncResult)task).AsyncWaitHandle.WaitOne(TimeSpan.FromSeconds(10)))
        {
            foreach (string fifo in fifos) _ = Task.Run(() => { using var writer = new FileStream(fifo, FileMode.Open, FileAccess.Write); });
            Assert.Fail("still loading after 10 seconds (blocked on a FIFO or reading an endless file)");
        }
        Assert.True(task.IsFaulted, "the hostile file loaded without an error");
        Exception e = task.Exception!.InnerException!;
        return Assert.IsType<ModelLoadException>(e);
    }

    /// <summary>True when <paramref name="text"/> holds a control character (C0, DEL or C1) that a terminal would act on.</summary>
    public static bool HasControlCharacters(string text) => text.Any(char.IsControl);
}

public sealed class HostileFilesTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mt5-hostile-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A copy of a fixture model folder without its weights (config, generation_config, tokenizer files).</summary>
    private string ModelWithoutWeights(string fixture = "tiny-flan-t5")
    {
        string model = Directory.CreateDirectory(Path.Combine(_dir, "model")).FullName;
        foreach (string name in new[] { "config.json", "generation_config.json", "spiece.model", "tokenizer.json" })
            File.Copy(Path.Combine(Fixtures.Model(fixture), name), Path.Combine(model, name));
        return model;
    }

    /// <summary>A copy of the sharded fixture whose index is replaced by <paramref name="indexJson"/> (when given).</summary>
    private string ShardedModel(string? indexJson = null)
    {
        string model = ModelWithoutWeights("tiny-flan-t5-bf16-sharded");
        string fixture = Fixtures.Model("tiny-flan-t5-bf16-sharded");
        foreach (string name in new[] { "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", Checkpoint.IndexFileName })
            File.Copy(Path.Combine(fixture, name), Path.Combine(model, name));
        if (indexJson is not null) File.WriteAllText(Path.Combine(model, Checkpoint.IndexFileName), indexJson);
        return model;
    }

    private ModelLoadException LoadFails(string model, string mustName, params string[] fifos)
    {
        ModelLoadException e = HostileFiles.FailsFast(() => T5Model.Load(model, new CpuBackend(), ownsBackend: true).Dispose(), fifos);
        output.WriteLine(e.Message);
        Assert.Contains(mustName, e.Message);
        Assert.False(HostileFiles.HasControlCharacters(e.Message), "the message holds control characters");
        return e;
    }

    private string Fifo(string name = "fifo")
    {
        string fifo = Path.Combine(_dir, name);
        HostileFiles.MakeFifo(fifo);
        return fifo;
    }

    /// <summary>model.safetensors a link to a FIFO: opening it would wait forever for a writer.</summary>
    [HostileFiles.FactNeeding(HostileFiles.Need.Symlinks | HostileFiles.Need.Fifos)]
    public void WeightsLinkedToAFifoAreRefused()
    {
        string model = ModelWithoutWeights(), fifo = Fifo();
        File.CreateSymbolicLink(Path.Combine(model, Checkpoint.SingleFileName), fifo);
        LoadFails(model, Path.Combine(model, Checkpoint.SingleFileName), fifo);
    }

    /// <summary>model.safetensors a FIFO itself.</summary>
    [HostileFiles.FactNeeding(HostileFiles.Need.Fifos)]
    public void WeightsThatAreAFifoAreRefused()
    {
        string model = ModelWithoutWeights(), fifo = Path.Combine(model, Checkpoint.SingleFileName);
        HostileFiles.MakeFifo(fifo);
        LoadFails(model, Path.Combine(model, Checkpoint.SingleFileName), fifo);
    }

    /// <summary>model.safetensors a link to /dev/zero: a device, endless, with no length of its own.</summary>
    [HostileFiles.FactNeeding(HostileFiles.Need.Symlinks | HostileFiles.Need.DevZero)]
    public void WeightsLinkedToDevZeroAreRefused()
    {
        string model = ModelWithoutWeights();
        File.CreateSymbolicLink(Path.Combine(model, Checkpoint.SingleFileName), "/dev/zero");
        LoadFails(model, Path.Combine(model, Checkpoint.SingleFileName));
    }

    [Fact]
    public void WeightsThatAreAFolderAreRefused()
    {
        string model = ModelWithoutWeights();
        Directory.CreateDirectory(Path.Combine(model, Checkpoint.SingleFileName));
        Assert.Contains("folder", LoadFails(model, Path.Combine(model, Checkpoint.SingleFileName)).Message);
    }

    [HostileFiles.FactNeeding(HostileFiles.Need.Symlinks)]
    public void WeightsLinkedToAFolderAreRefused()
    {
        string model = ModelWithoutWeights();
        File.CreateSymbolicLink(Path.Combine(model, Checkpoint.SingleFileName), Directory.CreateDirectory(Path.Combine(_dir, "folder")).FullName);
        Assert.Contains("folder", LoadFails(model, Path.Combine(model, Checkpoint.SingleFileName)).Message);
    }

    [HostileFiles.FactNeeding(HostileFiles.Need.Symlinks)]
    public void WeightsInALinkLoopAreRefused()
    {
        string model = ModelWithoutWeights();
        File.CreateSymbolicLink(Path.Combine(model, Checkpoint.SingleFileName), "loop.safetensors");
        File.CreateSymbolicLink(Path.Combine(model, "loop.safetensors"), Checkpoint.SingleFileName);
        LoadFails(model, Path.Combine(model, Checkpoint.SingleFileName));
    }

    [HostileFiles.FactNeeding(HostileFiles.Need.Symlinks)]
    public void WeightsLinkedToNothingAreRefused()
    {
        string model = ModelWithoutWeights();
        File.CreateSymbolicLink(Path.Combine(model, Checkpoint.SingleFileName), "gone.safetensors");
        LoadFails(model, Path.Combine(model, Checkpoint.SingleFileName));
    }

    /// <summary>One shard of a sharded checkpoint a link to a FIFO.</summary>
    [HostileFiles.FactNeeding(HostileFiles.Need.Symlinks | HostileFiles.Need.Fifos)]
    public void ShardLinkedToAFifoIsRefused()
    {
        string model = ShardedModel(), fifo = Fifo(), shard = Path.Combine(model, "model-00002-of-00002.safetensors");
        File.Delete(shard);
        File.CreateSymbolicLink(shard, fifo);
        LoadFails(model, shard, fifo);
    }

    /// <summary>The index a link to a FIFO, or to /dev/zero (which File.ReadAllBytes would read until memory ran out).</summary>
    [HostileFiles.FactNeeding(HostileFiles.Need.Symlinks | HostileFiles.Need.Fifos | HostileFiles.Need.DevZero)]
    public void IndexLinkedToAFifoOrDevZeroIsRefused()
    {
        string model = ShardedModel(), fifo = Fifo(), index = Path.Combine(model, Checkpoint.IndexFileName);
        File.Delete(index);
        File.CreateSymbolicLink(index, fifo);
        LoadFails(model, index, fifo);
        File.Delete(index);
        File.CreateSymbolicLink(index, "/dev/zero");
        LoadFails(model, index);
    }

    [Fact]
    public void IndexLargerThanAnyJsonFileIsRefused()
    {
        string model = ShardedModel(), index = Path.Combine(model, Checkpoint.IndexFileName);
        using (var stream = new FileStream(index, FileMode.Create)) stream.SetLength((64L << 20) + 1); // sparse; one byte over InputFile.MaxJsonBytes (not named: the CLI compiles its own internal copy too)
        LoadFails(model, index);
    }

    public static TheoryData<string, string> BadIndexes() => new()
    {
        { "root is an array", """[{"weight_map":{}}]""" },
        { "root is a string", "\"weight_map\"" },
        { "no weight_map", """{"metadata":{}}""" },
        { "weight_map is empty", """{"weight_map":{}}""" },
        { "lone surrogate in a tensor name", """{"weight_map":{"shared.\ud800weight":"model-00001-of-00002.safetensors"}}""" },
        { "lone surrogate in a shard name", """{"weight_map":{"shared.weight":"model-\udc00.safetensors"}}""" },
        { "not JSON", "{\"weight_map\":" },
    };

    [Theory]
    [MemberData(nameof(BadIndexes))]
    public void MalformedIndexGivesOneErrorNamingIt(string why, string indexJson)
    {
        output.WriteLine(why);
        string model = ShardedModel(indexJson);
        LoadFails(model, Path.Combine(model, Checkpoint.IndexFileName));
    }

    public static TheoryData<string, string> BadShardNames() => new()
    {
        { "../model-00001-of-00002.safetensors", "\"../model-00001-of-00002.safetensors\"" },
        { "sub/model.safetensors", "\"sub/model.safetensors\"" },
        { "..", "\"..\"" },
        { "", "\"\"" },
        { "/etc/passwd", "\"/etc/passwd\"" },
        { "model\u001b[2J\u001b]0;owned\u0007.safetensors", "\"model\\u001b[2J\\u001b]0;owned\\u0007.safetensors\"" },
        { "model\u009b31m.safetensors", "\"model\\u009b31m.safetensors\"" },
        { "a\u0000b.safetensors", "\"a\\u0000b.safetensors\"" },
        { "model \u202eexe.safetensors", "\"model \\u202eexe.safetensors\"" },
    };

    /// <summary>Shard names follow the one rule for names from outside (InputFile.IsPlainFileName); the error names the
    /// index and shows the name JSON-escaped, so a name carrying terminal escapes cannot act on the terminal.</summary>
    [Theory]
    [MemberData(nameof(BadShardNames))]
    public void ShardNameThatIsNotAPlainFileNameIsRefusedAndShownEscaped(string shard, string shown)
    {
        string index = """{"weight_map":{"shared.weight":""" + System.Text.Json.JsonSerializer.Serialize(shard) + "}}";
        string model = ShardedModel(index);
        ModelLoadException e = LoadFails(model, Path.Combine(model, Checkpoint.IndexFileName));
        Assert.Contains(shown, e.Message);
    }
}
