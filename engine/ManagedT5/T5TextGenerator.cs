// The public entry point: load a model (a folder or a hub id) once, then generate text for prompts — one, a batch,
// async, streamed.
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using ManagedT5.Adapters;
using ManagedT5.Generation;
using ManagedT5.Hub;
using ManagedT5.Kernels;
using ManagedT5.Model;
using ManagedT5.Tokenizer;

namespace ManagedT5;

/// <summary>Options for <see cref="T5TextGenerator.Load"/> and <see cref="T5TextGenerator.LoadAsync"/>.</summary>
public sealed record T5LoadOptions
{
    /// <summary>"cpu" (default), "reference", "cuda", "opencl", "ilgpu-cpu" or "auto".</summary>
    public string Device { get; init; } = "cpu";
    /// <summary>CPU threads (0: all cores).</summary>
    public int Threads { get; init; }
    /// <summary>How matrices are kept in memory (null: as stored). BF16 halves and Int8 quarters an F32 model.
    /// The enum is <c>ManagedT5.Kernels.WeightFormat</c> (<c>using ManagedT5.Kernels;</c>).</summary>
    public WeightFormat? WeightFormat { get; init; }
    /// <summary>How a hub id is looked up and downloaded (cache folder, offline mode, token, endpoint); null: the
    /// defaults, read from the HF_* environment variables as huggingface_hub does. Not used for a folder.</summary>
    public HubOptions? Hub { get; init; }
    /// <summary>Which HuggingFace tokenizer prompts are encoded like: <see cref="TokenizerCompat.Slow"/> (default, the
    /// SentencePiece the models were trained with) or <see cref="TokenizerCompat.Fast"/> (tokenizer.json, what
    /// AutoTokenizer returns; for a model fine-tuned through it).</summary>
    public TokenizerCompat TokenizerCompat { get; init; }
    /// <summary>A LoRA adapter folder in HF PEFT's format (adapter_config.json + adapter_model.safetensors) merged into
    /// the weights at load: each Linear it targets becomes W + scale·(B·A), computed in f32 before the conversion to
    /// <see cref="WeightFormat"/>. Null: none. To keep several adapters apart on one base model instead, load without
    /// one and call <see cref="T5TextGenerator.AddAdapter"/> for each.</summary>
    public string? Adapter { get; init; }
}

/// <summary>One generated text.</summary>
/// <param name="Text">Decoded text, special tokens skipped.</param>
/// <param name="TokenIds">Generated ids in HF's layout (decoder start token first).</param>
/// <param name="Score">Beam search: the length-penalised log-probability; null otherwise.</param>
public sealed record GenerationResult(string Text, int[] TokenIds, float? Score);

/// <summary>
/// A loaded T5 / Flan-T5 model with its tokenizer. Thread-safe: one instance serves concurrent requests, each of
/// which owns its decoding state. Dispose it to release the weights.
/// </summary>
public sealed class T5TextGenerator : IDisposable
{
    /// <summary>The model.</summary>
    public T5Model Model { get; }
    /// <summary>The tokenizer.</summary>
    public T5Tokenizer Tokenizer { get; }
    /// <summary>Defaults read from generation_config.json.</summary>
    public GenerationOptions DefaultOptions { get; }

    private readonly T5TextGenerator? _parent;                          // set on an adapter's generator: its owner
    private readonly ConcurrentDictionary<string, T5TextGenerator> _adapters = new(StringComparer.Ordinal);
    private readonly Lock _adding = new();

    private T5TextGenerator(T5Model model, T5Tokenizer tokenizer, GenerationOptions defaults, T5TextGenerator? parent = null)
    {
        Model = model;
        Tokenizer = tokenizer;
        DefaultOptions = defaults;
        _parent = parent;
    }

