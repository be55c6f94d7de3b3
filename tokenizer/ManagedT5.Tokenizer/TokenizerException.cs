// TokenizerException: thrown when a tokenizer file cannot be read (missing, truncated, not SentencePiece).
// The message always names the file and says what to do about it.

namespace ManagedT5.Tokenizer;

/// <summary>A tokenizer file could not be loaded: it is missing, empty, truncated or not a supported format.</summary>
public sealed class TokenizerException : Exception
{
    /// <summary>Creates the exception for <paramref name="path"/>.</summary>
    public TokenizerException(string message, string? path = null, Exception? innerException = null)
        : base(message, innerException)
    {
        Path = path;
    }

    /// <summary>The file that failed to load, when there is one.</summary>
    public string? Path { get; }
}
