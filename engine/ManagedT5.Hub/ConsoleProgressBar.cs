// A one-line download progress bar for terminals; silent when stderr is redirected (logs and CI stay clean).
using System.Globalization;

namespace ManagedT5.Hub;

/// <summary>
/// Draws one updating line per file (<c>\r</c>-rewritten) on standard error:
/// <c>model.safetensors [#####-----] 45% 12.3/27.0 MB 5.1 MB/s ETA 0:03</c>. When stderr is redirected it writes nothing.
/// Thread-safe.
/// </summary>
public sealed class ConsoleProgressBar : IProgress<DownloadProgress>
{
    private readonly TextWriter _writer;
    private readonly bool _interactive;
    private readonly Func<int> _width;
    private readonly Lock _lock = new();
    private string? _file;
    private int _lastLength;
    private long _lastDrawTicks;

    /// <summary>Draws on <see cref="Console.Error"/> when it is a terminal (<see cref="Console.IsErrorRedirected"/> false).</summary>
    public ConsoleProgressBar() : this(Console.Error, !Console.IsErrorRedirected) { }

    /// <summary>Draws on <paramref name="writer"/>; nothing is written unless <paramref name="interactive"/>.</summary>
    public ConsoleProgressBar(TextWriter writer, bool interactive, int width = 0)
    {
        ArgumentNullException.ThrowIfNull(writer);
        _writer = writer;
        _interactive = interactive;
        _width = width > 0 ? () => width : ConsoleWidth;
    }

    /// <inheritdoc />
    public void Report(DownloadProgress value)
    {
        if (!_interactive) return;
        lock (_lock)
        {
            long now = Environment.TickCount64;
            bool newFile = _file != value.FileName;
            if (!newFile && !value.IsComplete && now - _lastDrawTicks < 100) return;   // at most ~10 redraws a second
            if (newFile && _file != null && _lastLength > 0) _writer.WriteLine();       // the previous file's line stays
            _file = value.FileName;
            _lastDrawTicks = now;
            string line = Format(value, _width() - 1);
            _writer.Write('\r' + line.PadRight(_lastLength));
            _lastLength = line.Length;
            if (value.IsComplete)
            {
                _writer.WriteLine();
                _file = null;
                _lastLength = 0;
            }
            _writer.Flush();
        }
    }

    /// <summary>The line for one report, at most <paramref name="width"/> characters.</summary>
    internal static string Format(DownloadProgress p, int width)
    {
        width = Math.Max(width, 20);
        string sizes = p.TotalBytes is long total ? $"{Bytes(p.BytesReceived)}/{Bytes(total)}" : Bytes(p.BytesReceived);
        string speed = p.BytesPerSecond > 0 ? $" {Bytes((long)p.BytesPerSecond)}/s" : "";
        string eta = p.IsComplete ? " done" : p.Eta is TimeSpan t ? " ETA " + Duration(t) : "";
        string percent = p.Fraction is double f ? $" {f * 100,3:0}%" : "";
        string tail = $"{percent} {sizes}{speed}{eta}";

        string name = p.FileName;
        int barWidth = p.Fraction is null ? 0 : Math.Clamp(width - name.Length - tail.Length - 3, 0, 30);
        if (barWidth < 10) barWidth = 0;
        string bar = "";
        if (barWidth > 0)
        {
            int filled = (int)Math.Round(p.Fraction!.Value * barWidth);
            bar = " [" + new string('#', filled) + new string('-', barWidth - filled) + "]";
        }
        int room = width - bar.Length - tail.Length;
        if (name.Length > room) name = room > 3 ? "..." + name[^(room - 3)..] : "";
        string line = name + bar + tail;
        return line.Length > width ? line[..width] : line;
    }

    private static string Bytes(long n) => n switch
    {
        >= 1L << 30 => (n / (double)(1L << 30)).ToString("0.0", CultureInfo.InvariantCulture) + " GB",
        >= 1L << 20 => (n / (double)(1L << 20)).ToString("0.0", CultureInfo.InvariantCulture) + " MB",
        >= 1L << 10 => (n / (double)(1L << 10)).ToString("0.0", CultureInfo.InvariantCulture) + " kB",
        _ => n.ToString(CultureInfo.InvariantCulture) + " B",
    };

    private static string Duration(TimeSpan t) => t.TotalHours >= 1
        ? $"{(int)t.TotalHours}:{t.Minutes:00}:{t.Seconds:00}"
        : $"{t.Minutes}:{t.Seconds:00}";

    private static int ConsoleWidth()
    {
        try { return Console.WindowWidth > 0 ? Console.WindowWidth : 80; }
        catch (IOException) { return 80; }
        catch (PlatformNotSupportedException) { return 80; }
    }
}
