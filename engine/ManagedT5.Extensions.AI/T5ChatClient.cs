// Microsoft.Extensions.AI's IChatClient over a loaded T5TextGenerator: messages become one prompt, ChatOptions become
// GenerationOptions, and the text comes back as one assistant message or as streamed updates.
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using ManagedT5.Generation;
using ManagedT5.Hub;
using Microsoft.Extensions.AI;

namespace ManagedT5.Extensions.AI;

/// <summary>
/// An <see cref="IChatClient"/> for a T5 / Flan-T5 model. T5 is not a chat model: it reads one text and writes one text.
/// <list type="bullet">
/// <item>Prompt: <see cref="ChatOptions.Instructions"/>, then every message's text in order (system, user and assistant
/// alike; roles are not written out, since Flan-T5 was tuned on plain instructions), joined with newlines. Messages
/// without text (tool calls, images) add nothing. See <see cref="BuildPrompt"/>. Special-token spellings in it
/// ("&lt;/s&gt;", "&lt;pad&gt;", "&lt;extra_id_0&gt;") are encoded as plain text, so message content cannot end the prompt.</item>
/// <item>Options: every <see cref="ChatOptions"/> property is honoured or refused with a
/// <see cref="NotSupportedException"/> naming it (tools, JSON output, OpenAI-style penalties, reasoning, conversations,
/// another model id, unknown AdditionalProperties keys); see <see cref="CreateGenerationOptions"/>.</item>
/// <item>Stop sequences: generation itself does not stop at them, but the text is cut at the first one (a streamed
/// response ends there and the generation is cancelled).</item>
/// </list>
/// Thread-safe as the generator is; concurrent requests each own their decoding state.
/// </summary>
public sealed class T5ChatClient : IChatClient
{
    /// <summary>The name in <see cref="ChatClientMetadata.ProviderName"/>.</summary>
    public const string ProviderName = "ManagedT5";

    private readonly bool _ownsGenerator;

    /// <summary>Wraps a loaded generator.</summary>
    /// <param name="generator">The model and tokenizer.</param>
    /// <param name="modelId">Reported as <see cref="ChatClientMetadata.DefaultModelId"/> and <see cref="ChatResponse.ModelId"/>.</param>
    /// <param name="ownsGenerator">Dispose the generator with this client.</param>
    public T5ChatClient(T5TextGenerator generator, string? modelId = null, bool ownsGenerator = false)
    {
        ArgumentNullException.ThrowIfNull(generator);
        Generator = generator;
        ModelId = modelId;
        _ownsGenerator = ownsGenerator;
        Metadata = new ChatClientMetadata(ProviderName, null, modelId);
    }

    /// <summary>Loads a model folder or hub id into a client that owns the generator, through
    /// <see cref="T5TextGenerator.Load"/> (hub ids are found or downloaded with <see cref="T5LoadOptions.Hub"/>); the model
    /// id is <paramref name="modelOrHubId"/>.</summary>
    public static T5ChatClient Load(string modelOrHubId, T5LoadOptions? options = null) =>
        new(T5TextGenerator.Load(modelOrHubId, options), modelOrHubId, ownsGenerator: true);

    /// <summary><see cref="Load"/> without blocking a thread while a hub id is downloaded (<see cref="T5TextGenerator.LoadAsync"/>).</summary>
    public static async Task<T5ChatClient> LoadAsync(string modelOrHubId, T5LoadOptions? options = null,
        IProgress<DownloadProgress>? progress = null, CancellationToken cancellationToken = default) =>
        new(await T5TextGenerator.LoadAsync(modelOrHubId, options, progress, cancellationToken).ConfigureAwait(false), modelOrHubId,
            ownsGenerator: true);

    /// <summary>The wrapped generator.</summary>
    public T5TextGenerator Generator { get; }

    /// <summary>The model id given at construction, if any.</summary>
    public string? ModelId { get; }

    /// <summary>Provider "ManagedT5", no URI, the model id.</summary>
    public ChatClientMetadata Metadata { get; }

    /// <inheritdoc />
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        string prompt = BuildPrompt(messages, options?.Instructions);
        GenerationOptions generation = CreateGenerationOptions(options);
        int[] ids = EncodePrompt(prompt);
        GenerationOutput output = await Task.Run(() => Generator.GenerateIds([ids], generation, cancellationToken), cancellationToken)
            .ConfigureAwait(false);
        var result = new GenerationResult(Generator.Tokenizer.Decode(output.Sequences[0]), output.Sequences[0], output.SequencesScores?[0]);

