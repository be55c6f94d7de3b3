// Shared pieces of the commands: the --model, --device, --threads and root options, bulk input, and Run, the one place
// that turns a parse result into an exit code: usage errors (unknown options, bad values) print one line naming the flag
// and exit 2; runtime failures print one line and exit 1; nothing prints a stack trace unless MANAGEDT5_DEBUG=1.
using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Text;
using System.Text.RegularExpressions;
using ManagedT5.Hub;
using ManagedT5.Tokenizer;

namespace ManagedT5.Cli;

internal static partial class CliCommon
{
    public const string ToolName = "managedt5";
    public const string DefaultModel = "google/flan-t5-small";
    /// <summary>Exit code of a usage error (unknown option, bad value), as getopt-style tools use.</summary>
    public const int UsageExitCode = 2;
    /// <summary>Exit code of a runtime failure (model not found, bad file, out of memory).</summary>
    public const int FailureExitCode = 1;
    /// <summary>Largest --input-file (or standard input) read: 64 MiB of text.</summary>
    public const long MaxInputFileBytes = 64L << 20;

    /// <summary>JSON output keeps non-ASCII text readable.</summary>
    public static readonly System.Text.Json.JsonSerializerOptions Json =
        new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>--offline (every command): never download.</summary>
    public static readonly Option<bool> Offline = new("--offline")
    {
        Description = "Never download: use model folders, weights/ and the HF cache only (like HF_HUB_OFFLINE=1)",
        Recursive = true,
    };

    /// <summary>--cache-dir (every command): HF's cache_dir.</summary>
    public static readonly Option<string?> CacheDir = new("--cache-dir")
    {
        Description = "HF cache that hub ids are looked up in and downloaded to (HF's cache_dir; default $HF_HUB_CACHE, " +
                      "else $HF_HOME/hub, else ~/.cache/huggingface/hub)",
        HelpName = "dir",
        Recursive = true,
    };

    /// <summary>What the command is doing, for the last-resort error line ("out of memory while ...").</summary>
    public static string Doing { get; set; } = "starting";

    public static Option<string> ModelOption() => new("--model", "-m")
    {
        Description = "Model folder (config.json, model.safetensors, spiece.model) or hub id. Hub ids are downloaded to the " +
                      "HF cache ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub; or --cache-dir) unless " +
                      "--offline or HF_HUB_OFFLINE=1",
        HelpName = "dir|hub-id",
        DefaultValueFactory = _ => DefaultModel,
    };

    /// <summary>--adapter DIR: a LoRA adapter in HF PEFT's format, merged into the weights at load (generate, eval).</summary>
    public static Option<string?> AdapterOption() => new("--adapter")
    {
        HelpName = "dir",
        Description = "A LoRA adapter folder in HF PEFT's format (adapter_config.json, adapter_model.safetensors), merged into " +
                      "the weights at load (before --dtype converts them)",
    };

    public static Option<string> DeviceOption() => new("--device")
    {
        Description = "cpu (default), reference, cuda, opencl, ilgpu-cpu or auto",
        DefaultValueFactory = _ => "cpu",
    };

    /// <summary>--threads: 0 (one per core) up to four per core (more only slows the kernels down).</summary>
    public static Option<int> ThreadsOption(int defaultValue)
    {
        var option = new Option<int>("--threads")
        {
            Description = $"CPU threads (0: one per core; at most {MaxThreads})",
            HelpName = "n",
            DefaultValueFactory = _ => defaultValue,
        };
        option.Validators.Add(r =>
        {
            int n = r.GetValueOrDefault<int>();
            if (n < 0 || n > MaxThreads)
                r.AddError($"{n} is not a thread count; give 0 (one per core) or 1 to {MaxThreads} ({Environment.ProcessorCount} cores here).");
        });
        return option;
    }

    private static int MaxThreads => 4 * Environment.ProcessorCount;

