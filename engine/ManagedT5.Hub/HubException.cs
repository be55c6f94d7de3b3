// The one error type for hub look-ups and downloads: its message names the model, the file and the URL, and says what to do.
namespace ManagedT5.Hub;

/// <summary>
/// A model could not be found or downloaded. It is an <see cref="IOException"/>, so code that reports I/O errors reports
/// this one too; the message names the model id, the file and the URL where known, and says what to do next.
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

    /// <summary>Creates the exception.</summary>
    public HubException(string message, string modelId, string? fileName = null, string? url = null, int? statusCode = null,
        Exception? innerException = null)
        : base(message, innerException)
    {
        ModelId = modelId;
        FileName = fileName;
        Url = url;
        StatusCode = statusCode;
    }
}