        int eos = generation.EosTokenId ?? Generator.Model.Config.EosTokenId;
        ChatFinishReason finish = result.TokenIds.Length > 0 && result.TokenIds[^1] == eos ? ChatFinishReason.Stop : ChatFinishReason.Length;
        string text = result.Text;
        if (StopAt(text, options?.StopSequences) is int cut)
        {
            text = text[..cut];
            finish = ChatFinishReason.Stop;
        }
        int inputTokens = ids.Length;
        int outputTokens = Math.Max(0, result.TokenIds.Length - 1);   // the decoder start token is not generated
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, text) { MessageId = NewId() })
        {
            ResponseId = NewId(),
            ModelId = ModelId,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = finish,
            Usage = new UsageDetails { InputTokenCount = inputTokens, OutputTokenCount = outputTokens, TotalTokenCount = inputTokens + outputTokens },
            RawRepresentation = result,
        };
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages,
        ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        string prompt = BuildPrompt(messages, options?.Instructions);
        GenerationOptions generation = CreateGenerationOptions(options);
        IList<string>? stops = options?.StopSequences is { Count: > 0 } s ? s.Where(x => x.Length > 0).ToList() : null;
        string responseId = NewId(), messageId = NewId();
        DateTimeOffset created = DateTimeOffset.UtcNow;
        ChatResponseUpdate Update(string? text) =>
            new(ChatRole.Assistant, text) { ResponseId = responseId, MessageId = messageId, ModelId = ModelId, CreatedAt = created };

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);   // ends generation at a stop sequence
        var pending = new StringBuilder();   // text held back while it could be the start of a stop sequence
        await foreach (string piece in Generator.StreamAsync(EncodePrompt(prompt), generation, stop.Token).ConfigureAwait(false))
        {
            if (stops is null)
            {
                yield return Update(piece);
                continue;
            }
            pending.Append(piece);
            string text = pending.ToString();
            if (StopAt(text, stops) is int cut)
            {
                stop.Cancel();
                if (cut > 0) yield return Update(text[..cut]);
                yield return new ChatResponseUpdate { ResponseId = responseId, MessageId = messageId, ModelId = ModelId, CreatedAt = created,
                    Role = ChatRole.Assistant, FinishReason = ChatFinishReason.Stop };
                yield break;
            }
            int safe = text.Length - HeldBack(text, stops);
            if (safe > 0)
            {
                yield return Update(text[..safe]);
                pending.Remove(0, safe);
            }
        }
        if (pending.Length > 0) yield return Update(pending.ToString());
    }

    /// <summary>The prompt's ids with special-token spellings as plain text: message content is untrusted, and a user who
    /// types "&lt;/s&gt;" must not end the prompt early.</summary>
    private int[] EncodePrompt(string prompt) => Generator.Encode([prompt], parseSpecialTokens: false)[0];

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return Metadata;
        if (serviceType == typeof(T5TextGenerator)) return Generator;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Disposes the generator when this client owns it.</summary>
    public void Dispose()
    {
        if (_ownsGenerator) Generator.Dispose();
    }

    /// <summary>
    /// The one text T5 reads: <paramref name="instructions"/> (if any), then each message's text in order, joined with
    /// newlines. Messages without text are skipped; no text at all is an <see cref="ArgumentException"/>.
    /// </summary>
    public static string BuildPrompt(IEnumerable<ChatMessage> messages, string? instructions = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var parts = new List<string>();
        if (!string.IsNullOrWhiteSpace(instructions)) parts.Add(instructions.Trim());
        foreach (ChatMessage message in messages)
        {
            string text = message.Text;
            if (!string.IsNullOrWhiteSpace(text)) parts.Add(text.Trim());
        }
        if (parts.Count == 0)
            throw new ArgumentException("The messages hold no text: give T5 a prompt, e.g. a user message " +
                                        "\"Translate English to German: How old are you?\".", nameof(messages));
        return string.Join('\n', parts);
    }

    /// <summary>The HF generation options that <see cref="ChatOptions.AdditionalProperties"/> may carry, by their names in
    /// generation_config.json: every HF option of <see cref="GenerationOptionTable"/> but those a <see cref="ChatOptions"/>
    /// property sets (max_new_tokens, temperature, top_k, top_p, seed) and num_return_sequences (a response is one
    /// message). Any other key is refused.</summary>
    public static IReadOnlyList<string> AdditionalPropertyNames { get; } = GenerationOptionTable.All
        .Where(o => o.IsHf && o.Name is not ("max_new_tokens" or "temperature" or "top_k" or "top_p" or "seed" or "num_return_sequences"))
        .Select(o => o.Name).ToArray();

    /// <summary>
    /// <see cref="ChatOptions"/> as <see cref="GenerationOptions"/>, starting from the model's generation_config.json
    /// (or from the <see cref="GenerationOptions"/> that <see cref="ChatOptions.RawRepresentationFactory"/> returns).
    /// Honoured:
    /// <list type="bullet">
    /// <item>MaxOutputTokens → max_new_tokens.</item>
    /// <item>Temperature &gt; 0 → sampling at that temperature; Temperature 0 → greedy, whatever else is set.</item>
    /// <item>TopP → top_p, TopK → top_k; either turns sampling on (unless Temperature is 0).</item>
    /// <item>Seed → seed (it matters only when sampling).</item>
    /// <item>AdditionalProperties with HF names (<see cref="AdditionalPropertyNames"/>: num_beams, length_penalty,
    /// early_stopping, do_sample, repetition_penalty, no_repeat_ngram_size, max_length, min_length, min_new_tokens and the
    /// token ids), typed as <see cref="GenerationOptionInfo.TryConvert"/> takes them: integers, numbers, bools,
    /// early_stopping true, false or "never", or <see cref="JsonElement"/>s of those. A value of the wrong type is an
    /// <see cref="ArgumentException"/> naming the key.</item>
    /// <item>Instructions and StopSequences: by the request (the prompt; the text is cut at a stop sequence).</item>
    /// <item>ModelId: equal to this client's <see cref="ModelId"/>, or null.</item>
    /// <item>ToolMode None or Auto with no tools, ResponseFormat Text, FrequencyPenalty and PresencePenalty 0, Reasoning
    /// with effort and output None: what T5 does anyway. AllowMultipleToolCalls: no tool is ever called.
    /// AllowBackgroundResponses: every response is complete when returned, so there is never a continuation token.</item>
    /// </list>
    /// Refused with a <see cref="NotSupportedException"/> that names the option: Tools (any), ToolMode RequireAny or
    /// RequireSpecific, ResponseFormat Json (with or without a schema), a non-zero FrequencyPenalty or PresencePenalty
    /// (OpenAI's additive penalties; HF's repetition_penalty is the one T5 has), Reasoning effort or output,
    /// ConversationId, ContinuationToken, another ModelId, an AdditionalProperties key not in
    /// <see cref="AdditionalPropertyNames"/>, a RawRepresentationFactory result that is not a <see cref="GenerationOptions"/>.
    /// Values out of range surface as the generator's <see cref="ArgumentException"/> naming the option.
    /// </summary>
    public GenerationOptions CreateGenerationOptions(ChatOptions? options)
    {
        if (options is null) return Generator.DefaultOptions;
        RefuseUnsupported(options);
        GenerationOptions o = options.RawRepresentationFactory?.Invoke(this) switch
        {
            null => Generator.DefaultOptions,
            GenerationOptions raw => raw,
            object other => throw Unsupported("RawRepresentationFactory",
                $"it returned a {other.GetType().FullName}; T5ChatClient takes a ManagedT5.Generation.GenerationOptions (or null for the model's defaults)."),
        };
        bool sample = o.DoSample;
        if (options.MaxOutputTokens is int max) o = o with { MaxNewTokens = max };
        if (options.TopP is float topP)
        {
            o = o with { TopP = topP };
            sample = true;
        }
        if (options.TopK is int topK)
        {
            o = o with { TopK = topK };
            sample = true;
        }
        if (options.Temperature is float temperature)
        {
            sample = temperature != 0;   // 0 means greedy; a negative or NaN one is refused by validation, naming it
            if (sample) o = o with { Temperature = temperature };
        }
        if (options.Seed is long seed) o = o with { Seed = unchecked((ulong)seed) };

        if (options.AdditionalProperties is { } extra)
            foreach ((string key, object? value) in extra)
            {
                if (!AdditionalPropertyNames.Contains(key) || GenerationOptionTable.Find(key) is not { } option)
                    throw Unsupported($"AdditionalProperties[\"{key}\"]",
                        $"T5ChatClient knows {string.Join(", ", AdditionalPropertyNames)} (HF generation options); remove the key " +
                        "or set the option through RawRepresentationFactory (a GenerationOptions).");
                if (!option.TryConvert(value, out object? converted)) throw WrongType(key, value, option.Expected);
                o = option.Set(o, converted);
                if (option.Name == "do_sample") sample = o.DoSample;
            }
        return o with { DoSample = sample };
    }

    /// <summary>Throws for each option T5 cannot honour (see <see cref="CreateGenerationOptions"/>).</summary>
    private void RefuseUnsupported(ChatOptions options)
    {
        if (options.Tools is { Count: > 0 })
            throw Unsupported("Tools", "T5 cannot call tools; remove them, or send requests that need tools to a model that can call them.");
        if (options.ToolMode is RequiredChatToolMode)
            throw Unsupported("ToolMode", "T5 cannot call tools, so it cannot be required to; use ChatToolMode.None or leave it null.");
        if (options.ResponseFormat is ChatResponseFormatJson)
            throw Unsupported("ResponseFormat", "T5 writes plain text and cannot be held to JSON or a schema; use ChatResponseFormat.Text or leave it null.");
        if (options.FrequencyPenalty is float frequency && frequency != 0)
            throw Unsupported("FrequencyPenalty", "T5 generation has no additive penalties; use AdditionalProperties[\"repetition_penalty\"] " +
                                                  "(HF's, e.g. 1.2) or leave it null.");
        if (options.PresencePenalty is float presence && presence != 0)
            throw Unsupported("PresencePenalty", "T5 generation has no additive penalties; use AdditionalProperties[\"repetition_penalty\"] " +
                                                 "(HF's, e.g. 1.2) or leave it null.");
        if (options.Reasoning is { } reasoning && (reasoning.Effort is not (null or ReasoningEffort.None) ||
                                                   reasoning.Output is not (null or ReasoningOutput.None)))
            throw Unsupported("Reasoning", "T5 has no reasoning mode; leave it null.");
        if (options.ConversationId is not null)
            throw Unsupported("ConversationId", "this client keeps no conversations; send the whole conversation as messages.");
        if (options.ContinuationToken is not null)
            throw Unsupported("ContinuationToken", "this client never returns one (every response is complete), so there is nothing to continue.");
        if (options.ModelId is string id && !string.Equals(id, ModelId, StringComparison.Ordinal))
            throw Unsupported("ModelId", ModelId is null
                ? $"this client serves one model and was given no id; leave ModelId null, or load '{id}' with T5ChatClient.Load."
                : $"this client serves '{ModelId}' only; leave ModelId null, or load '{id}' with T5ChatClient.Load.");
    }

    private static NotSupportedException Unsupported(string option, string why) => new($"ChatOptions.{option}: {why}");

    private static ArgumentException WrongType(string key, object? value, string expected) =>
        new($"{key}: AdditionalProperties[\"{key}\"] is {(value is null ? "null" : $"'{value}' ({value.GetType().Name})")}; give {expected}.", key);

    /// <summary>Where the text ends: the start of the earliest stop sequence in it, or null.</summary>
    internal static int? StopAt(string text, IEnumerable<string>? stops)
    {
        if (stops is null) return null;
        int? first = null;
        foreach (string stop in stops)
        {
            if (string.IsNullOrEmpty(stop)) continue;
            int i = text.IndexOf(stop, StringComparison.Ordinal);
            if (i >= 0 && (first is null || i < first)) first = i;
        }
        return first;
    }

    /// <summary>How many trailing characters could still grow into a stop sequence (the longest suffix that is a
    /// proper prefix of one).</summary>
    internal static int HeldBack(string text, IEnumerable<string> stops)
    {
        int held = 0;
        foreach (string stop in stops)
            for (int n = Math.Min(stop.Length - 1, text.Length); n > held; n--)
                if (text.AsSpan(text.Length - n).SequenceEqual(stop.AsSpan(0, n)))
                {
                    held = n;
                    break;
                }
        return held;
    }

    private static string NewId() => "t5-" + Guid.NewGuid().ToString("N");
}
