// T5ChatClient against the tiny-flan-t5 fixture: the same text as T5TextGenerator, streaming that adds up to it,
// ChatOptions mapping, stop sequences, metadata and cancellation.
using ManagedT5.Generation;
using Microsoft.Extensions.AI;

namespace ManagedT5.Extensions.AI.Tests;

/// <summary>One loaded fixture model shared by the tests (loading is the slow part).</summary>
public sealed class TinyModel : IDisposable
{
    /// <summary>tests/fixtures/models/tiny-flan-t5, found above the test's output folder.</summary>
    public static string Folder { get; } = FindModel("tiny-flan-t5");

    public T5TextGenerator Generator { get; } = T5TextGenerator.Load(Folder);

    public void Dispose() => Generator.Dispose();

    private static string FindModel(string name)
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "tests", "fixtures", "models");
            if (Directory.Exists(candidate)) return Path.Combine(candidate, name);
        }
        throw new DirectoryNotFoundException("tests/fixtures/models not found above " + AppContext.BaseDirectory);
    }
}

public sealed class ChatClientTests(TinyModel model) : IClassFixture<TinyModel>
{
    private const string Prompt = "Hello world";
    private const int Limit = 120_000;
    private readonly T5ChatClient _client = new(model.Generator, "tiny-flan-t5");
    private T5TextGenerator Generator => model.Generator;