    /// <summary>
    /// Adds a LoRA adapter (a PEFT folder) under <paramref name="name"/>, kept apart from the base model: only the Linears
    /// it targets are copied and merged (W + scale·(B·A), in the base's weight format); every other weight is shared
    /// (<see cref="T5Model.WithAdapter"/>). Returns the adapter's generator, which <see cref="ForAdapter"/> also gives:
    /// requests on it use the adapter, requests here the base model, and any of them may run at once. The adapters live
    /// until this generator is disposed.
    /// </summary>
    /// <exception cref="ModelLoadException">A bad adapter folder, or one that does not fit the model (named).</exception>
    /// <exception cref="ArgumentException">The name is empty or already used.</exception>
    public T5TextGenerator AddAdapter(string name, string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        if (_parent is not null)
            throw new InvalidOperationException("Adapters are added to the base model's generator, not to an adapter's.");
        LoraAdapter adapter = LoraAdapter.Load(directory);
        lock (_adding)
        {
            if (_adapters.ContainsKey(name))
                throw new ArgumentException($"adapter: an adapter named '{name}' is already added; choose another name.", "adapter");
            var generator = new T5TextGenerator(Model.WithAdapter(adapter), Tokenizer, DefaultOptions, this);
            _adapters[name] = generator;
            return generator;
        }
    }

    /// <summary>The names of the adapters added with <see cref="AddAdapter"/>.</summary>
    public IReadOnlyCollection<string> AdapterNames => (IReadOnlyCollection<string>)_adapters.Keys;

    /// <summary>The generator whose requests use the adapter added as <paramref name="name"/>; null gives this one (the
    /// base model). Cheap: pick one per request.</summary>
    /// <exception cref="ArgumentException">No adapter has that name (ParamName "adapter").</exception>
    public T5TextGenerator ForAdapter(string? name)
    {
        if (name is null) return _parent ?? this;
        T5TextGenerator owner = _parent ?? this;
        return owner._adapters.TryGetValue(name, out T5TextGenerator? g) ? g
            : throw new ArgumentException($"adapter: no adapter is named '{name}'" +
                (owner._adapters.IsEmpty ? "; none was added." : $"; added: {string.Join(", ", owner._adapters.Keys.Order(StringComparer.Ordinal))}."), "adapter");
    }

    /// <summary>
    /// Loads a model: a folder holding config.json, safetensors weights and spiece.model or tokenizer.json, or a hub id
    /// such as <c>google/flan-t5-small</c>, which is found (or downloaded) by <see cref="ModelLocator.Resolve"/> with
    /// <see cref="T5LoadOptions.Hub"/>. A download blocks this thread; <see cref="LoadAsync"/> does not.
    /// </summary>
    /// <exception cref="ModelLoadException">The folder is missing, is a file, or holds a bad model.</exception>
    /// <exception cref="HubException">A hub id that is not on this machine and could not be downloaded (or offline mode is on).</exception>
    /// <exception cref="ArgumentException">A string that is neither a folder nor a hub id, or bad options.</exception>
    public static T5TextGenerator Load(string modelOrHubId, T5LoadOptions? options = null)
    {
        options ??= new T5LoadOptions();
        string folder = LocalFolder(modelOrHubId) ?? Resolve(modelOrHubId, options, null, CancellationToken.None).GetAwaiter().GetResult();
        return LoadFolder(folder, options);
    }

    /// <summary>
    /// <see cref="Load"/> without blocking a thread while a hub id is downloaded; <paramref name="progress"/> hears of
    /// each file's bytes. The model itself is read on the thread pool.
    /// </summary>
    public static async Task<T5TextGenerator> LoadAsync(string modelOrHubId, T5LoadOptions? options = null,
        IProgress<DownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new T5LoadOptions();
        cancellationToken.ThrowIfCancellationRequested();
        string folder = LocalFolder(modelOrHubId) ?? await Resolve(modelOrHubId, options, progress, cancellationToken).ConfigureAwait(false);
        return await Task.Run(() => LoadFolder(folder, options), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>An existing folder as given; null for anything the hub locator should look up. A file is refused here,
    /// because a file name such as model.safetensors would otherwise pass for a hub id.</summary>
    private static string? LocalFolder(string modelOrHubId)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelOrHubId);
        if (File.Exists(modelOrHubId))
            throw new ModelLoadException(
                $"'{modelOrHubId}' is a file, not a model folder. Give the folder that holds config.json, model.safetensors and " +
                "spiece.model, or a hub id such as google/flan-t5-small.", modelOrHubId);
        return Directory.Exists(modelOrHubId) ? modelOrHubId : null;
    }

