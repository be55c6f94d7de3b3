// What a download reports while it runs: one file's bytes so far, its size, the speed and the time left.
namespace ManagedT5.Hub;

/// <summary>Progress of one file's download.</summary>
/// <param name="ModelId">The hub id.</param>
/// <param name="FileName">The file, e.g. model.safetensors.</param>
/// <param name="BytesReceived">Bytes on disk so far, including any resumed from an earlier run.</param>
/// <param name="TotalBytes">The file's size when the hub sent it; null when unknown.</param>
/// <param name="BytesPerSecond">Average speed of this attempt.</param>
/// <param name="Eta">Estimated time left; null when the size or speed is unknown.</param>
/// <param name="IsComplete">True on the last report for the file (downloaded and checked).</param>
public readonly record struct DownloadProgress(
    string ModelId, string FileName, long BytesReceived, long? TotalBytes, double BytesPerSecond, TimeSpan? Eta, bool IsComplete)
{
    /// <summary>Fraction done in [0, 1]; null when the size is unknown.</summary>
    public double? Fraction => TotalBytes is > 0 and long total ? Math.Clamp((double)BytesReceived / total, 0, 1) : null;
}
