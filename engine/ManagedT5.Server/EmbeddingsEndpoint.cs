// POST /v1/embeddings. Until ManagedT5.Embeddings.T5Embedder (helper "embed") is merged, this server holds no embedding
// model and answers every embeddings request with one clear 404 error naming the missing piece.
using Microsoft.AspNetCore.Http;

namespace ManagedT5.Server;

/// <summary>The embeddings endpoint.</summary>
internal static class EmbeddingsEndpoint
{
    public static Task HandleAsync(HttpContext context, string modelId) =>
        throw new ApiError(404, $"This server serves no embedding model: '{modelId}' is a generation model and /v1/embeddings " +
                                "is not wired to ManagedT5.Embeddings yet.", "model", "model_not_found");
}
