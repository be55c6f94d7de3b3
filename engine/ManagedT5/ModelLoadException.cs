// The exception for anything wrong with a model folder: files, headers, tensors, config.
namespace ManagedT5;

/// <summary>A model folder, checkpoint file or config could not be loaded. The message names the file, tensor or
/// key and says what to do.</summary>
public sealed class ModelLoadException : Exception
{
    /// <summary>The file concerned, when there is one.</summary>
    public string? FilePath { get; }

    /// <summary>Creates the exception.</summary>
    public ModelLoadException(string message, string? filePath = null, Exception? inner = null)
        : base(message, inner) => FilePath = filePath;
}