    private static async Task<string> Resolve(string modelOrHubId, T5LoadOptions options, IProgress<DownloadProgress>? progress,
        CancellationToken cancellationToken)
    {
        try
        {
            return await ModelLocator.ResolveAsync(modelOrHubId, options.Hub, progress, cancellationToken).ConfigureAwait(false);
        }
        catch (DirectoryNotFoundException e)
        {
            throw new ModelLoadException(
                $"Model folder '{modelOrHubId}' does not exist. Give a folder with config.json, model.safetensors and spiece.model, " +
                "or a hub id such as google/flan-t5-small.", modelOrHubId, e);
        }
    }

    private static T5TextGenerator LoadFolder(string modelDirectory, T5LoadOptions options)
    {
        T5Tokenizer tokenizer;
        try { tokenizer = T5Tokenizer.FromDirectory(modelDirectory).WithCompat(options.TokenizerCompat); }
        catch (TokenizerException e) { throw new ModelLoadException(e.Message, e.Path ?? modelDirectory, e); }
        // Any unigram SentencePiece model loads as a tokenizer; the T5 model needs T5's <pad> (decoder start) and </s>.
        if (tokenizer.PadId < 0 || tokenizer.EosId < 0)
            throw new ModelLoadException(
                $"The tokenizer '{tokenizer.SourcePath}' has no {(tokenizer.PadId < 0 ? "<pad>" : "</s>")} piece, which a T5 model needs " +
                "(<pad> starts decoding and pads batches, </s> ends the input). Use the tokenizer that came with the model.",
                tokenizer.SourcePath);
        IBackend backend = BackendFactory.Create(options.Device, options.Threads);
        try
        {
            LoraAdapter? adapter = options.Adapter is null ? null : LoraAdapter.Load(options.Adapter);
            T5Model model = T5Model.Load(modelDirectory, backend,
                new T5ModelOptions { WeightFormat = options.WeightFormat, Adapter = adapter }, ownsBackend: true);
            var defaults = GenerationOptions.FromGenerationConfig(Path.Combine(modelDirectory, "generation_config.json"));
            return new T5TextGenerator(model, tokenizer, defaults);
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }

    /// <summary>Generates for one prompt.</summary>
    public GenerationResult Generate(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default) =>
        Generate([prompt], options, cancellationToken)[0];

    /// <summary>Generates for a batch of prompts (one forward batch). With num_return_sequences &gt; 1, results are
    /// prompt-major.</summary>
    public IReadOnlyList<GenerationResult> Generate(IReadOnlyList<string> prompts, GenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        GenerationOutput output = Generator.Generate(Model, Encode(prompts), options ?? DefaultOptions, cancellationToken);
        return ToResults(output);
    }

    /// <summary>Generates from token ids (each prompt should end with EOS, id 1).</summary>
    public GenerationOutput GenerateIds(IReadOnlyList<int[]> inputIds, GenerationOptions? options = null,
        CancellationToken cancellationToken = default) =>
        Generator.Generate(Model, inputIds, options ?? DefaultOptions, cancellationToken);

    /// <summary>Generates on the thread pool.</summary>
    public Task<GenerationResult> GenerateAsync(string prompt, GenerationOptions? options = null,
        CancellationToken cancellationToken = default) =>
        Task.Run(() => Generate(prompt, options, cancellationToken), cancellationToken);

    /// <summary>Generates a batch on the thread pool.</summary>
    public Task<IReadOnlyList<GenerationResult>> GenerateAsync(IReadOnlyList<string> prompts, GenerationOptions? options = null,
        CancellationToken cancellationToken = default) =>
        Task.Run(() => Generate(prompts, options, cancellationToken), cancellationToken);

    /// <summary>
    /// Streams the text of one prompt as tokens are produced (greedy search or sampling). Each piece is the new text
    /// since the previous one; a character is never emitted half-made.
    /// </summary>
    public async IAsyncEnumerable<string> StreamAsync(string prompt, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await foreach (string piece in StreamAsync(Encode([prompt])[0], options, cancellationToken).ConfigureAwait(false))
            yield return piece;
    }

    /// <summary><see cref="StreamAsync(string, GenerationOptions?, CancellationToken)"/> for a prompt already encoded (ending
    /// with EOS), e.g. by <see cref="Encode(IReadOnlyList{string}, bool)"/> with special tokens as text.</summary>
    public async IAsyncEnumerable<string> StreamAsync(int[] ids, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ids);
        options ??= DefaultOptions;
        if (options.NumBeams > 1) throw new ArgumentException("num_beams: streaming needs greedy search or sampling (num_beams 1).", "num_beams");
        if (options.NumReturnSequences > 1) throw new ArgumentException("num_return_sequences: streaming yields one sequence.", "num_return_sequences");
        var channel = Channel.CreateUnbounded<int>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        Task producer = Task.Run(() =>
        {
            try
            {
                Generator.Generate(Model, [ids], options, cancellationToken, (_, token) => channel.Writer.TryWrite(token));
                channel.Writer.TryComplete();
            }
            catch (Exception e)
            {
                channel.Writer.TryComplete(e);
            }
        }, CancellationToken.None);

        var tokens = new List<int>();
        int emitted = 0;
        await foreach (int token in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            tokens.Add(token);
            string text = Tokenizer.Decode(tokens.ToArray());
            int end = text.Length;
            if (end > 0 && (char.IsHighSurrogate(text[end - 1]) || text[end - 1] == '\uFFFD')) end--;   // wait for the rest
            if (end > emitted)
            {
                yield return text[emitted..end];
                emitted = end;
            }
        }
        await producer.ConfigureAwait(false);
    }

