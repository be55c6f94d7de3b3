// T5EmbeddingGenerator on the tiny-sentence-t5 fixture: the same vectors as T5Embedder (and sentence-transformers'),
// usage with token counts, metadata, refused options and cancellation.
using ManagedT5.Embeddings;
using Microsoft.Extensions.AI;

namespace ManagedT5.Extensions.AI.Tests;

public sealed class EmbeddingGeneratorTests : IDisposable
{
    private static readonly string Folder = Path.Combine(Path.GetDirectoryName(TinyModel.Folder)!, "tiny-sentence-t5");
    private readonly T5EmbeddingGenerator _generator = T5EmbeddingGenerator.Load(Folder);

    public void Dispose() => _generator.Dispose();

    [Fact]
    public async Task GeneratesTheEmbedderVectorsWithUsage()
    {
        string[] texts = ["Hello world", "Hola mundo", "translate English to German: How old are you?"];
        GeneratedEmbeddings<Embedding<float>> result = await _generator.GenerateAsync(texts);
        EmbeddingBatchResult expected = _generator.Embedder.Embed(texts);
        Assert.Equal(3, result.Count);
        for (int i = 0; i < texts.Length; i++)
        {
            Assert.Equal(expected.Embeddings[i], result[i].Vector.ToArray());
            Assert.Equal(24, result[i].Dimensions);
            Assert.Equal(Folder, result[i].ModelId);
        }
        Assert.Equal(expected.TokenCounts.Sum(), result.Usage!.InputTokenCount);
        Assert.Equal(result.Usage.InputTokenCount, result.Usage.TotalTokenCount);
        Assert.Equal(0, result.Usage.AdditionalCounts![T5EmbeddingGenerator.TruncatedTextsKey]);

        // The reference (sentence-transformers) cosine of "Hello world" and "Hola mundo", through the extension method.
        ReadOnlyMemory<float> a = await _generator.GenerateVectorAsync("Hello world"), b = await _generator.GenerateVectorAsync("Hola mundo");
        Assert.Equal(0.185044527053833, T5Embedder.Cosine(a.Span, b.Span), 5);
    }

    [Fact]
    public async Task MetadataAndServices()
    {
        var metadata = (EmbeddingGeneratorMetadata)_generator.GetService(typeof(EmbeddingGeneratorMetadata))!;
        Assert.Equal("ManagedT5", metadata.ProviderName);
        Assert.Equal(24, metadata.DefaultModelDimensions);
        Assert.Same(_generator.Embedder, _generator.GetService(typeof(T5Embedder)));
        Assert.Null(_generator.GetService(typeof(T5Embedder), "key"));
        Assert.Empty(await _generator.GenerateAsync([]));
    }

    [Fact]
    public async Task OptionsItCannotHonourAreRefusedByName()
    {
        GeneratedEmbeddings<Embedding<float>> same = await _generator.GenerateAsync(["a"], new EmbeddingGenerationOptions { Dimensions = 24 });
        Assert.Single(same);
        var dims = await Assert.ThrowsAsync<NotSupportedException>(() =>
            _generator.GenerateAsync(["a"], new EmbeddingGenerationOptions { Dimensions = 12 }));
        Assert.Contains("Dimensions", dims.Message);
        Assert.Contains("24", dims.Message);
        var model = await Assert.ThrowsAsync<NotSupportedException>(() =>
            _generator.GenerateAsync(["a"], new EmbeddingGenerationOptions { ModelId = "other" }));
        Assert.Contains("ModelId", model.Message);
        var extra = await Assert.ThrowsAsync<NotSupportedException>(() =>
            _generator.GenerateAsync(["a"], new EmbeddingGenerationOptions { AdditionalProperties = new() { ["pooling"] = "max" } }));
        Assert.Contains("'pooling'", extra.Message);
    }

    [Fact]
    public async Task TruncationIsCountedAndCancellationHonoured()
    {
        using var short6 = new T5EmbeddingGenerator(T5Embedder.Load(Folder, new T5EmbedderOptions { MaxSeqLength = 4 }), ownsEmbedder: true);
        GeneratedEmbeddings<Embedding<float>> result = await short6.GenerateAsync(["one two three four five six", "hi"]);
        Assert.Equal(1, result.Usage!.AdditionalCounts![T5EmbeddingGenerator.TruncatedTextsKey]);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => _generator.GenerateAsync(["a"], cancellationToken: cts.Token));
    }
}
