// The trainable T5: a model folder loaded into f32 Parameters in HF's named_parameters() order, with the module tree
// (T5Modules) wired as Linear / norm / attention nodes. The forward and backward passes are in T5TrainingModel.Graph.cs.
using ManagedT5.Adapters;
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu.Training;
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Training;

/// <summary>Options of <see cref="T5TrainingModel.Load"/>.</summary>
public sealed record TrainingModelOptions
{
    /// <summary>Threads the kernels run on, the caller included; 0 = all processors.</summary>
    public int Threads { get; init; }

    /// <summary>HF's dropout_rate while training (<see cref="T5TrainingModel.ForwardBackward"/>): null takes config.json's
    /// dropout_rate (as HF does; 0.1 for Flan-T5), 0 turns dropout off. Evaluation and inference never drop.</summary>
    public double? DropoutRate { get; init; }

    /// <summary>Checks the options: an <see cref="ArgumentException"/> whose ParamName is the HF option name.</summary>
    public void Validate()
    {
        if (Threads < 0) throw new ArgumentException($"threads: {Threads} is negative; use 0 for all processors or a positive count.", "threads");
        if (DropoutRate is double p && !(p is >= 0 and < 1))
            throw new ArgumentException($"dropout_rate: {p} is not a probability below 1; give a number from 0 (no dropout) up to, not including, 1.", "dropout_rate");
    }
}

/// <summary>
/// T5ForConditionalGeneration for training on the CPU: forward with saved activations, backward into each
/// <see cref="Parameter.Grad"/>, exact to PyTorch (fp32) with dropout 0. While training, dropout is applied where HF's
/// T5 applies it (<see cref="T5Config.DropoutRate"/>) and LoRA's on the adapters' input (lora_dropout), with masks that
/// are a hash of the key given to <see cref="ForwardBackward"/> (see <see cref="DropoutMask"/>). Activation buffers grow to the largest (batch, source length,
/// target length) seen and smaller batches use a prefix, so once the largest shape has been seen a step allocates nothing. One instance is used by one thread
/// at a time; its kernels run on its own worker pool.
/// </summary>
public sealed partial class T5TrainingModel : IDisposable
{
    private readonly TrainingKernels _k;

    /// <summary>The kernels' worker pool (the trainer runs the optimizer's update on it).</summary>
    internal ManagedT5.Kernels.Cpu.WorkerPool Pool => _k.Pool;
    private readonly List<Parameter> _parameters = [];
    private readonly Dictionary<string, Parameter> _byName = [];
    private readonly Stack _encoder, _decoder;
    private readonly Parameter _shared;
    private readonly Parameter _head;            // lm_head.weight, or shared.weight when tied
    private readonly Dictionary<string, Linear> _linears = [];
    private List<Parameter> _trainable;
    private LoraState? _lora;

    /// <summary>The kernels this model runs on (tests switch ops to their scalar twins through it).</summary>
    internal TrainingKernels Kernels => _k;

    /// <summary>The model's configuration (config.json), with <see cref="T5Config.DropoutRate"/> the rate training uses
    /// (<see cref="TrainingModelOptions.DropoutRate"/> when given).</summary>
    public T5Config Config { get; }

    /// <summary>The module tree with HF's names.</summary>
    public T5Modules Modules { get; }

    /// <summary>Every parameter in HF's named_parameters() order; a tied model has one shared.weight and no
    /// lm_head.weight. After <see cref="AttachLora"/> the LoRA A/B follow the base's.</summary>
    public IReadOnlyList<Parameter> Parameters => _parameters;

    /// <summary>The parameters training updates: all of the base, or only LoRA's after <see cref="AttachLora"/>.</summary>
    public IReadOnlyList<Parameter> TrainableParameters => _trainable;