    /// <summary>Tokenizes prompts the T5 way (EOS appended); an empty prompt is refused.</summary>
    public int[][] Encode(IReadOnlyList<string> prompts) => Encode(prompts, parseSpecialTokens: true);

    /// <summary>Tokenizes prompts the T5 way (EOS appended); with <paramref name="parseSpecialTokens"/> false, "&lt;/s&gt;",
    /// "&lt;pad&gt;", "&lt;extra_id_0&gt;" in them are plain text (for untrusted text: a user cannot end the prompt).</summary>
    public int[][] Encode(IReadOnlyList<string> prompts, bool parseSpecialTokens)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count == 0) throw new ArgumentException("The batch is empty: give at least one prompt.", nameof(prompts));
        var ids = new int[prompts.Count][];
        for (int i = 0; i < prompts.Count; i++)
        {
            if (string.IsNullOrWhiteSpace(prompts[i]))
                throw new ArgumentException($"Prompt {i} is empty; give some text.", nameof(prompts));
            ids[i] = Tokenizer.Encode(prompts[i], parseSpecialTokens: parseSpecialTokens);
        }
        return ids;
    }

    private GenerationResult[] ToResults(GenerationOutput output) =>
        output.Sequences.Select((s, i) => new GenerationResult(Tokenizer.Decode(s), s, output.SequencesScores?[i])).ToArray();

    /// <summary>Releases the weights: the base model's and every added adapter's. On an adapter's generator it does
    /// nothing (the base model's generator owns it).</summary>
    public void Dispose()
    {
        if (_parent is not null) return;
        foreach (T5TextGenerator adapter in _adapters.Values) adapter.Model.Dispose();
        _adapters.Clear();
        Model.Dispose();
    }
}
