// Microsoft.Extensions.AI's IChatClient over a loaded T5TextGenerator: messages become one prompt, ChatOptions become
// GenerationOptions, and the text comes back as one assistant message or as streamed updates.
using System.Runtime.CompilerServices;
using System.Text;
using ManagedT5.Generation;
using ManagedT5.Hub;
using Microsoft.Extensions.AI;

namespace ManagedT5.Extensions.AI;

/// <summary>
/// An <see cref="IChatClient"/> for a T5 / Flan-T5 model. T5 is not a chat model: it reads one text and writes one text.
/// <list type="bullet">
/// <item>Prompt: <see cref="ChatOptions.Instructions"/>, then every message's text in order (system, user and assistant
/// alike; roles are not written out, since Flan-T5 was tuned on plain instructions), joined with newlines. Messages
/// without text (tool calls, images) add nothing. See <see cref="BuildPrompt"/>.</item>
/// <item>Options: see <see cref="CreateGenerationOptions"/>. Tools, response formats and penalties other than
/// <c>repetition_penalty</c> are ignored.</item>
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

    /// <summary>Loads a model folder or hub id (through <see cref="ModelLocator.Resolve"/>, which may download it) into a
    /// client that owns the generator; the model id is <paramref name="modelOrHubId"/>.</summary>
    public static T5ChatClient Load(string modelOrHubId, T5LoadOptions? loadOptions = null, HubOptions? hubOptions = null)
    {
        string folder = ModelLocator.Resolve(modelOrHubId, hubOptions);
        return new T5ChatClient(T5TextGenerator.Load(folder, loadOptions), modelOrHubId, ownsGenerator: true);
    }

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
        GenerationResult result = await Generator.GenerateAsync(prompt, generation, cancellationToken).ConfigureAwait(false);

        int eos = generation.EosTokenId ?? Generator.Model.Config.EosTokenId;
        ChatFinishReason finish = result.TokenIds.Length > 0 && result.TokenIds[^1] == eos ? ChatFinishReason.Stop : ChatFinishReason.Length;
        string text = result.Text;
        if (StopAt(text, options?.StopSequences) is int cut)
        {
            text = text[..cut];
            finish = ChatFinishReason.Stop;
        }
        int inputTokens = Generator.Encode([prompt])[0].Length;
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
        await foreach (string piece in Generator.StreamAsync(prompt, generation, stop.Token).ConfigureAwait(false))
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

    /// <summary>
    /// <see cref="ChatOptions"/> as <see cref="GenerationOptions"/>, starting from the model's generation_config.json
    /// (or from the <see cref="GenerationOptions"/> that <see cref="ChatOptions.RawRepresentationFactory"/> returns):
    /// <list type="bullet">
    /// <item>MaxOutputTokens → max_new_tokens.</item>
    /// <item>Temperature &gt; 0 → sampling at that temperature; Temperature 0 → greedy, whatever else is set.</item>
    /// <item>TopP → top_p, TopK → top_k; either turns sampling on (unless Temperature is 0).</item>
    /// <item>Seed → seed.</item>
    /// <item>AdditionalProperties with HF names: num_beams, repetition_penalty, no_repeat_ngram_size, length_penalty,
    /// min_new_tokens, do_sample.</item>
    /// <item>FrequencyPenalty, PresencePenalty, Tools, ResponseFormat: ignored. StopSequences: applied to the text.</item>
    /// </list>
    /// Values out of range surface as the generator's <see cref="ArgumentException"/> naming the option.
    /// </summary>
    public GenerationOptions CreateGenerationOptions(ChatOptions? options)
    {
        GenerationOptions o = options?.RawRepresentationFactory?.Invoke(this) as GenerationOptions ?? Generator.DefaultOptions;
        if (options is null) return o;
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
        {
            if (extra.TryGetValue("num_beams", out int beams)) o = o with { NumBeams = beams };
            if (extra.TryGetValue("repetition_penalty", out float repetition)) o = o with { RepetitionPenalty = repetition };
            if (extra.TryGetValue("no_repeat_ngram_size", out int ngram)) o = o with { NoRepeatNgramSize = ngram };
            if (extra.TryGetValue("length_penalty", out float lengthPenalty)) o = o with { LengthPenalty = lengthPenalty };
            if (extra.TryGetValue("min_new_tokens", out int minNew)) o = o with { MinNewTokens = minNew };
            if (extra.TryGetValue("do_sample", out bool doSample)) sample = doSample;
        }
        return o with { DoSample = sample };
    }

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