    private T5TrainingModel(T5Config config, T5Modules modules, IReadOnlyDictionary<string, float[]> values, TrainingModelOptions options)
    {
        double rate = options.DropoutRate ?? config.DropoutRate;
        if (rate >= 1)
            throw new ArgumentException($"dropout_rate: config.json's dropout_rate is {rate}, which drops everything; give a rate below 1 (--dropout-rate).", "dropout_rate");
        Config = config with { DropoutRate = rate };
        Modules = modules;
        _k = new TrainingKernels(options.Threads);
        foreach (T5Parameter p in NamedParameters(modules))
        {
            var parameter = new Parameter(p.Name, p.Shape, values[p.Name]);
            _parameters.Add(parameter);
            _byName.Add(p.Name, parameter);
        }
        _trainable = [.. _parameters];
        _shared = _byName[modules.Shared.Name];
        _head = modules.TiedLmHead ? _shared : _byName[modules.LmHead!.Name];
        _encoder = BuildStack(modules.Encoder);
        _decoder = BuildStack(modules.Decoder!);
    }

    /// <summary>
    /// Loads config.json and the safetensors weights of <paramref name="modelDirectory"/> into f32 parameters (bf16 /
    /// f16 checkpoints are widened). Errors (missing or misshapen tensors, an encoder-only model) are
    /// <see cref="ModelLoadException"/>s naming the file and tensor.
    /// </summary>
    public static T5TrainingModel Load(string modelDirectory, TrainingModelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(modelDirectory);
        options ??= new TrainingModelOptions();
        options.Validate();
        string configPath = Path.Combine(modelDirectory, "config.json");
        T5Config config = T5Config.Load(configPath);
        if (config.IsEncoderOnly)
            throw new ModelLoadException($"'{configPath}' describes an encoder-only model (T5EncoderModel); fine-tuning needs T5ForConditionalGeneration.", configPath);
        bool supported = config.IsGatedAct ? config.DenseActivation == ActivationKind.GeluNew
            : config.DenseActivation is ActivationKind.Relu or ActivationKind.GeluNew;
        if (!supported)
            throw new ModelLoadException($"'{configPath}': feed_forward_proj '{config.FeedForwardProj}' is not supported for training; supported: relu, gelu_new, gated-gelu.", configPath);
        var modules = new T5Modules(config);
        var values = new Dictionary<string, float[]>();
        using (Checkpoint checkpoint = Checkpoint.Open(modelDirectory))
        {
            var missing = new List<string>();
            foreach (T5Parameter p in modules.Parameters)
            {
                // HF drops shared.weight in some exports and keeps encoder.embed_tokens.weight: take a stored copy.
                string? stored = checkpoint.Contains(p.Name) ? p.Name
                    : p == modules.Shared ? modules.OptionalCopies.Select(c => c.Name).FirstOrDefault(checkpoint.Contains) : null;
                if (stored is null) { missing.Add(p.Name); continue; }
                HostTensor tensor = checkpoint.GetTensor(stored);
                if (!tensor.Shape.SequenceEqual(p.Shape))
                    throw new ModelLoadException(
                        $"Tensor '{stored}' in '{modelDirectory}' has shape [{string.Join(", ", tensor.Shape)}]; config.json implies [{string.Join(", ", p.Shape)}].", modelDirectory);
                values[p.Name] = tensor.ToSingleArray();
            }
            if (missing.Count > 0)
                throw new ModelLoadException($"The checkpoint in '{modelDirectory}' lacks {missing.Count} tensor(s) the config needs: {string.Join(", ", missing.Take(8))}{(missing.Count > 8 ? ", ..." : "")}.", modelDirectory);
        }
        return new T5TrainingModel(config, modules, values, options);
    }

