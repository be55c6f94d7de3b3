// managedt5 tokenize / detokenize: ids and pieces for texts (arguments or --input-file), and text for ids.
using System.CommandLine;
using System.Text.Json;
using ManagedT5.Tokenizer;

namespace ManagedT5.Cli;

internal static class TokenizeCommands
{
    public static Command CreateTokenize()
    {
        Option<string> model = CliCommon.ModelOption();
        var json = new Option<bool>("--json") { Description = "Print {\"ids\": [[...]], \"pieces\": [[...]]}" };
        Option<string?> inputFile = InputFileOption("Texts to tokenize");
        var texts = new Argument<string[]>("text")
        {
            Arity = ArgumentArity.ZeroOrMore,
            Description = "Texts to tokenize (a text that starts with '-' goes after --: tokenize -- \"-x\")",
        };
        Option<string> compat = TokenizerCompatOption();
        var command = new Command("tokenize", "Token ids and pieces of texts (as HF's from_pretrained tokenizer: special tokens " +
                                              "written in the text become their ids, </s> appended)") { model, json, compat, inputFile, texts };
        command.SetAction(r =>
        {
            string[] input = Texts(r.GetValue(texts), r.GetValue(inputFile), "text");
            T5Tokenizer tokenizer = T5Tokenizer.FromDirectory(CliCommon.ResolveModel(r, r.GetValue(model)!)).WithCompat(ParseCompat(r.GetValue(compat)));
            CliCommon.Doing = $"tokenizing {input.Length} text(s)";
            var ids = input.Select(t => tokenizer.Encode(t)).ToArray();
            var pieces = ids.Select(row => row.Select(tokenizer.IdToPiece).ToArray()).ToArray();
            if (r.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object> { ["ids"] = ids, ["pieces"] = pieces }, CliCommon.Json));
            else
                for (int i = 0; i < ids.Length; i++)
                {
                    Console.WriteLine(string.Join(" ", ids[i]));
                    Console.WriteLine(string.Join(" ", pieces[i]));
                }
            return 0;
        });
        return command;
    }

    public static Command CreateDetokenize()
    {
        Option<string> model = CliCommon.ModelOption();
        var skip = new Option<bool>("--skip-special-tokens") { Description = "Drop <pad>, </s> and <unk>" };
        var ids = new Argument<string[]>("ids")
        {
            Arity = ArgumentArity.OneOrMore,
            Description = "Token ids, separated by spaces or commas (\"151 88 21\" or 151 88 21; after --: detokenize -- \"151 88 21\")",
        };
        var command = new Command("detokenize", "Text of token ids") { model, skip, ids };
        command.SetAction(r =>
        {
            T5Tokenizer tokenizer = T5Tokenizer.FromDirectory(CliCommon.ResolveModel(r, r.GetValue(model)!));
            int[] values = r.GetValue(ids)!.SelectMany(a => a.Split([',', ' ', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                .Select(s => int.TryParse(s, out int v) && v >= 0 && v < tokenizer.VocabSize ? v
                    : throw new ArgumentException($"ids: '{s}' is not a token id in [0, {tokenizer.VocabSize}).")).ToArray();
            Console.WriteLine(tokenizer.Decode(values, r.GetValue(skip)));
            return 0;
        });
        return command;
    }

    /// <summary>--tokenizer-compat slow|fast, shared by every command that tokenizes (tokenize, generate, trace).</summary>
    public static Option<string> TokenizerCompatOption() => new("--tokenizer-compat")
    {
        Description = "Encode as HF's slow T5Tokenizer (the SentencePiece the models were trained with) or its fast tokenizer " +
                      "(tokenizer.json, AutoTokenizer's default: whitespace before a special token or at the end keeps a lone '▁')",
        HelpName = "slow|fast",
        DefaultValueFactory = _ => "slow",
    };

    /// <summary>The value of --tokenizer-compat.</summary>
    public static TokenizerCompat ParseCompat(string? value) => value switch
    {
        null or "slow" => TokenizerCompat.Slow,
        "fast" => TokenizerCompat.Fast,
        _ => throw new ArgumentException($"--tokenizer-compat: '{value}' is not slow or fast."),
    };

    /// <summary>--input-file, shared by generate and tokenize.</summary>
    public static Option<string?> InputFileOption(string what) => new("--input-file")
    {
        Description = $"{what}, one per line (UTF-8; '-' reads standard input; blank lines are errors)",
        HelpName = "file",
    };

    /// <summary>The texts from the arguments or from --input-file (exactly one of them).</summary>
    public static string[] Texts(string[]? arguments, string? inputFile, string argumentName)
    {
        arguments ??= [];
        if (inputFile is null)
            return arguments.Length > 0 ? arguments
                : throw new ArgumentException($"give at least one {argumentName}, or --input-file FILE ('-' for standard input).");
        if (arguments.Length > 0)
            throw new ArgumentException($"--input-file: give texts either as arguments or in --input-file, not both (got {arguments.Length} argument(s) too).");
        return CliCommon.ReadInputFile(inputFile);
    }
}
