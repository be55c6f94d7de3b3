// managedt5 inspect: the config summary, parameter count, and dtypes with their bytes.
using System.CommandLine;
using ManagedT5.Kernels;
using ManagedT5.Loading;

namespace ManagedT5.Cli;

internal static class InspectCommand
{
    public static Command Create()
    {
        Option<string> model = CliCommon.ModelOption();
        var command = new Command("inspect", "Print a checkpoint's config, parameter count and dtypes") { model };
        command.SetAction(r =>
        {
            string dir = CliCommon.ResolveModel(r, r.GetValue(model)!);
            CliCommon.Doing = $"reading {dir}";
            T5Config c = T5Config.Load(Path.Combine(dir, "config.json"));
            using Checkpoint checkpoint = Checkpoint.Open(dir);
            Console.WriteLine($"model        {dir}");
            Console.WriteLine($"architecture T5 ({(c.IsGatedAct ? "gated-" : "")}{c.DenseActivation}, {(c.TieWordEmbeddings ? "tied" : "untied")} embeddings)");
            Console.WriteLine($"d_model {c.DModel}, d_kv {c.DKv}, num_heads {c.NumHeads} (inner {c.InnerDim}), d_ff {c.DFf}");
            Console.WriteLine($"layers       encoder {c.NumLayers}, decoder {c.NumDecoderLayers}");
            Console.WriteLine($"vocab_size   {c.VocabSize}; relative buckets {c.RelativeAttentionNumBuckets}, max distance {c.RelativeAttentionMaxDistance}; eps {c.LayerNormEpsilon}");
            var infos = checkpoint.Names.Select(n => checkpoint.Find(n)!).ToList();
            long parameters = infos.Sum(i => i.ElementCount);
            Console.WriteLine($"files        {checkpoint.Files.Count} ({string.Join(", ", checkpoint.Files.Select(f => Path.GetFileName(f.Path)))})");
            Console.WriteLine($"tensors      {infos.Count}");
            Console.WriteLine($"parameters   {parameters:N0} ({parameters / 1e6:F1} M)");
            foreach (var g in infos.GroupBy(i => i.DType).OrderBy(g => g.Key))
                Console.WriteLine($"  {g.Key,-5} {g.Count(),5} tensors {g.Sum(i => i.ElementCount),14:N0} params {g.Sum(i => i.End - i.Begin),15:N0} bytes");
            return 0;
        });
        return command;
    }
}