    /// <summary>
    /// A model of <paramref name="config"/>'s shape with random weights (benchmarks, tests): matrices uniform in
    /// ±0.5/√fan_in (embeddings ±0.5), bias tables ±0.5, norms 1. Deterministic for a <paramref name="seed"/>.
    /// </summary>
    public static T5TrainingModel CreateRandom(T5Config config, int seed = 0, TrainingModelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        options ??= new TrainingModelOptions();
        options.Validate();
        if (config.IsEncoderOnly) throw new ArgumentException("config: an encoder-only config cannot be trained here; use T5ForConditionalGeneration's.", nameof(config));
        var modules = new T5Modules(config);
        var random = new Random(seed);
        var values = new Dictionary<string, float[]>();
        foreach (T5Parameter p in modules.Parameters)
        {
            var v = new float[p.Shape.Aggregate(1, (a, d) => checked(a * d))];
            if (p.Role == T5ParameterRole.Norm) Array.Fill(v, 1f);
            else
            {
                double bound = p.Role == T5ParameterRole.Matrix && p != modules.Shared ? 0.5 / Math.Sqrt(p.Shape[1]) : 0.5;
                for (int i = 0; i < v.Length; i++) v[i] = (float)((random.NextDouble() * 2 - 1) * bound);
            }
            values[p.Name] = v;
        }
        return new T5TrainingModel(config, modules, values, options);
    }

    /// <summary>The parameters in the order of HF's <c>model.named_parameters()</c>: shared, then per stack and block each
    /// sublayer's module (q, k, v, o, relative_attention_bias / wi_0, wi_1, wo) before its layer_norm, the stack's
    /// final_layer_norm, and lm_head when untied.</summary>
    internal static IEnumerable<T5Parameter> NamedParameters(T5Modules modules)
    {
        yield return modules.Shared;
        foreach (T5StackModule stack in modules.Stacks)
        {
            foreach (T5BlockModule block in stack.Blocks)
            {
                foreach (T5Parameter p in Attention(block.SelfAttention)) yield return p;
                yield return block.SelfAttentionNorm;
                if (block.CrossAttention is { } cross)
                {
                    foreach (T5Parameter p in Attention(cross)) yield return p;
                    yield return block.CrossAttentionNorm!;
                }
                T5FeedForwardModule f = block.FeedForward;
                foreach (T5Parameter? p in new[] { f.Wi, f.Wi0, f.Wi1, f.Wo }) if (p is not null) yield return p;
                yield return block.FeedForwardNorm;
            }
            yield return stack.FinalLayerNorm;
        }
        if (!modules.TiedLmHead && modules.LmHead is not null) yield return modules.LmHead;

        static IEnumerable<T5Parameter> Attention(T5AttentionModule a) =>
            a.RelativeAttentionBias is null ? [a.Q, a.K, a.V, a.O] : [a.Q, a.K, a.V, a.O, a.RelativeAttentionBias];
    }

    /// <summary>Looks a parameter up by its HF name (null when absent).</summary>
    public Parameter? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>Sets every trainable parameter's gradient to zero.</summary>
    public void ZeroGrad()
    {
        foreach (Parameter p in _trainable) Array.Clear(p.Grad);
    }

    /// <inheritdoc />
    public void Dispose() => _k.Dispose();

    // ------------------------------------------------ the module graph

    /// <summary>A Linear y = x·Wᵀ (W [Out, In]) with, after AttachLora, y += scale·(x·Aᵀ)·Bᵀ.</summary>
    private sealed class Linear(string module, Parameter weight)
    {
        public string Module { get; } = module;
        public Parameter Weight { get; } = weight;
        public int In => Weight.Shape[1];
        public int Out => Weight.Shape[0];
        public Parameter? LoraA, LoraB;          // A [r, In], B [Out, r]
        public float LoraScale;
        public int Rank => LoraA?.Shape[0] ?? 0;
        public float[] Saved = [];               // scale·(x·Aᵀ) [rows, r] of the last forward
        public int Index;                        // its place among the model's Linears: names its LoRA dropout site
    }

    /// <summary>T5Attention: q, k, v, o and (in the layers that own it) relative_attention_bias [buckets, heads].</summary>
    private sealed record Attention(Linear Q, Linear K, Linear V, Linear O, Parameter? BiasTable);

