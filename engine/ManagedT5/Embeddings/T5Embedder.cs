// The embedding entry point: a sentence-transformers T5 folder (sentence-t5, GTR) or a plain T5 / Flan-T5 folder, loaded
// once; texts in, one vector per text out. The pipeline is sentence-transformers': tokenize (</s> appended, truncated to
// max_seq_length), the T5 encoder, Pooling, then each Dense and Normalize in modules.json order.
using ManagedT5.Hub;
using ManagedT5.Kernels;
using ManagedT5.Loading;
using ManagedT5.Model;
using ManagedT5.Tokenizer;

namespace ManagedT5.Embeddings;

/// <summary>Options for <see cref="T5Embedder.Load"/>.</summary>
public sealed record T5EmbedderOptions
{
    /// <summary>"cpu" (default), "reference", "cuda", "opencl", "ilgpu-cpu" or "auto".</summary>
    public string Device { get; init; } = "cpu";
    /// <summary>CPU threads (0: all cores).</summary>
    public int Threads { get; init; }
    /// <summary>How the encoder's matrices are kept (null: as stored). The Dense modules stay fp32.</summary>
    public WeightFormat? WeightFormat { get; init; }
    /// <summary>How a hub id is looked up and downloaded; null: the HF_* environment defaults. Not used for a folder.</summary>
    public HubOptions? Hub { get; init; }
    /// <summary>Most tokens per text, &lt;/s&gt; included; longer texts are cut (and counted). Null: sentence_bert_config.json's
    /// max_seq_length, else 512 (T5's model_max_length).</summary>
    public int? MaxSeqLength { get; init; }
    /// <summary>Texts per encoder batch (texts are sorted by length so each batch pads little).</summary>
    public int BatchSize { get; init; } = 32;
    /// <summary>Null: L2-normalize when modules.json has a Normalize module. True: always normalize the final vector;
    /// false: never (the Normalize module is skipped).</summary>
    public bool? Normalize { get; init; }
}

/// <summary>Embeddings of a list of texts, in input order.</summary>
/// <param name="Embeddings">One vector of <see cref="T5Embedder.Dimension"/> floats per text.</param>
/// <param name="TokenCounts">Tokens the encoder saw per text (&lt;/s&gt; included, after truncation).</param>
/// <param name="TruncatedTexts">How many texts were longer than max_seq_length and cut.</param>
public sealed record EmbeddingBatchResult(float[][] Embeddings, int[] TokenCounts, int TruncatedTexts);

/// <summary>
/// A T5 encoder with sentence-transformers' pooling, Dense and Normalize modules. Thread-safe: one instance serves any
/// number of concurrent <see cref="Embed(IReadOnlyList{string}, CancellationToken)"/> calls. Dispose it to release the
/// weights.
/// </summary>
public sealed class T5Embedder : IDisposable
{
    private readonly Step[] _steps;    // after pooling, in modules.json order: a Dense, or null for Normalize
    private readonly bool _doLowerCase;
    private readonly int _batchSize;

    /// <summary>The encoder (an encoder-only model even when the folder holds a decoder too).</summary>
    public T5Model Model { get; }
    /// <summary>The tokenizer.</summary>
    public T5Tokenizer Tokenizer { get; }
    /// <summary>The pooling (mean for a plain T5 folder).</summary>
    public PoolingConfig Pooling { get; }
    /// <summary>The Dense modules, in order.</summary>
    public IReadOnlyList<DenseLayer> DenseLayers { get; }
    /// <summary>Whether the final vectors are L2-normalized (unit length: cosine similarity is their dot product).</summary>
    public bool Normalizes { get; }
    /// <summary>Width of each embedding.</summary>
    public int Dimension { get; }
    /// <summary>Most tokens per text, &lt;/s&gt; included.</summary>
    public int MaxSeqLength { get; }
    /// <summary>The folder or hub id it was loaded from, as given.</summary>
    public string ModelId { get; }
    /// <summary>Whether the folder is a sentence-transformers one (false: a plain T5 folder, encoder + mean pooling).</summary>
    public bool IsSentenceTransformers { get; }

    private sealed record Step(DenseLayer? Dense);