    /// <summary>A local folder for --model as given, or the error that says how to get one. Hub ids are looked up and
    /// downloaded with --cache-dir and --offline passed explicitly (no environment variables are set).</summary>
    public static string ResolveModel(ParseResult r, string model)
    {
        if (File.Exists(model))
            throw new ArgumentException($"'{model}' is a file, not a folder; give the folder that holds config.json, " +
                                        "model.safetensors and spiece.model, or a hub id such as google/flan-t5-small.", "model");
        Doing = $"finding the model '{model}'";
        var hub = new HubOptions();
        if (r.GetValue(CacheDir) is string cache)
        {
            if (string.IsNullOrWhiteSpace(cache)) throw new ArgumentException("cache_dir: give a folder.", "cache_dir");
            hub = hub with { CacheDir = cache };
        }
        if (r.GetValue(Offline)) hub = hub with { Offline = true };
        try
        {
            return ModelLocator.Resolve(model, hub, progress: new ConsoleProgressBar());
        }
        catch (ArgumentException e) when (e.ParamName == "modelOrHubId")
        {
            throw new ArgumentException(StripParameter(e.Message), "model");
        }
    }

    /// <summary>
    /// The texts of --input-file: one per line, UTF-8 (a leading BOM and CR of CRLF dropped), "-" for standard input.
    /// A final newline ends the last line; an empty line anywhere else is an error naming its number (skipping it
    /// would shift every output against its input).
    /// </summary>
    public static string[] ReadInputFile(string path)
    {
        byte[] bytes;
        string name = path == "-" ? "standard input" : $"'{path}'";
        if (path == "-")
        {
            using Stream stdin = Console.OpenStandardInput();
            var buffer = new MemoryStream();
            var chunk = new byte[81920];
            for (int n; (n = stdin.Read(chunk)) > 0;)
            {
                if (buffer.Length + n > MaxInputFileBytes)
                    throw new ArgumentException($"input_file: standard input is more than {MaxInputFileBytes:N0} bytes; split it.", "input_file");
                buffer.Write(chunk, 0, n);
            }
            bytes = buffer.ToArray();
        }
        else
        {
            bytes = ManagedT5.IO.InputFile.ReadAllBytes(path, MaxInputFileBytes, out string? problem);
            if (problem is not null)
                throw new ArgumentException($"input_file: {problem.TrimEnd('.')}; to read a pipe, give '-' and pipe the text in.", "input_file");
        }
        string text = ManagedT5.IO.InputFile.DecodeUtf8(bytes, name, out string? notUtf8)
            ?? throw new ArgumentException($"input_file: {notUtf8}", "input_file");
        if (text.EndsWith('\n')) text = text[..^1];
        string[] lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            if (lines[i].EndsWith('\r')) lines[i] = lines[i][..^1];
            if (string.IsNullOrWhiteSpace(lines[i]))
                throw new ArgumentException($"input_file: line {i + 1} of {name} is empty; give one text per line, without blank lines.", "input_file");
        }
        return lines;
    }

    /// <summary>
    /// Runs a parsed command line and returns the exit code. Help and --version run as parsed; a usage problem prints
    /// "error: --flag: reason. See 'managedt5 command --help'." and returns 2; an exception from the command prints one
    /// line (<see cref="Describe(Exception, string)"/>) and returns 2 for bad options, 1 otherwise.
    /// </summary>
    public static int Run(ParseResult parsed)
    {
        if (parsed.Action is CommandLineAction { ClearsParseErrors: true }) return parsed.Invoke();   // --help, --version
        if (UsageProblem(parsed) is string problem) return Usage(parsed, problem);
        try
        {
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            bool usage = e is ArgumentException;
            string line = usage ? $"error: {OptionMessage((ArgumentException)e, parsed)}" : Describe(e, Doing);
            if (usage) line += HelpPointer(parsed);
            Console.Error.WriteLine(line);
            if (Debugging) Console.Error.WriteLine(e);
            return usage ? UsageExitCode : FailureExitCode;
        }
    }

    private static bool Debugging => Environment.GetEnvironmentVariable("MANAGEDT5_DEBUG") is "1" or "true";

    /// <summary>The one line for a failure that is not a bad option, naming what the command was doing.</summary>
    internal static string Describe(Exception e, string doing) => e switch
    {
        OutOfMemoryException =>
            $"error: out of memory while {doing}; ask for less (fewer or shorter prompts, fewer beams or return sequences, --dtype int8).",
        OverflowException =>
            $"error: a size overflowed while {doing}; ask for less (fewer or shorter prompts, fewer beams or return sequences).",
        OperationCanceledException => $"error: cancelled while {doing}.",
        ModelLoadException or TokenizerException or IOException or UnauthorizedAccessException or NotSupportedException
            or FormatException or InvalidOperationException or System.Text.Json.JsonException => $"error: {OneLine(e.Message)}",
        _ => $"error: unexpected {e.GetType().Name} while {doing}: {OneLine(e.Message)} (set MANAGEDT5_DEBUG=1 for the stack trace).",
    };

    /// <summary>A library or CLI <see cref="ArgumentException"/> as "--flag: reason": ParamName (HF's snake_case name)
    /// and any snake_case option named in the reason become the command's flags; " (Parameter 'x')" and "Actual value
    /// was" go.</summary>
    private static string OptionMessage(ArgumentException e, ParseResult parsed)
    {
        Dictionary<string, string> flags = Flags(parsed);
        string message = StripParameter(e.Message);
        if (e is ArgumentOutOfRangeException { ActualValue: { } actual } && !message.Contains($"got {actual}"))
            message = $"{message.TrimEnd('.')}, got {actual}.";
        string? flag = null;
        if (e.ParamName is string name && flags.TryGetValue(name, out flag) && message.StartsWith(name + ": ", StringComparison.Ordinal))
            message = message[(name.Length + 2)..];
        message = SnakeCaseWord().Replace(message, m => flags.TryGetValue(m.Value, out string? f) ? f : m.Value);
        return OneLine(flag is null ? message : $"{flag}: {message}");
    }

    /// <summary>HF option name (num_beams) to flag (--num-beams) for every option the parsed command accepts, its own
    /// and the root's recursive ones: derived from the command's option list, so a new option needs no second entry.</summary>
    private static Dictionary<string, string> Flags(ParseResult parsed)
    {
        var flags = new Dictionary<string, string>(StringComparer.Ordinal);
        for (SymbolResult? s = parsed.CommandResult; s is not null; s = s.Parent)
            if (s is CommandResult c)
                foreach (Option o in c.Command.Options)
                    if (o.Name.StartsWith("--", StringComparison.Ordinal) && (ReferenceEquals(c, parsed.CommandResult) || o.Recursive))
                        flags.TryAdd(o.Name[2..].Replace('-', '_'), o.Name);
        return flags;
    }

    /// <summary>The first problem with how the command line was written, or null: an option-like word the command does
    /// not know (before "--"), else System.CommandLine's first parse error in the house form.</summary>
    private static string? UsageProblem(ParseResult parsed)
    {
        Command command = parsed.CommandResult.Command;
        int doubleDash = parsed.Tokens.ToList().FindIndex(t => t.Type == TokenType.DoubleDash);
        var strays = parsed.UnmatchedTokens.Where(LooksLikeOption).ToList();
        foreach (Argument argument in command.Arguments)
            if (parsed.GetResult(argument) is ArgumentResult a)
                foreach (Token t in a.Tokens)
                    if (LooksLikeOption(t.Value) && (doubleDash < 0 || IndexOf(parsed.Tokens, t) < doubleDash))
                        strays.Add(t.Value);
        if (strays.Count > 0)
        {
            string word = strays[0].Split('=', 2)[0];
            string? near = Nearest(word, AllOptionNames(parsed));
            return $"unknown option '{word}'{(near is null ? "" : $" (did you mean {near}?)")}" +
                   (command.Arguments.Count > 0 ? "; a text that starts with '-' goes after --" : "");
        }
        if (parsed.Errors.Count == 0) return null;
        string commands = string.Join(", ", command.Subcommands.Select(c => c.Name));
        if (parsed.UnmatchedTokens.Count > 0)
            return command.Subcommands.Count > 0 && parsed.UnmatchedTokens[0] == parsed.Tokens[0].Value
                ? $"unknown command '{parsed.UnmatchedTokens[0]}'; the commands are {commands}"
                : $"unexpected argument '{parsed.UnmatchedTokens[0]}'";
        if (command.Subcommands.Count > 0 && parsed.Tokens.Count == 0) return $"give a command: {commands}";
        ParseError error = parsed.Errors[0];
        if (error.SymbolResult is not OptionResult option) return error.Message.TrimEnd('.');
        string flag = option.Option.Name;
        if (error.Message.StartsWith("Cannot parse argument", StringComparison.Ordinal))
            return $"{flag}: '{option.Tokens.LastOrDefault()?.Value}' is not {TypeWord(option.Option.ValueType)}";
        if (error.Message.StartsWith("Required argument missing", StringComparison.Ordinal)) return $"{flag}: needs a value";
        return error.Message.Contains(flag, StringComparison.Ordinal) ? error.Message.TrimEnd('.') : $"{flag}: {error.Message.TrimEnd('.')}";
    }

    private static bool LooksLikeOption(string word) => word.Length > 1 && word[0] == '-';

    private static int IndexOf(IReadOnlyList<Token> tokens, Token token)
    {
        for (int i = 0; i < tokens.Count; i++) if (ReferenceEquals(tokens[i], token)) return i;
        return -1;
    }

    private static IEnumerable<string> AllOptionNames(ParseResult parsed)
    {
        for (SymbolResult? s = parsed.CommandResult; s is not null; s = s.Parent)
            if (s is CommandResult c)
                foreach (Option o in c.Command.Options)
                    if (ReferenceEquals(c, parsed.CommandResult) || o.Recursive) yield return o.Name;
    }

    /// <summary>The known option closest to a mistyped one (at most 2 edits, or one is the other's prefix).</summary>
    private static string? Nearest(string word, IEnumerable<string> names)
    {
        static int Distance(string a, string b)
        {
            var row = Enumerable.Range(0, b.Length + 1).ToArray();
            for (int i = 1; i <= a.Length; i++)
            {
                int previous = row[0];
                row[0] = i;
                for (int j = 1; j <= b.Length; j++)
                {
                    int keep = row[j];
                    row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), previous + (a[i - 1] == b[j - 1] ? 0 : 1));
                    previous = keep;
                }
            }
            return row[b.Length];
        }
        return names.Select(n => (Name: n, D: n.StartsWith(word, StringComparison.Ordinal) && word.Length > 3 ? 1 : Distance(word, n)))
            .Where(x => x.D <= 2).OrderBy(x => x.D).Select(x => x.Name).FirstOrDefault();
    }

    private static string TypeWord(Type type) => (Nullable.GetUnderlyingType(type) ?? type) switch
    {
        Type t when t == typeof(int) => $"an integer (from {int.MinValue} to {int.MaxValue})",
        Type t when t == typeof(ulong) => $"an integer (from 0 to {ulong.MaxValue})",
        Type t when t == typeof(float) || t == typeof(double) => "a number",
        Type t when t == typeof(bool) => "true or false",
        _ => "a valid value",
    };

    private static int Usage(ParseResult parsed, string problem)
    {
        Console.Error.WriteLine(OneLine($"error: {problem}.") + HelpPointer(parsed));
        return UsageExitCode;
    }

    private static string HelpPointer(ParseResult parsed)
    {
        var names = new List<string>();
        for (SymbolResult? s = parsed.CommandResult; s is not null; s = s.Parent)
            if (s is CommandResult c) names.Insert(0, c.Command.Name);
        return $" See '{string.Join(' ', names)} --help'.";
    }

    /// <summary>A message without .NET's " (Parameter 'x')" and "Actual value was ..." additions.</summary>
    private static string StripParameter(string message) =>
        string.Join(' ', message.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => !l.StartsWith("Actual value was", StringComparison.Ordinal))
            .Select(l => ParameterSuffix().Replace(l, "")).Where(l => l.Length > 0));

    /// <summary>One printable line: line breaks become spaces, other control characters (terminal escapes) \uXXXX.</summary>
    internal static string OneLine(string text)
    {
        var b = new StringBuilder(text.Length);
        foreach (char c in text.Trim())
            if (c is '\n' or '\r' or '\t') { if (b.Length > 0 && b[^1] != ' ') b.Append(' '); }
            else if (char.IsControl(c)) b.Append($"\\u{(int)c:X4}");
            else b.Append(c);
        return b.ToString();
    }

    [GeneratedRegex(@"\s*\(Parameter '[^']*'\)")]
    private static partial Regex ParameterSuffix();

    [GeneratedRegex(@"\b[a-z]+(?:_[a-z]+)+\b")]
    private static partial Regex SnakeCaseWord();
}