    /// <summary>One sublayer: a norm, then attention (self or cross) or the feed-forward; output = input + F(norm(input)).</summary>
    private sealed record Sublayer(Parameter Norm, Attention? SelfAttention, Attention? CrossAttention, Linear? Wi, Linear? Wi0, Linear? Wi1, Linear? Wo, int BiasOwner);

    /// <summary>A T5Stack: its sublayers in order, the final norm, and which sublayers own a bias table.</summary>
    private sealed record Stack(bool IsDecoder, Sublayer[] Sublayers, Parameter FinalNorm, int[] BiasOwners);

    private Linear Lin(T5Parameter p)
    {
        var linear = new Linear(p.Module, _byName[p.Name]) { Index = _linears.Count };
        _linears.Add(p.Module, linear);
        return linear;
    }

    private Stack BuildStack(T5StackModule stack)
    {
        var sublayers = new List<Sublayer>();
        var owners = new List<int>();
        int owner = -1;
        foreach (T5BlockModule block in stack.Blocks)
        {
            T5AttentionModule a = block.SelfAttention;
            Parameter? table = a.RelativeAttentionBias is null ? null : _byName[a.RelativeAttentionBias.Name];
            if (table is not null) { owner = sublayers.Count; owners.Add(owner); }
            sublayers.Add(new Sublayer(_byName[block.SelfAttentionNorm.Name], new Attention(Lin(a.Q), Lin(a.K), Lin(a.V), Lin(a.O), table), null, null, null, null, null, owner));
            if (block.CrossAttention is { } c)
                sublayers.Add(new Sublayer(_byName[block.CrossAttentionNorm!.Name], null, new Attention(Lin(c.Q), Lin(c.K), Lin(c.V), Lin(c.O), null), null, null, null, null, -1));
            T5FeedForwardModule f = block.FeedForward;
            sublayers.Add(new Sublayer(_byName[block.FeedForwardNorm.Name], null, null,
                f.Wi is null ? null : Lin(f.Wi), f.Wi0 is null ? null : Lin(f.Wi0), f.Wi1 is null ? null : Lin(f.Wi1), Lin(f.Wo), -1));
        }
        return new Stack(stack.IsDecoder, [.. sublayers], _byName[stack.FinalLayerNorm.Name], [.. owners]);
    }

    // ------------------------------------------------ LoRA

    private sealed record LoraState(LoraConfig Config, IReadOnlyList<string> Modules);

    /// <summary>
    /// Attaches <paramref name="adapter"/> (PEFT's LoRA): each adapted Linear computes y = x·Wᵀ + (x·Aᵀ·Bᵀ)·scale with
    /// scale = lora_alpha / r (or / √r with use_rslora). The whole base is frozen (no gradient is computed or kept for
    /// it) and the adapter's A/B, copied into new parameters named "base_model.model.&lt;module&gt;.lora_A.weight" /
    /// "lora_B.weight", become <see cref="TrainableParameters"/>. While training, the adapter's input is dropped out with
    /// probability lora_dropout (PEFT: y = x·Wᵀ + B(A(dropout(x)))·scale; the base Linear sees x undropped). A module the
    /// model lacks or whose shape differs is a <see cref="ModelLoadException"/> naming it.
    /// </summary>
    public void AttachLora(LoraAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        CheckLoraDropout(adapter.Config.LoraDropout);
        adapter.CheckFits(Modules, Config, adapter.Config.BaseModelNameOrPath is { } b ? $"adapter for {b}" : "adapter");
        AttachLoraCore([.. adapter.Modules.Select(m => (m.Module, m.A, m.B))], adapter.Config.R, adapter.Config.Scale, adapter.Config.LoraDropout);
        _lora = _lora! with { Config = adapter.Config };
    }