    private T5Embedder(string modelId, T5Model model, T5Tokenizer tokenizer, SentenceTransformerFolder folder, PoolingConfig pooling,
        Step[] steps, int maxSeqLength, int batchSize)
    {
        ModelId = modelId;
        Model = model;
        Tokenizer = tokenizer;
        Pooling = pooling;
        _steps = steps;
        _doLowerCase = folder.DoLowerCase;
        _batchSize = batchSize;
        IsSentenceTransformers = folder.IsSentenceTransformers;
        DenseLayers = steps.Where(s => s.Dense is not null).Select(s => s.Dense!).ToArray();
        Normalizes = steps.Any(s => s.Dense is null);
        Dimension = DenseLayers.Count > 0 ? DenseLayers[^1].OutFeatures : pooling.OutputDimension;
        MaxSeqLength = maxSeqLength;
    }

    /// <summary>
    /// Loads an embedder from a folder (sentence-transformers layout with modules.json, or a plain T5 / Flan-T5 folder)
    /// or a hub id. A download blocks this thread; <see cref="LoadAsync"/> does not.
    /// </summary>
    /// <exception cref="ModelLoadException">A missing or bad folder, modules.json, module config or weights.</exception>
    /// <exception cref="HubException">A hub id that is not here and could not be downloaded.</exception>
    /// <exception cref="ArgumentException">Bad options (ParamName is the option's snake_case name).</exception>
    public static T5Embedder Load(string modelOrHubId, T5EmbedderOptions? options = null)
    {
        options ??= new T5EmbedderOptions();
        Validate(options);
        string? folder = LocalFolder(modelOrHubId);
        bool hub = folder is null;
        folder ??= Resolve(() => ModelLocator.ResolveAsync(modelOrHubId, options.Hub, null, CancellationToken.None), modelOrHubId)
            .GetAwaiter().GetResult();
        return LoadFolder(modelOrHubId, folder, hub, options);
    }

    /// <summary><see cref="Load"/> without blocking a thread while a hub id downloads; the model is read on the thread pool.</summary>
    public static async Task<T5Embedder> LoadAsync(string modelOrHubId, T5EmbedderOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new T5EmbedderOptions();
        Validate(options);
        cancellationToken.ThrowIfCancellationRequested();
        string? folder = LocalFolder(modelOrHubId);
        bool hub = folder is null;
        folder ??= await Resolve(() => ModelLocator.ResolveAsync(modelOrHubId, options.Hub, null, cancellationToken), modelOrHubId)
            .ConfigureAwait(false);
        return await Task.Run(() => LoadFolder(modelOrHubId, folder, hub, options), cancellationToken).ConfigureAwait(false);
    }

    private static async Task<string> Resolve(Func<Task<string>> resolve, string modelOrHubId)
    {
        try
        {
            return await resolve().ConfigureAwait(false);
        }
        catch (DirectoryNotFoundException e)
        {
            throw new ModelLoadException($"Model folder '{modelOrHubId}' does not exist. Give a sentence-transformers folder (modules.json), " +
                                         "a T5 folder (config.json, model.safetensors, spiece.model) or a hub id.", modelOrHubId, e);
        }
    }

    private static void Validate(T5EmbedderOptions options)
    {
        if (options.BatchSize < 1)
            throw new ArgumentException($"batch_size: {options.BatchSize} is not a batch size; give 1 or more texts per batch.", "batch_size");
        if (options.MaxSeqLength is < 1)
            throw new ArgumentException($"max_seq_length: {options.MaxSeqLength} is not a length; give 1 or more tokens (</s> included).", "max_seq_length");
    }

