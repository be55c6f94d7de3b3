// The one error type for hub look-ups and downloads: its message names the model, the file and the URL, and says what to do.
// Text from the network (file names, reason phrases, URLs) reaches a terminal only through Printable: no escape sequences.
using System.Text;

namespace ManagedT5.Hub;

/// <summary>
/// A model could not be found or downloaded. It is an <see cref="IOException"/>, so code that reports I/O errors reports
/// this one too; the message names the model id, the file and the URL where known, and says what to do next. The message,
/// file name and URL hold no control characters (a server's escape sequences are shown as <c>\x1B</c>, never sent raw).
/// </summary>
public sealed class HubException : IOException
{
    /// <summary>The hub id being resolved.</summary>
    public string ModelId { get; }
    /// <summary>The file being downloaded, if any.</summary>
    public string? FileName { get; }
    /// <summary>The URL requested, if any.</summary>
    public string? Url { get; }
    /// <summary>The HTTP status the hub answered with, if any.</summary>
    public int? StatusCode { get; }

    /// <summary>Creates the exception; control characters in every text are replaced by visible escapes.</summary>
    public HubException(string message, string modelId, string? fileName = null, string? url = null, int? statusCode = null,
        Exception? innerException = null)
        : base(HubText.Printable(message, 4000), innerException)
    {
        ModelId = HubText.Printable(modelId);
        FileName = fileName is null ? null : HubText.Printable(fileName);
        Url = url is null ? null : HubText.Printable(url);
        StatusCode = statusCode;
    }
}

/// <summary>Makes text from outside safe to print on a terminal.</summary>
internal static class HubText
{
    /// <summary>
    /// <paramref name="text"/> with every control character (C0, DEL, C1), line or paragraph separator, bidirectional
    /// override and lone surrogate written as <c>\xNN</c> / <c>\uNNNN</c>, and cut to <paramref name="maxLength"/>
    /// characters, so an ESC sequence or a right-to-left override from a server cannot act on the terminal.
    /// </summary>
    public static string Printable(string text, int maxLength = 300)
    {
        var b = new StringBuilder(Math.Min(text.Length, maxLength) + 8);
        int i = 0;
        for (; i < text.Length && b.Length < maxLength; i++)
        {
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                b.Append(c).Append(text[++i]);
            }
            else if (c < 0x20 || c is >= '\u007F' and <= '\u009F')
            {
                b.Append(@"\x").Append(((int)c).ToString("X2"));
            }
            else if (char.IsSurrogate(c) || c is '\u061C' or '\u200E' or '\u200F' or '\u2028' or '\u2029' or (>= '\u202A' and <= '\u202E') or
                     (>= '\u2066' and <= '\u2069'))
            {
                b.Append(@"\u").Append(((int)c).ToString("X4"));
            }
            else
            {
                b.Append(c);
            }
        }
        if (i < text.Length) b.Append("...");
        return b.ToString();
    }
}