    /// <summary>The attached adapter's configuration (r, lora_alpha, lora_dropout, target_modules); null without one.</summary>
    public LoraConfig? LoraConfig => _lora?.Config;

    private static void CheckLoraDropout(double p)
    {
        if (!(p is >= 0 and < 1))
            throw new ArgumentException($"lora_dropout: {p} is not a probability below 1; give a number from 0 (no dropout) up to, not including, 1.", "lora_dropout");
    }

    /// <summary>The attached adapter's current A/B values as a <see cref="LoraAdapter"/> with the same config (copies).</summary>
    public LoraAdapter ExportLora()
    {
        if (_lora is null) throw new InvalidOperationException("No LoRA adapter is attached; call AttachLora first.");
        return new LoraAdapter(_lora.Config, _lora.Modules.Select(m =>
        {
            Linear l = _linears[m];
            return new LoraModule(m, l.In, l.Out, (float[])l.LoraA!.Value.Clone(), (float[])l.LoraB!.Value.Clone());
        }));
    }

    /// <summary>
    /// Puts LoRA on the named Linears (module paths as in HF, e.g. "encoder.block.0.layer.0.SelfAttention.q"):
    /// y = x·Wᵀ + (x·Aᵀ·Bᵀ)·<paramref name="scale"/>, A [r, in], B [out, r] (copied). Freezes the whole base; the A/B
    /// parameters ("base_model.model.&lt;module&gt;.lora_A.weight" / "lora_B.weight") become the only trainable ones.
    /// <paramref name="loraDropout"/> drops the adapters' input while training.
    /// </summary>
    internal void AttachLoraCore(IReadOnlyList<(string Module, float[] A, float[] B)> modules, int rank, float scale, double loraDropout = 0)
    {
        if (_lora is not null) throw new InvalidOperationException("A LoRA adapter is already attached to this model.");
        CheckLoraDropout(loraDropout);
        var loraParameters = new List<Parameter>();
        foreach ((string module, float[] a, float[] b) in modules)
        {
            if (!_linears.TryGetValue(module, out Linear? linear))
                throw new ArgumentException($"adapter: module '{module}' is not a Linear of this model (expected e.g. 'encoder.block.0.layer.0.SelfAttention.q').", "target_modules");
            if (a.Length != rank * linear.In || b.Length != linear.Out * rank)
                throw new ArgumentException($"adapter: module '{module}' has lora_A of {a.Length} and lora_B of {b.Length} values; r {rank} on [{linear.Out}, {linear.In}] needs {rank * linear.In} and {linear.Out * rank}.", "r");
            linear.LoraA = new Parameter($"base_model.model.{module}.lora_A.weight", [rank, linear.In], (float[])a.Clone());
            linear.LoraB = new Parameter($"base_model.model.{module}.lora_B.weight", [linear.Out, rank], (float[])b.Clone());
            linear.LoraScale = scale;
            loraParameters.Add(linear.LoraA);
            loraParameters.Add(linear.LoraB);
        }
        foreach (Parameter p in _parameters) p.SetTrainable(false);
        _parameters.AddRange(loraParameters);
        foreach (Parameter p in loraParameters) _byName.Add(p.Name, p);
        _trainable = loraParameters;
        _lora = new LoraState(new LoraConfig { R = rank, LoraAlpha = scale * rank, LoraDropout = loraDropout, TargetModules = [.. modules.Select(m => m.Module.Split('.')[^1]).Distinct()] },
            [.. modules.Select(m => m.Module)]);
        _shape = default;   // the LoRA buffers are sized with the next batch
    }

    /// <summary>The attached LoRA modules' current A and B values (in attach order).</summary>
    internal IReadOnlyList<(string Module, float[] A, float[] B)> LoraValues() =>
        _lora is null ? [] : [.. _lora.Modules.Select(m => (m, _linears[m].LoraA!.Value, _linears[m].LoraB!.Value))];
}
