// Random weights with HF's names for a T5 module tree, as the PyTorch peer's T5.random makes them: norms are ones, the
// embedding and the position-bias tables unit normals, every other matrix normals scaled by 1/sqrt(in_features).
// Benchmark code, not part of any library: linked as a source file into the tools that build random-weight models
// (the CLI's bench command, bench/ManagedT5.Bench, bench/ManagedT5.Bench.Batching).
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Benchmarks;

/// <summary>A seeded source of benchmark weights: the same seed gives the same values, draw for draw.</summary>
internal sealed class RandomWeights(int seed = 0)
{
    private readonly Random _rng = new(seed);

    /// <summary>A [rows, cols] matrix of normals (Box-Muller, two per pair of uniforms), scaled by 1/sqrt(cols) if asked.</summary>
    public float[] Normal(long rows, long cols, bool scaled)
    {
        var v = new float[rows * cols];
        float scale = scaled ? 1f / MathF.Sqrt(cols) : 1f;
        for (long i = 0; i < v.Length; i += 2)
        {
            double u1 = 1.0 - _rng.NextDouble(), u2 = _rng.NextDouble(), radius = Math.Sqrt(-2 * Math.Log(u1));
            v[i] = (float)(radius * Math.Cos(2 * Math.PI * u2)) * scale;
            if (i + 1 < v.Length) v[i + 1] = (float)(radius * Math.Sin(2 * Math.PI * u2)) * scale;
        }
        return v;
    }

    /// <summary>Writes every parameter <paramref name="modules"/> lists into the safetensors file <paramref name="path"/>.</summary>
    public void WriteCheckpoint(T5Modules modules, string path)
    {
        var w = new SafeTensorsWriter();
        foreach (T5Parameter p in modules.Parameters)
            w.Add(p.Name, p.Role == T5ParameterRole.Norm ? Enumerable.Repeat(1f, p.Shape[0]).ToArray()
                : Normal(p.Shape[0], p.Shape[1], scaled: p.Role == T5ParameterRole.Matrix && p != modules.Shared), p.Shape);
        w.Save(path);
    }

    /// <summary>
    /// A temporary model folder with the architecture of the config.json at <paramref name="configPath"/> made gated
    /// (gelu_new) and untied, as the PyTorch peer's random model is: its config.json and random weights.
    /// </summary>
    public static string GatedUntiedModel(string configPath, string folderPrefix)
    {
        string dir = Directory.CreateTempSubdirectory(folderPrefix).FullName;
        T5Config c = T5Config.Load(configPath);
        var modules = new T5Modules(c with { IsGatedAct = true, TieWordEmbeddings = false, IsEncoderOnly = false });
        new RandomWeights(seed: 0).WriteCheckpoint(modules, Path.Combine(dir, "model.safetensors"));
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        node["tie_word_embeddings"] = false;
        node["is_gated_act"] = true;
        node["dense_act_fn"] = "gelu_new";
        File.WriteAllText(Path.Combine(dir, "config.json"), node.ToJsonString());
        return dir;
    }
}
