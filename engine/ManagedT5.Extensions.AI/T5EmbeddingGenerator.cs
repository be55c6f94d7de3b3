// Microsoft.Extensions.AI's IEmbeddingGenerator over a loaded T5Embedder: strings in, Embedding<float> out, with the
// encoder's token counts as usage.
using ManagedT5.Embeddings;
using Microsoft.Extensions.AI;

namespace ManagedT5.Extensions.AI;

/// <summary>
/// An <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> for a sentence-transformers T5 model (sentence-t5, GTR) or a
/// plain T5 folder (encoder + mean pooling). <see cref="EmbeddingGenerationOptions.Dimensions"/> must be null or the
/// model's dimension (T5 embedders cannot shorten vectors); another <see cref="EmbeddingGenerationOptions.ModelId"/> and
/// any <see cref="EmbeddingGenerationOptions.AdditionalProperties"/> are refused with a <see cref="NotSupportedException"/>
/// naming them. <see cref="GeneratedEmbeddings{TEmbedding}.Usage"/> holds the tokens the encoder read
/// (<see cref="UsageDetails.InputTokenCount"/> = <see cref="UsageDetails.TotalTokenCount"/>); texts cut to max_seq_length
/// are counted in its AdditionalCounts under "truncated_texts". Thread-safe as the embedder is.
/// </summary>
public sealed class T5EmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    /// <summary>The name in <see cref="EmbeddingGeneratorMetadata.ProviderName"/>.</summary>
    public const string ProviderName = "ManagedT5";
    /// <summary>The AdditionalCounts key of usage that counts texts cut to max_seq_length.</summary>
    public const string TruncatedTextsKey = "truncated_texts";

    private readonly bool _ownsEmbedder;

    /// <summary>Wraps a loaded embedder.</summary>
    /// <param name="embedder">The model.</param>
    /// <param name="modelId">Reported as the model id (default: <see cref="T5Embedder.ModelId"/>).</param>
    /// <param name="ownsEmbedder">Dispose the embedder with this generator.</param>
    public T5EmbeddingGenerator(T5Embedder embedder, string? modelId = null, bool ownsEmbedder = false)
    {
        ArgumentNullException.ThrowIfNull(embedder);
        Embedder = embedder;
        ModelId = modelId ?? embedder.ModelId;
        _ownsEmbedder = ownsEmbedder;
        Metadata = new EmbeddingGeneratorMetadata(ProviderName, null, ModelId, embedder.Dimension);
    }

    /// <summary>Loads a folder or hub id (<see cref="T5Embedder.Load"/>) into a generator that owns it.</summary>
    public static T5EmbeddingGenerator Load(string modelOrHubId, T5EmbedderOptions? options = null) =>
        new(T5Embedder.Load(modelOrHubId, options), modelOrHubId, ownsEmbedder: true);

    /// <summary><see cref="Load"/> without blocking a thread while a hub id is downloaded.</summary>
    public static async Task<T5EmbeddingGenerator> LoadAsync(string modelOrHubId, T5EmbedderOptions? options = null,
        CancellationToken cancellationToken = default) =>
        new(await T5Embedder.LoadAsync(modelOrHubId, options, cancellationToken).ConfigureAwait(false), modelOrHubId, ownsEmbedder: true);

    /// <summary>The wrapped embedder.</summary>
    public T5Embedder Embedder { get; }

    /// <summary>The model id reported in metadata and on each embedding.</summary>
    public string ModelId { get; }

    /// <summary>Provider "ManagedT5", no URI, the model id and the embedding dimension.</summary>
    public EmbeddingGeneratorMetadata Metadata { get; }

    /// <inheritdoc />
    public async Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values,
        EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        Check(options);
        string[] texts = values.ToArray();
        if (texts.Length == 0) return new GeneratedEmbeddings<Embedding<float>>();   // nothing asked, nothing computed
        EmbeddingBatchResult result = await Embedder.EmbedAsync(texts, cancellationToken).ConfigureAwait(false);
        DateTimeOffset created = DateTimeOffset.UtcNow;
        long tokens = result.TokenCounts.Sum(n => (long)n);
        return new GeneratedEmbeddings<Embedding<float>>(
            result.Embeddings.Select(v => new Embedding<float>(v) { ModelId = ModelId, CreatedAt = created }))
        {
            Usage = new UsageDetails
            {
                InputTokenCount = tokens,
                TotalTokenCount = tokens,
                AdditionalCounts = new AdditionalPropertiesDictionary<long> { [TruncatedTextsKey] = result.TruncatedTexts },
            },
        };
    }

    /// <summary>Refuses what a T5 embedder cannot honour, naming the option.</summary>
    private void Check(EmbeddingGenerationOptions? options)
    {
        if (options is null) return;
        if (options.Dimensions is int dims && dims != Embedder.Dimension)
            throw new NotSupportedException(
                $"EmbeddingGenerationOptions.Dimensions: this model makes {Embedder.Dimension}-dimensional embeddings and cannot make {dims}; " +
                $"leave Dimensions unset or set it to {Embedder.Dimension}.");
        if (options.ModelId is string id && id != ModelId)
            throw new NotSupportedException(
                $"EmbeddingGenerationOptions.ModelId: this generator serves '{ModelId}', not '{id}'; load that model into its own generator.");
        if (options.AdditionalProperties is { Count: > 0 } extra)
            throw new NotSupportedException(
                $"EmbeddingGenerationOptions.AdditionalProperties: '{extra.Keys.First()}' is not an option of a T5 embedder; it takes none " +
                "(set max_seq_length, batch_size and normalize in T5EmbedderOptions when loading).");
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(EmbeddingGeneratorMetadata)) return Metadata;
        if (serviceType == typeof(T5Embedder)) return Embedder;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Disposes the embedder when this generator owns it.</summary>
    public void Dispose()
    {
        if (_ownsEmbedder) Embedder.Dispose();
    }
}
