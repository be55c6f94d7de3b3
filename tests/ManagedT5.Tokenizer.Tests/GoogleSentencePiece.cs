// GoogleSentencePiece: runs Google's sentencepiece through python3 (Debian's python3-sentencepiece) in one
// subprocess, and a [SentencePieceFact] that skips, with the reason, where python or the module is missing.

using System.Diagnostics;
using System.Text.Json;

namespace ManagedT5.Tokenizer.Tests;

/// <summary>What sentencepiece gave for one text: ids, pieces and UTF-8 byte offsets into the text.</summary>
public sealed record SentencePieceEncoding(int[] Ids, string[] Pieces, int[] Begin, int[] End);

internal static class GoogleSentencePiece
{
    private static readonly Lazy<(string? Python, string Reason)> s_python = new(FindPython);

    /// <summary>A python3 that can import sentencepiece, or null.</summary>
    public static string? Python => s_python.Value.Python;

    /// <summary>Why there is none, for the skip message.</summary>
    public static string MissingReason => s_python.Value.Reason;

    // Debian's module lives in /usr/lib/python3/dist-packages, which a pyenv python3 on PATH does not see.
    private static (string?, string) FindPython()
    {
        foreach (string candidate in new[] { "/usr/bin/python3", "python3" })
        {
            try
            {
                var (code, _, _) = Run(candidate, ["-c", "import sentencepiece"], TimeSpan.FromSeconds(30));
                if (code == 0) return (candidate, "");
            }
            catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
            {
                // not installed; try the next one
            }
        }
        return (null, "python3 with the sentencepiece module is not available (apt-get install -y python3-sentencepiece)");
    }

    /// <summary>Encodes <paramref name="texts"/> and decodes <paramref name="idLists"/> with sentencepiece.</summary>
    public static (List<SentencePieceEncoding> Encoded, List<string> Decoded, string Version) Run(
        string modelPath, IReadOnlyList<string> texts, IReadOnlyList<int[]> idLists)
    {
        string python = Python ?? throw new InvalidOperationException(MissingReason);
        string dir = Path.Combine(Path.GetTempPath(), "managedt5-spm-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string input = Path.Combine(dir, "in.json"), output = Path.Combine(dir, "out.json");
            File.WriteAllBytes(input, JsonSerializer.SerializeToUtf8Bytes(new { texts, decode = idLists }));
            string script = Path.Combine(AppContext.BaseDirectory, "sentencepiece_reference.py");
            var (code, stdout, stderr) = Run(python, [script, modelPath, input, output], TimeSpan.FromMinutes(5));
            if (code != 0) throw new InvalidOperationException($"sentencepiece_reference.py failed ({code}): {stderr}{stdout}");

            using var doc = JsonDocument.Parse(File.ReadAllBytes(output));
            var encoded = doc.RootElement.GetProperty("encoded").EnumerateArray().Select(e => new SentencePieceEncoding(
                Ints(e.GetProperty("ids")), e.GetProperty("pieces").EnumerateArray().Select(p => p.GetString()!).ToArray(),
                Ints(e.GetProperty("begin")), Ints(e.GetProperty("end")))).ToList();
            var decoded = doc.RootElement.GetProperty("decoded").EnumerateArray().Select(e => e.GetString()!).ToList();
            return (encoded, decoded, doc.RootElement.GetProperty("version").GetString()!);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();

    private static (int Code, string Stdout, string Stderr) Run(string file, string[] args, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in args) info.ArgumentList.Add(arg);
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {file}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} did not finish within {timeout}");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}

/// <summary>A [Fact] that is skipped, saying why, when python3 with sentencepiece is not installed.</summary>
public sealed class SentencePieceFactAttribute : FactAttribute
{
    public SentencePieceFactAttribute()
    {
        if (GoogleSentencePiece.Python is null) Skip = GoogleSentencePiece.MissingReason;
    }
}
