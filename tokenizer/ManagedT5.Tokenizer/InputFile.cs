// Reading a file a user or a download handed us (config.json, spiece.model, tokenizer.json, an index, weights) safely:
// links resolved, only regular non-empty files of a bounded size, read through one handle. Compiled into the tokenizer,
// the engine and the hub client from this one source file (each throws its own exception type with the message).
namespace ManagedT5.IO;

/// <summary>Checks and bounded reads for model files. Every method names the file in what it reports.</summary>
internal static class InputFile
{
    /// <summary>Cap for JSON files (config.json, generation_config.json, an index, tokenizer_config.json).</summary>
    public const long MaxJsonBytes = 64L << 20;
    /// <summary>Cap for tokenizer files (spiece.model, tokenizer.json): real ones are 0.8-20 MB.</summary>
    public const long MaxTokenizerBytes = 256L << 20;

    /// <summary>
    /// The one rule for file names that come from outside (an index's shard names, a hub listing): a plain name of
    /// letters, digits, '.', '_' and '-', 1 to 255 characters, not "." and without "..", so it can name nothing but a
    /// file in the model's own folder and prints safely on a terminal. The hub client and the loader both use it.
    /// </summary>
    public static bool IsPlainFileName(string name)
    {
        if (name.Length is 0 or > 255 || name == "." || name.Contains("..", StringComparison.Ordinal)) return false;
        foreach (char c in name)
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-')) return false;
        return true;
    }

    /// <summary>
    /// <paramref name="text"/> as a JSON string literal in which everything but printable ASCII is escaped
    /// (<c>"model\u001b[2J.safetensors"</c>, <c>"\ud800"</c>): how a name read from a file or sent by a server is shown
    /// in a message, so that escape sequences in it never reach a terminal raw and lone surrogates still print.
    /// </summary>
    public static string Escaped(string text)
    {
        var s = new System.Text.StringBuilder(text.Length + 2).Append('"');
        foreach (char c in text)
        {
            if (c is '"' or '\\') s.Append('\\').Append(c);
            else if (c is >= ' ' and <= '~') s.Append(c);
            else s.Append("\\u").Append(((int)c).ToString("x4", System.Globalization.CultureInfo.InvariantCulture));
        }
        return s.Append('"').ToString();
    }

    /// <summary>
    /// Null when <paramref name="path"/> (after following symbolic links) is an existing regular file of 1 to
    /// <paramref name="maxBytes"/> bytes; otherwise a sentence saying what is wrong and what to do. FIFOs, devices
    /// (<c>/dev/zero</c>) and <c>/proc</c> files report a length of 0 and are refused here, before any open that could
    /// block or never end.
    /// </summary>
    public static string? Problem(string path, long maxBytes)
    {
        FileInfo info;
        try
        {
            info = new FileInfo(path);
            if (info.LinkTarget is not null)
            {
                FileSystemInfo? target = info.ResolveLinkTarget(returnFinalTarget: true);
                if (target is not null && Directory.Exists(target.FullName)) return $"'{path}' links to a folder, not a file.";
                if (target is not FileInfo { Exists: true } file)
                    return $"'{path}' is a symbolic link whose target does not exist; fetch the file again.";
                info = file;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            // A loop of links ends here too ("Too many levels of symbolic links").
            return $"'{path}' cannot be read ({e.Message.TrimEnd('.')}); check the file and where its links point.";
        }
        if (Directory.Exists(info.FullName)) return $"'{path}' is a folder, not a file.";
        if (!info.Exists) return $"'{path}' does not exist.";
        if (info.Length == 0)
            return $"'{path}' is empty (a truncated download?) or not a regular file (a FIFO, a device or a /proc file); give the real file.";
        if (info.Length > maxBytes)
            return $"'{path}' is {info.Length:N0} bytes, more than the {maxBytes:N0} bytes such a file can be; it is not the file expected.";
        return null;
    }

    /// <summary>The bytes of a file that passed <see cref="Problem"/>, read through one handle and never more than
    /// <paramref name="maxBytes"/> (a file that grows while read is cut off and reported).</summary>
    public static byte[] ReadAllBytes(string path, long maxBytes, out string? problem)
    {
        problem = Problem(path, maxBytes);
        if (problem is not null) return [];
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
        long length = stream.Length;
        if (length == 0 || length > maxBytes)
        {
            problem = Problem(path, maxBytes) ?? $"'{path}' changed while it was read; try again.";
            return [];
        }
        var bytes = new byte[length];
        stream.ReadExactly(bytes);
        return bytes;
    }

    /// <summary>
    /// <paramref name="bytes"/> as strict UTF-8 text, a leading byte-order mark removed; null, with a sentence naming the
    /// line of <paramref name="displayName"/> in <paramref name="problem"/>, when they are not valid UTF-8.
    /// </summary>
    public static string? DecodeUtf8(byte[] bytes, string displayName, out string? problem)
    {
        problem = null;
        string text;
        try
        {
            text = new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (System.Text.DecoderFallbackException e)
        {
            int line = 1 + bytes.AsSpan(0, Math.Clamp(e.Index, 0, bytes.Length)).Count((byte)'\n');
            problem = $"line {line} of {displayName} is not valid UTF-8; save the file as UTF-8.";
            return null;
        }
        return text.StartsWith('\uFEFF') ? text[1..] : text;
    }
}
