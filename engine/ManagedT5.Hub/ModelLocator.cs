// Turns what a user typed (a folder or a hub id like google/flan-t5-small) into a local model folder.
namespace ManagedT5.Hub;

/// <summary>Resolves a model folder or hub id to a local folder.</summary>
public static class ModelLocator
{
    /// <summary>A folder as given; a hub id is looked up locally (download comes with the hub client).</summary>
    public static string Resolve(string modelOrHubId)
    {
        if (Directory.Exists(modelOrHubId)) return Path.GetFullPath(modelOrHubId);
        throw new DirectoryNotFoundException(
            $"Model '{modelOrHubId}' is not a folder. Download config.json, generation_config.json, spiece.model and model.safetensors " +
            $"from https://huggingface.co/{modelOrHubId} into weights/{modelOrHubId}/ and pass that folder.");
    }
}
