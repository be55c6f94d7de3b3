// managedt5 trace: study mode. Runs one prompt through the encoder and (teacher-forced on the greedy output) the
// decoder, and writes every intermediate tensor, named after HF's modules, to a safetensors file that can be held
// beside PyTorch's (e.g. with forward hooks on T5ForConditionalGeneration).
using System.CommandLine;
using ManagedT5.Generation;
using ManagedT5.Kernels;
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Cli;

internal static class TraceCommand
{
    /// <summary>Downloads every observed tensor; self-attention scores (q . k + bias, before the softmax, no
    /// 1/sqrt(d_kv)) are rebuilt on the host from q, k and the bias, since the fused kernel never materialises them.</summary>
    private sealed class TraceRecorder : ITensorObserver
    {
        public readonly List<(string Name, float[] Data, int[] Shape)> Tensors = [];
        private readonly Dictionary<string, (float[] Data, int[] Shape)> _byName = new();
        private readonly IBackend _backend;
        private readonly T5Config _config;
        // Each self-attention's k, by its name in the module tree: the attention, the position bias it adds (its own,
        // or the one the nearest block before it made) and whether it is causal.
        private readonly Dictionary<string, (T5AttentionModule Attention, string Bias, bool Causal)> _selfAttentionByKey = new();

        public TraceRecorder(IBackend backend, T5Config config, T5Modules modules)
        {
            (_backend, _config) = (backend, config);
            foreach (T5StackModule stack in modules.Stacks)
            {
                string bias = "";
                foreach (T5BlockModule block in stack.Blocks)
                {
                    if (block.SelfAttention.RelativeAttentionBias is not null) bias = block.SelfAttention.PositionBias;
                    _selfAttentionByKey[block.SelfAttention.K.Module] = (block.SelfAttention, bias, stack.IsDecoder);
                }
            }
        }

        public void Observe(string name, IBuffer buffer, int[] shape)
        {
            var data = new float[shape.Aggregate(1, (a, d) => a * d)];
            _backend.Download(buffer, data);
            Add(name, data, shape);
            if (_selfAttentionByKey.TryGetValue(name, out var self)) AddScores(self.Attention, self.Bias, self.Causal);
        }

        private void Add(string name, float[] data, int[] shape)
        {
            Tensors.Add((name, data, shape));
            _byName[name] = (data, shape);
        }

        private void AddScores(T5AttentionModule attention, string biasName, bool causal)
        {
            var (q, qShape) = _byName[attention.Q.Module];
            var (k, _) = _byName[attention.K.Module];
            var (bias, _) = _byName[biasName];
            int batch = qShape[0], n = qShape[1], heads = _config.NumHeads, dk = _config.DKv, inner = _config.InnerDim;
            var scores = new float[batch * heads * n * n];
            for (int b = 0; b < batch; b++)
                for (int h = 0; h < heads; h++)
                    for (int i = 0; i < n; i++)
                        for (int j = 0; j < n; j++)
                        {
                            float s = 0;
                            for (int d = 0; d < dk; d++) s += q[(b * n + i) * inner + h * dk + d] * k[(b * n + j) * inner + h * dk + d];
                            s += bias[(h * n + i) * n + j];
                            scores[((b * heads + h) * n + i) * n + j] = causal && j > i ? float.NegativeInfinity : s;
                        }
            Add(attention.Scores, scores, [batch, heads, n, n]);
        }
    }

    public static Command Create()
    {
        Option<string> model = CliCommon.ModelOption();
        Option<string> device = CliCommon.DeviceOption();
        var output = new Option<string>("--out") { Description = "Output safetensors file", DefaultValueFactory = _ => "trace.safetensors" };
        var maxNewTokens = new Option<int>("--max-new-tokens") { Description = "Greedy tokens to decode (then traced teacher-forced)", DefaultValueFactory = _ => 8 };
        var prompt = new Argument<string>("prompt") { Description = "The prompt to trace (one that starts with '-' goes after --)" };
        var command = new Command("trace", "Write every intermediate tensor of one prompt to a safetensors file (study mode)")
        {
            model, device, output, maxNewTokens, prompt,
        };
        Option<string> compat = TokenizeCommands.TokenizerCompatOption();
        command.Options.Add(compat);
        command.SetAction(r =>
        {
            using T5TextGenerator t5 = T5TextGenerator.Load(CliCommon.ResolveModel(r, r.GetValue(model)!),
                new T5LoadOptions { Device = r.GetValue(device)!, TokenizerCompat = TokenizeCommands.ParseCompat(r.GetValue(compat)) });
            CliCommon.Doing = "tracing the prompt";
            T5Model m = t5.Model;
            int[] ids = t5.Encode([r.GetValue(prompt)!])[0];
            // An encoder-only checkpoint (T5EncoderModel) is traced through its encoder alone.
            int[] decoderIds = m.HasDecoder
                ? t5.GenerateIds([ids], new GenerationOptions { MaxNewTokens = r.GetValue(maxNewTokens) }).Sequences[0] : [];

            var recorder = new TraceRecorder(m.Backend, m.Config, m.Modules);
            using EncoderOutput encoded = m.Encode(ids, Enumerable.Repeat(1, ids.Length).ToArray(), 1, recorder);
            if (m.HasDecoder)
            {
                using DecoderState state = m.StartDecoder(encoded, decoderIds.Length, maxTokensPerCall: decoderIds.Length);
                m.Decode(state, decoderIds, decoderIds.Length, recorder);
            }

            var writer = new SafeTensorsWriter();
            writer.Add("input_ids", DType.I64, ids.SelectMany(i => BitConverter.GetBytes((long)i)).ToArray(), 1, ids.Length);
            if (m.HasDecoder)
                writer.Add("decoder_input_ids", DType.I64, decoderIds.SelectMany(i => BitConverter.GetBytes((long)i)).ToArray(), 1, decoderIds.Length);
            foreach (var (name, data, shape) in recorder.Tensors) writer.Add(name, data, shape);
            string path = r.GetValue(output)!;
            writer.Save(path, new Dictionary<string, string>
            {
                ["prompt"] = r.GetValue(prompt)!,
                ["generated"] = m.HasDecoder ? t5.Tokenizer.Decode(decoderIds) : "(encoder-only model: no decoder)",
                ["note"] = "names follow HF modules; *.attention is the attention output before the o projection; *.scores are q.k + bias before the softmax",
            });
            Console.WriteLine($"wrote {recorder.Tensors.Count + (m.HasDecoder ? 2 : 1)} tensors to {Path.GetFullPath(path)}");
            return 0;
        });
        return command;
    }
}
