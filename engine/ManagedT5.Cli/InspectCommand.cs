// managedt5 inspect: the config summary, parameter count, and dtypes with their bytes; with --adapter, a LoRA adapter's
// config and modules (and, with --model, whether it fits that model).
using System.CommandLine;
using ManagedT5.Adapters;
using ManagedT5.Kernels;
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Cli;

internal static class InspectCommand
{
    public static Command Create()
    {
        Option<string> model = CliCommon.ModelOption();
        var adapterOption = new Option<string?>("--adapter")
        {
            HelpName = "dir",
            Description = "Show a LoRA adapter folder (HF PEFT's format) instead: its config and modules; with --model, also " +
                          "check that it fits that model",
        };
        var command = new Command("inspect", "Print a checkpoint's config, parameter count and dtypes") { model, adapterOption };
        command.SetAction(r =>
        {
            if (r.GetValue(adapterOption) is { } adapterDir)
            {
                CliCommon.Doing = $"reading the adapter {adapterDir}";
                LoraAdapter adapter = LoraAdapter.Load(adapterDir);
                LoraConfig a = adapter.Config;
                Console.WriteLine($"adapter      {adapterDir}");
                Console.WriteLine($"type         LoRA, r {a.R}, lora_alpha {a.LoraAlpha} (scale {a.Scale}{(a.UseRslora ? ", rsLoRA" : "")}), lora_dropout {a.LoraDropout}");
                Console.WriteLine($"targets      {(a.TargetModulesRegex is { } regex ? $"'{regex}'" : string.Join(", ", a.TargetModules))}" +
                                  (a.LayersToTransform is { } layers ? $" in layers {string.Join(", ", layers)}" : ""));
                Console.WriteLine($"base model   {a.BaseModelNameOrPath ?? "(not recorded)"}");
                long values = adapter.Modules.Sum(m => (long)m.A.Length + m.B.Length);
                Console.WriteLine($"modules      {adapter.Modules.Count} ({values:N0} parameters)");
                foreach (LoraModule m in adapter.Modules)
                    Console.WriteLine($"  {m.Module}  [{m.OutFeatures}, {m.InFeatures}]");
                if (r.GetResult(model) is { Implicit: false })
                {
                    string modelDir = CliCommon.ResolveModel(r, r.GetValue(model)!);
                    CliCommon.Doing = $"checking the adapter against {modelDir}";
                    T5Config mc = T5Config.Load(Path.Combine(modelDir, "config.json"));
                    adapter.CheckFits(new T5Modules(mc), mc, adapterDir);
                    Console.WriteLine($"fits         {modelDir}");
                }
                return 0;
            }
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
