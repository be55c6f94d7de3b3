// managedt5 tokenize / detokenize: ids and pieces for text, and text for ids.
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
        var texts = new Argument<string[]>("text") { Arity = ArgumentArity.OneOrMore, Description = "Texts to tokenize" };
        var command = new Command("tokenize", "Token ids and pieces of texts (T5 style, </s> appended)") { model, json, texts };
        command.SetAction(r => CliCommon.Run(() =>
        {
            T5Tokenizer tokenizer = T5Tokenizer.FromDirectory(CliCommon.ResolveModel(r.GetValue(model)!));
            var ids = r.GetValue(texts)!.Select(t => tokenizer.Encode(t)).ToArray();
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
        }));
        return command;
    }

    public static Command CreateDetokenize()
    {
        Option<string> model = CliCommon.ModelOption();
        var skip = new Option<bool>("--skip-special-tokens") { Description = "Drop <pad>, </s> and <unk>" };
        var ids = new Argument<string[]>("ids") { Arity = ArgumentArity.OneOrMore, Description = "Token ids (spaces or commas)" };
        var command = new Command("detokenize", "Text of token ids") { model, skip, ids };
        command.SetAction(r => CliCommon.Run(() =>
        {
            T5Tokenizer tokenizer = T5Tokenizer.FromDirectory(CliCommon.ResolveModel(r.GetValue(model)!));
            int[] values = r.GetValue(ids)!.SelectMany(a => a.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                .Select(s => int.TryParse(s, out int v) && v >= 0 && v < tokenizer.VocabSize ? v
                    : throw new ArgumentException($"ids: '{s}' is not a token id in [0, {tokenizer.VocabSize}).")).ToArray();
            Console.WriteLine(tokenizer.Decode(values, r.GetValue(skip)));
            return 0;
        }));
        return command;
    }
}