    private static async Task<(string Text, List<ChatResponseUpdate> Updates)> Stream(IChatClient client, IEnumerable<ChatMessage> messages,
        ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var updates = new List<ChatResponseUpdate>();
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(messages, options, cancellationToken))
            updates.Add(update);
        return (string.Concat(updates.Select(u => u.Text)), updates);
    }

    private static ChatMessage[] User(string text) => [new(ChatRole.User, text)];

    [Fact(Timeout = Limit)]
    public async Task Response_IsTheGeneratorsText()
    {
        ChatResponse response = await _client.GetResponseAsync(User(Prompt), new ChatOptions { MaxOutputTokens = 20 });

        string expected = Generator.Generate(Prompt, Generator.DefaultOptions with { MaxNewTokens = 20 }).Text;
        Assert.Equal(expected, response.Text);
        Assert.StartsWith("principau vorbi Bankingelli", response.Text);
        ChatMessage message = Assert.Single(response.Messages);
        Assert.Equal(ChatRole.Assistant, message.Role);
        Assert.Equal("tiny-flan-t5", response.ModelId);
        Assert.NotNull(response.ResponseId);
        Assert.Equal(Generator.Encode([Prompt])[0].Length, response.Usage?.InputTokenCount);
        Assert.InRange(response.Usage?.OutputTokenCount ?? 0, 1, 20);
        Assert.NotNull(response.FinishReason);
    }

    [Fact(Timeout = Limit)]
    public async Task Response_WithoutOptions_UsesTheModelsDefaults()
    {
        ChatResponse response = await _client.GetResponseAsync(Prompt);
        Assert.Equal(Generator.Generate(Prompt).Text, response.Text);
    }

    [Fact(Timeout = Limit)]
    public async Task Streaming_AddsUpToTheResponse()
    {
        var options = new ChatOptions { MaxOutputTokens = 20 };
        ChatResponse response = await _client.GetResponseAsync(User(Prompt), options);
        (string text, List<ChatResponseUpdate> updates) = await Stream(_client, User(Prompt), options);

        Assert.Equal(response.Text, text);
        Assert.True(updates.Count > 1, "expected several pieces");
        Assert.All(updates, u => Assert.Equal(ChatRole.Assistant, u.Role));
        Assert.Single(updates.Select(u => u.ResponseId).Distinct());
        Assert.Equal(response.Text, updates.ToChatResponse().Text);
    }

    [Fact(Timeout = Limit)]
    public async Task Streaming_WithSampling_AddsUpToTheResponse()
    {
        var options = new ChatOptions { MaxOutputTokens = 12, Temperature = 0.8f, TopK = 20, Seed = 7 };
        ChatResponse response = await _client.GetResponseAsync(User(Prompt), options);
        (string text, _) = await Stream(_client, User(Prompt), options);
        Assert.Equal(response.Text, text);
    }

    [Fact(Timeout = Limit)]
    public async Task Sampling_IsTheGeneratorsSampling_AndSeeded()
    {
        var options = new ChatOptions { MaxOutputTokens = 12, Temperature = 0.7f, TopP = 0.9f, Seed = 42 };
        ChatResponse a = await _client.GetResponseAsync(User(Prompt), options);
        ChatResponse b = await _client.GetResponseAsync(User(Prompt), options);

        GenerationOptions expected = Generator.DefaultOptions with { MaxNewTokens = 12, DoSample = true, Temperature = 0.7f, TopP = 0.9f, Seed = 42 };
        Assert.Equal(Generator.Generate(Prompt, expected).Text, a.Text);
        Assert.Equal(a.Text, b.Text);
    }

    [Fact]
    public void Options_AreMapped()
    {
        GenerationOptions defaults = Generator.DefaultOptions;
        Assert.Equal(defaults, _client.CreateGenerationOptions(null));
        Assert.Equal(defaults, _client.CreateGenerationOptions(new ChatOptions()));

        GenerationOptions o = _client.CreateGenerationOptions(new ChatOptions
        {
            MaxOutputTokens = 33, Temperature = 0.5f, TopP = 0.8f, TopK = 7, Seed = 123,
        });
        Assert.Equal(defaults with { MaxNewTokens = 33, DoSample = true, Temperature = 0.5f, TopP = 0.8f, TopK = 7, Seed = 123UL }, o);

        Assert.True(_client.CreateGenerationOptions(new ChatOptions { TopP = 0.5f }).DoSample);
        Assert.True(_client.CreateGenerationOptions(new ChatOptions { TopK = 5 }).DoSample);
        Assert.True(_client.CreateGenerationOptions(new ChatOptions { Temperature = 1.2f }).DoSample);
        Assert.False(_client.CreateGenerationOptions(new ChatOptions { Temperature = 0f, TopP = 0.5f }).DoSample);   // 0: greedy
        Assert.Equal(unchecked((ulong)-1L), _client.CreateGenerationOptions(new ChatOptions { Seed = -1 }).Seed);

        GenerationOptions extra = _client.CreateGenerationOptions(new ChatOptions
        {
            AdditionalProperties = new() { ["num_beams"] = 3, ["repetition_penalty"] = 1.5f, ["no_repeat_ngram_size"] = 2 },
        });
        Assert.Equal(defaults with { NumBeams = 3, RepetitionPenalty = 1.5f, NoRepeatNgramSize = 2 }, extra);

        GenerationOptions raw = new() { MaxNewTokens = 5, NumBeams = 2 };
        Assert.Equal(raw with { MaxNewTokens = 9 },
            _client.CreateGenerationOptions(new ChatOptions { RawRepresentationFactory = _ => raw, MaxOutputTokens = 9 }));
    }

    /// <summary>Each ChatOptions setting T5 cannot honour, with the option its error must name.</summary>
    public static TheoryData<string, string> Unsupported() => new()
    {
        { "Tools", "ChatOptions.Tools" },
        { "ToolMode", "ChatOptions.ToolMode" },
        { "ResponseFormatJson", "ChatOptions.ResponseFormat" },
        { "ResponseFormatSchema", "ChatOptions.ResponseFormat" },
        { "FrequencyPenalty", "ChatOptions.FrequencyPenalty" },
        { "PresencePenalty", "ChatOptions.PresencePenalty" },
        { "Reasoning", "ChatOptions.Reasoning" },
        { "ConversationId", "ChatOptions.ConversationId" },
        { "ContinuationToken", "ChatOptions.ContinuationToken" },
        { "ModelId", "ChatOptions.ModelId" },
        { "UnknownKey", "ChatOptions.AdditionalProperties[\"top_a\"]" },
        { "RawRepresentation", "ChatOptions.RawRepresentationFactory" },
    };

    private static ChatOptions UnsupportedOptions(string name) => name switch
    {
        "Tools" => new() { Tools = [AIFunctionFactory.Create(() => "sunny", "weather")] },
        "ToolMode" => new() { ToolMode = ChatToolMode.RequireAny },
        "ResponseFormatJson" => new() { ResponseFormat = ChatResponseFormat.Json },
        "ResponseFormatSchema" => new() { ResponseFormat = ChatResponseFormat.ForJsonSchema(
            System.Text.Json.JsonDocument.Parse("""{"type":"object"}""").RootElement, "answer") },
        "FrequencyPenalty" => new() { FrequencyPenalty = 0.5f },
        "PresencePenalty" => new() { PresencePenalty = -0.5f },
        "Reasoning" => new() { Reasoning = new ReasoningOptions { Effort = ReasoningEffort.High } },
        "ConversationId" => new() { ConversationId = "conversation-1" },
        "ContinuationToken" => new() { ContinuationToken = ResponseContinuationToken.FromBytes(new byte[] { 1, 2, 3 }) },
        "ModelId" => new() { ModelId = "gpt-4o" },
        "UnknownKey" => new() { AdditionalProperties = new() { ["top_a"] = 0.2f } },
        "RawRepresentation" => new() { RawRepresentationFactory = _ => "not generation options" },
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    [Theory(Timeout = Limit)]
    [MemberData(nameof(Unsupported))]
    public async Task Options_T5CannotHonour_AreRefusedNamingTheOption(string name, string option)
    {
        var e = Assert.Throws<NotSupportedException>(() => _client.CreateGenerationOptions(UnsupportedOptions(name)));
        Assert.StartsWith(option + ": ", e.Message);

        e = await Assert.ThrowsAsync<NotSupportedException>(() => _client.GetResponseAsync(User(Prompt), UnsupportedOptions(name)));
        Assert.StartsWith(option + ": ", e.Message);
        e = await Assert.ThrowsAsync<NotSupportedException>(() => Stream(_client, User(Prompt), UnsupportedOptions(name)));
        Assert.StartsWith(option + ": ", e.Message);
    }

    [Fact]
    public void Options_ThatAskForWhatT5DoesAnyway_AreAccepted()
    {
        GenerationOptions defaults = Generator.DefaultOptions;
        ChatOptions[] harmless =
        [
            new() { Tools = [] },
            new() { ToolMode = ChatToolMode.None },
            new() { ToolMode = ChatToolMode.Auto },
            new() { AllowMultipleToolCalls = true },
            new() { AllowBackgroundResponses = true },
            new() { ResponseFormat = ChatResponseFormat.Text },
            new() { FrequencyPenalty = 0f, PresencePenalty = 0f },
            new() { Reasoning = new ReasoningOptions { Effort = ReasoningEffort.None, Output = ReasoningOutput.None } },
            new() { ModelId = "tiny-flan-t5" },
            new() { RawRepresentationFactory = _ => null },
        ];
        foreach (ChatOptions options in harmless) Assert.Equal(defaults, _client.CreateGenerationOptions(options));

        // A client made without a model id serves no named model.
        var unnamed = new T5ChatClient(Generator);
        Assert.StartsWith("ChatOptions.ModelId: ",
            Assert.Throws<NotSupportedException>(() => unnamed.CreateGenerationOptions(new ChatOptions { ModelId = "tiny-flan-t5" })).Message);
    }

    [Fact]
    public void AdditionalProperties_TakeHfNamesAndTypes()
    {
        GenerationOptions defaults = Generator.DefaultOptions;
        GenerationOptions o = _client.CreateGenerationOptions(new ChatOptions
        {
            AdditionalProperties = new()
            {
                ["num_beams"] = 4L, ["length_penalty"] = 2.0, ["min_new_tokens"] = (short)3, ["early_stopping"] = true, ["do_sample"] = false,
            },
        });
        Assert.Equal(defaults with { NumBeams = 4, LengthPenalty = 2f, MinNewTokens = 3, EarlyStopping = EarlyStopping.True, DoSample = false }, o);
        Assert.Equal(EarlyStopping.Never, _client.CreateGenerationOptions(new ChatOptions
            { AdditionalProperties = new() { ["early_stopping"] = "never" } }).EarlyStopping);

        // Values read from JSON arrive as JsonElement.
        var json = System.Text.Json.JsonDocument.Parse("""{"num_beams": 2, "repetition_penalty": 1.3, "do_sample": true, "early_stopping": "never"}""").RootElement;
        o = _client.CreateGenerationOptions(new ChatOptions
        {
            AdditionalProperties = new(json.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone())),
        });
        Assert.Equal(defaults with { NumBeams = 2, RepetitionPenalty = 1.3f, DoSample = true, EarlyStopping = EarlyStopping.Never }, o);
    }

    [Fact]
    public void AdditionalProperties_TakeEveryHfOptionOfTheTableThatNoChatOptionsPropertySets()
    {
        // The keys come from GenerationOptionTable, so an option added there is accepted here without a second list.
        string[] covered = ["max_new_tokens", "temperature", "top_k", "top_p", "seed", "num_return_sequences"];
        Assert.Equal(GenerationOptionTable.All.Where(o => o.IsHf && !covered.Contains(o.Name)).Select(o => o.Name), T5ChatClient.AdditionalPropertyNames);
        GenerationOptions o = _client.CreateGenerationOptions(new ChatOptions
        {
            AdditionalProperties = new() { ["min_length"] = 3, ["max_length"] = 9L, ["eos_token_id"] = 1, ["decoder_start_token_id"] = (short)0 },
        });
        Assert.Equal(Generator.DefaultOptions with { MinLength = 3, MaxLength = 9, EosTokenId = 1, DecoderStartTokenId = 0 }, o);
        foreach (string key in covered)
            Assert.Throws<NotSupportedException>(() => _client.CreateGenerationOptions(new ChatOptions { AdditionalProperties = new() { [key] = 1 } }));
    }

    [Theory]
    [InlineData("num_beams", "4")]
    [InlineData("num_beams", 2.5)]
    [InlineData("no_repeat_ngram_size", null)]
    [InlineData("repetition_penalty", "high")]
    [InlineData("do_sample", 1)]
    [InlineData("early_stopping", "sometimes")]
    public void AdditionalProperties_OfTheWrongType_NameTheKey(string key, object? value)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() =>
            _client.CreateGenerationOptions(new ChatOptions { AdditionalProperties = new() { [key] = value } }));
        Assert.Equal(key, e.ParamName);
        Assert.StartsWith(key + ": ", e.Message);
    }

    [Fact(Timeout = Limit)]
    public async Task Options_OutOfRange_AreArgumentExceptions()
    {
        await Assert.ThrowsAnyAsync<ArgumentException>(() => _client.GetResponseAsync(User(Prompt), new ChatOptions { TopP = 2f }));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => _client.GetResponseAsync(User(Prompt), new ChatOptions { Temperature = -1f }));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => _client.GetResponseAsync(User(Prompt), new ChatOptions { MaxOutputTokens = 0 }));
    }

    [Fact(Timeout = Limit)]
    public async Task StopSequences_CutTheText_InBothModes()
    {
        string full = (await _client.GetResponseAsync(User(Prompt), new ChatOptions { MaxOutputTokens = 20 })).Text;
        Assert.Contains(" vorbi", full);
        var options = new ChatOptions { MaxOutputTokens = 20, StopSequences = ["Bank", " vorbi", "never there"] };

        ChatResponse response = await _client.GetResponseAsync(User(Prompt), options);
        (string streamed, List<ChatResponseUpdate> updates) = await Stream(_client, User(Prompt), options);

        string expected = full[..full.IndexOf(" vorbi", StringComparison.Ordinal)];
        Assert.Equal(expected, response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal(expected, streamed);
        Assert.Equal(ChatFinishReason.Stop, updates[^1].FinishReason);

        // A stop sequence that never occurs changes nothing.
        options = new ChatOptions { MaxOutputTokens = 20, StopSequences = ["never there"] };
        Assert.Equal(full, (await _client.GetResponseAsync(User(Prompt), options)).Text);
        Assert.Equal(full, (await Stream(_client, User(Prompt), options)).Text);
    }

    [Fact]
    public void StopSequence_HeldBack_IsTheLongestPossibleStart()
    {
        Assert.Equal(0, T5ChatClient.HeldBack("hello", ["xyz"]));
        Assert.Equal(2, T5ChatClient.HeldBack("hello wo", ["world", "o"]));
        Assert.Equal(1, T5ChatClient.HeldBack("hello w", ["world"]));
        Assert.Equal(6, T5ChatClient.StopAt("hello world", ["world", "xx", "o w"]) is int i ? i + 2 : -1);
        Assert.Null(T5ChatClient.StopAt("hello", ["", "x"]));
    }

    [Fact(Timeout = Limit)]
    public async Task Prompt_IsInstructionsAndEveryMessagesText()
    {
        ChatMessage[] messages =
        [
            new(ChatRole.System, "Answer briefly."),
            new(ChatRole.User, "Hello"),
            new(ChatRole.Assistant, [new FunctionCallContent("call-1", "tool")]),   // no text: adds nothing
            new(ChatRole.User, "world"),
        ];
        Assert.Equal("Answer briefly.\nHello\nworld", T5ChatClient.BuildPrompt(messages));
        Assert.Equal("Be kind.\nAnswer briefly.\nHello\nworld", T5ChatClient.BuildPrompt(messages, "Be kind."));

        var options = new ChatOptions { MaxOutputTokens = 8, Instructions = "Be kind." };
        ChatResponse response = await _client.GetResponseAsync(messages, options);
        Assert.Equal(Generator.Generate("Be kind.\nAnswer briefly.\nHello\nworld", Generator.DefaultOptions with { MaxNewTokens = 8 }).Text,
            response.Text);

        Assert.Throws<ArgumentException>(() => T5ChatClient.BuildPrompt([new ChatMessage(ChatRole.User, "  ")]));
        await Assert.ThrowsAsync<ArgumentException>(() => _client.GetResponseAsync([]));
    }

    [Fact]
    public void GetService_GivesMetadataGeneratorAndSelf()
    {
        var metadata = Assert.IsType<ChatClientMetadata>(_client.GetService(typeof(ChatClientMetadata)));
        Assert.Equal("ManagedT5", metadata.ProviderName);
        Assert.Equal("tiny-flan-t5", metadata.DefaultModelId);
        Assert.Null(metadata.ProviderUri);
        Assert.Same(metadata, _client.GetService<ChatClientMetadata>());
        Assert.Same(Generator, _client.GetService(typeof(T5TextGenerator)));
        Assert.Same(_client, _client.GetService(typeof(IChatClient)));
        Assert.Same(_client, _client.GetService(typeof(T5ChatClient)));
        Assert.Null(_client.GetService(typeof(ChatClientMetadata), "some key"));
        Assert.Null(_client.GetService(typeof(string)));
        Assert.Throws<ArgumentNullException>(() => _client.GetService(null!));
    }

    [Fact(Timeout = Limit)]
    public async Task Cancellation_BeforeStart_Throws()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => _client.GetResponseAsync(User(Prompt), null, cts.Token));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Stream(_client, User(Prompt), null, cts.Token));
    }

    [Fact(Timeout = Limit)]
    public async Task Cancellation_MidStream_Throws()
    {
        using var cts = new CancellationTokenSource();
        var options = new ChatOptions { MaxOutputTokens = 200 };
        int seen = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (ChatResponseUpdate _ in _client.GetStreamingResponseAsync(User(Prompt), options, cts.Token))
                if (++seen == 1) cts.Cancel();
        });
        Assert.True(seen >= 1);
    }

    [Fact]
    public void Dispose_LeavesABorrowedGenerator()
    {
        new T5ChatClient(Generator).Dispose();
        Assert.NotEmpty(Generator.Generate(Prompt, Generator.DefaultOptions with { MaxNewTokens = 2 }).TokenIds);
    }
}