    private static string? LocalFolder(string modelOrHubId)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelOrHubId);
        if (File.Exists(modelOrHubId))
            throw new ModelLoadException($"'{modelOrHubId}' is a file, not a model folder. Give the folder that holds modules.json (or " +
                                         "config.json, model.safetensors and spiece.model), or a hub id.", modelOrHubId);
        return Directory.Exists(modelOrHubId) ? modelOrHubId : null;
    }

    private static T5Embedder LoadFolder(string modelId, string root, bool fromHub, T5EmbedderOptions options)
    {
        SentenceTransformerFolder folder = SentenceTransformerFolder.Open(root);
        string dir = folder.TransformerFolder;
        T5Config config = T5Config.Load(Path.Combine(dir, "config.json"));
        if (fromHub && !folder.IsSentenceTransformers && config.IsEncoderOnly)
            // The hub client fetches config, tokenizer and weights only; a T5EncoderModel repository is almost always a
            // sentence-transformers model whose pooling and Dense would be missing: refuse rather than embed wrongly.
            throw new ModelLoadException(
                $"'{modelId}' is an encoder-only checkpoint (T5EncoderModel) but its modules.json, pooling and Dense folders were not " +
                $"downloaded (the hub client fetches the transformer files only). Download the whole repository (huggingface-cli download " +
                $"{modelId} --local-dir DIR) and pass DIR.", root);

        T5Tokenizer tokenizer;
        try { tokenizer = T5Tokenizer.FromDirectory(dir); }
        catch (TokenizerException e) { throw new ModelLoadException(e.Message, e.Path ?? dir, e); }
        if (tokenizer.EosId < 0)
            throw new ModelLoadException($"The tokenizer '{tokenizer.SourcePath}' has no </s> piece, which ends every T5 input. " +
                                         "Use the tokenizer that came with the model.", tokenizer.SourcePath);

        IBackend backend = BackendFactory.Create(options.Device, options.Threads);
        T5Model? model = null;
        try
        {
            Checkpoint checkpoint = Checkpoint.Open(dir);
            try
            {
                // Only the encoder is bound: a full T5ForConditionalGeneration's decoder tensors are left unread.
                model = T5Model.FromCheckpoint(config with { IsEncoderOnly = true }, checkpoint, backend,
                    new T5ModelOptions { WeightFormat = options.WeightFormat }, ownsBackend: true);
            }
            catch
            {
                checkpoint.Dispose();
                throw;
            }

            PoolingConfig? pooling = null;
            var steps = new List<Step>();
            int width = config.DModel;
            foreach (SentenceModule m in folder.Modules)
            {
                switch (m.Kind)
                {
                    case SentenceModuleKind.Pooling when !folder.IsSentenceTransformers:
                        pooling = PoolingConfig.Mean(config.DModel);
                        break;
                    case SentenceModuleKind.Pooling:
                        if (pooling is not null)
                            throw new ModelLoadException($"'{Path.Combine(root, SentenceTransformerFolder.ModulesFile)}': entry {m.Index} is a " +
                                                         "second Pooling module; a T5 embedder pools once.", root);
                        pooling = PoolingConfig.Load(m.Folder);
                        string poolingPath = Path.Combine(m.Folder, PoolingConfig.FileName);
                        if (pooling.WordEmbeddingDimension != config.DModel)
                            throw new ModelLoadException($"'{poolingPath}': word_embedding_dimension is {pooling.WordEmbeddingDimension}, but the " +
                                                         $"model's d_model is {config.DModel}; the pooling module does not belong to this model.", poolingPath);
                        width = pooling.OutputDimension;
                        break;
                    case SentenceModuleKind.Dense:
                        DenseLayer dense = DenseLayer.Load(m.Folder, width);
                        steps.Add(new Step(dense));
                        width = dense.OutFeatures;
                        break;
                    case SentenceModuleKind.Normalize:
                        if (options.Normalize != false) steps.Add(new Step(null));
                        break;
                }
            }
            if (options.Normalize == true && (steps.Count == 0 || steps[^1].Dense is not null)) steps.Add(new Step(null));
            int maxSeqLength = options.MaxSeqLength ?? folder.MaxSeqLength ?? SentenceTransformerFolder.DefaultMaxSeqLength;
            return new T5Embedder(modelId, model, tokenizer, folder, pooling!, [.. steps], maxSeqLength, options.BatchSize);
        }
        catch
        {
            if (model is not null) model.Dispose();
            else backend.Dispose();
            throw;
        }
    }

    /// <summary>Embeds <paramref name="texts"/> (any number; batched by <see cref="T5EmbedderOptions.BatchSize"/>).</summary>
    /// <exception cref="ArgumentException">An empty list or a null text (ParamName "texts").</exception>
    public EmbeddingBatchResult Embed(IReadOnlyList<string> texts, CancellationToken cancellationToken = default) =>
        Embed(texts, null, cancellationToken);

    /// <summary><see cref="Embed(IReadOnlyList{string}, CancellationToken)"/>, reporting the number of texts done after
    /// each batch to <paramref name="progress"/>.</summary>
    public EmbeddingBatchResult Embed(IReadOnlyList<string> texts, IProgress<int>? progress, CancellationToken cancellationToken = default)
    {
        var (ids, truncated) = Tokenize(texts);
        float[][] embeddings = Run(ids, progress, cancellationToken, pooledOut: null);
        return new EmbeddingBatchResult(embeddings, ids.Select(r => r.Length).ToArray(), truncated);
    }

    /// <summary>Embeds on the thread pool.</summary>
    public Task<EmbeddingBatchResult> EmbedAsync(IReadOnlyList<string> texts, CancellationToken cancellationToken = default) =>
        Task.Run(() => Embed(texts, null, cancellationToken), cancellationToken);

    /// <summary>
    /// The token ids the encoder sees for each text: special-token spellings ("&lt;/s&gt;", "&lt;extra_id_0&gt;") as plain
    /// text, &lt;/s&gt; appended, and a text longer than <see cref="MaxSeqLength"/> cut to its first MaxSeqLength - 1 tokens
    /// and &lt;/s&gt; (HF's truncation); returns how many were cut.
    /// </summary>
    public (int[][] Ids, int Truncated) Tokenize(IReadOnlyList<string> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (texts.Count == 0) throw new ArgumentException("texts: the list is empty; give at least one text to embed.", "texts");
        var ids = new int[texts.Count][];
        int truncated = 0;
        for (int i = 0; i < texts.Count; i++)
        {
            string text = texts[i] ?? throw new ArgumentException($"texts: text {i} is null; give a string (it may be empty).", "texts");
            if (_doLowerCase) text = text.ToLowerInvariant();
            int[] row = Tokenizer.Encode(text, addEos: true, parseSpecialTokens: false);
            if (row.Length > MaxSeqLength)
            {
                row = [.. row.AsSpan(0, MaxSeqLength - 1), Tokenizer.EosId];
                truncated++;
            }
            ids[i] = row;
        }
        return (ids, truncated);
    }

    /// <summary>Token ids to embeddings, in input order. Rows are sorted longest first and encoded
    /// <see cref="T5EmbedderOptions.BatchSize"/> at a time, each batch right-padded to its longest row.
    /// <paramref name="pooledOut"/>, when given, receives each row's pooled vector (before Dense and Normalize).</summary>
    internal float[][] Run(int[][] ids, IProgress<int>? progress, CancellationToken cancellationToken, float[][]? pooledOut)
    {
        int n = ids.Length, d = Model.Config.DModel, pooledWidth = Pooling.OutputDimension;
        int[] order = Enumerable.Range(0, n).OrderByDescending(i => ids[i].Length).ThenBy(i => i).ToArray();
        var results = new float[n][];
        for (int start = 0; start < n; start += _batchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int batch = Math.Min(_batchSize, n - start);
            int seq = ids[order[start]].Length;                                          // longest first
            var input = new int[batch * seq];                                            // [batch, seq], padded with <pad> = 0
            var mask = new int[batch * seq];
            for (int b = 0; b < batch; b++)
            {
                int[] row = ids[order[start + b]];
                row.CopyTo(input, b * seq);
                mask.AsSpan(b * seq, row.Length).Fill(1);
            }
            var hidden = new float[batch * seq * d];                                     // last_hidden_state: [batch, seq, d_model]
            using (EncoderOutput encoded = Model.Encode(input, mask, batch))
                Model.Backend.Download(encoded.Hidden, hidden);
            var pooled = new float[batch * pooledWidth];                                 // [batch, pooled width]
            Embeddings.Pooling.Pool(Pooling, hidden, mask, batch, seq, pooled);
            float[] x = pooled;
            int width = pooledWidth;
            foreach (Step step in _steps)
            {
                if (step.Dense is DenseLayer dense)
                {
                    var y = new float[batch * dense.OutFeatures];                        // [batch, out_features]
                    dense.Forward(x, y, batch);
                    (x, width) = (y, dense.OutFeatures);
                }
                else
                {
                    for (int b = 0; b < batch; b++) NormalizeL2(x.AsSpan(b * width, width));
                }
            }
            for (int b = 0; b < batch; b++)
            {
                int i = order[start + b];
                results[i] = x.AsSpan(b * width, width).ToArray();
                if (pooledOut is not null) pooledOut[i] = pooled.AsSpan(b * pooledWidth, pooledWidth).ToArray();
            }
            progress?.Report(start + batch);
        }
        return results;
    }

    /// <summary>torch.nn.functional.normalize(p=2): x / max(||x||, 1e-12).</summary>
    internal static void NormalizeL2(Span<float> x)
    {
        float norm = System.Numerics.Tensors.TensorPrimitives.Norm(x);
        System.Numerics.Tensors.TensorPrimitives.Divide(x, Math.Max(norm, 1e-12f), x);
    }

    /// <summary>Cosine similarity of two vectors (0 when either is all zeros).</summary>
    public static float Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"Vectors of {a.Length} and {b.Length} values have no cosine.", nameof(b));
        float na = System.Numerics.Tensors.TensorPrimitives.Norm(a), nb = System.Numerics.Tensors.TensorPrimitives.Norm(b);
        return na == 0 || nb == 0 ? 0 : System.Numerics.Tensors.TensorPrimitives.Dot(a, b) / (na * nb);
    }

    /// <inheritdoc />
    public void Dispose() => Model.Dispose();
}
