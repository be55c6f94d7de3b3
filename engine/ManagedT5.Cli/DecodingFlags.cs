// The decoding flags shared by `generate` and `eval`: one flag per option of GenerationOptionTable (--num-beams for
// num_beams), typed by the option's kind, its help the table's meaning and default.
using System.CommandLine;
using System.Text.RegularExpressions;
using ManagedT5.Generation;

namespace ManagedT5.Cli;

internal static partial class DecodingFlags
{
    /// <summary>A flag for every option of the table, to add to a command.</summary>
    public static (GenerationOptionInfo Info, Option Flag)[] Create() => GenerationOptionTable.All.Select(o => (o, Flag(o))).ToArray();

    /// <summary>The options the command line gave, as the table takes them (absent flags left out).</summary>
    public static (GenerationOptionInfo Info, object Value)[] Given(ParseResult r, (GenerationOptionInfo Info, Option Flag)[] flags) =>
        flags.Select(d => (d.Info, Value: FlagValue(r, d.Info, d.Flag))).Where(d => d.Value is not null).Select(d => (d.Info, d.Value!)).ToArray();

    /// <summary>The flag of a table option: --num-beams for num_beams, typed by the option's kind, its help the
    /// table's meaning (option names in it as flags) and default.</summary>
    private static Option Flag(GenerationOptionInfo info)
    {
        string name = "--" + info.Name.Replace('_', '-');
        Option flag = info.Kind switch
        {
            GenerationOptionKind.Integer or GenerationOptionKind.OptionalInteger => new Option<int?>(name) { HelpName = "n" },
            GenerationOptionKind.Number => new Option<float?>(name) { HelpName = "x" },
            GenerationOptionKind.Boolean => new Option<bool?>(name),
            GenerationOptionKind.EarlyStopping => new Option<string?>(name) { HelpName = "when" },
            _ => new Option<ulong?>(name) { HelpName = "n" },
        };
        string meaning = OptionName().Replace(info.Description,
            m => GenerationOptionTable.Find(m.Value) is null ? m.Value : "--" + m.Value.Replace('_', '-'));
        flag.Description = $"{meaning} [{(info.IsHf ? "HF default" : "default")}: {info.DefaultText}]";
        return flag;
    }

    /// <summary>A flag's value as the table takes it, or null when the flag is absent.</summary>
    private static object? FlagValue(ParseResult r, GenerationOptionInfo info, Option flag) => flag switch
    {
        Option<int?> o => r.GetValue(o),
        Option<float?> o => r.GetValue(o),
        Option<bool?> o => r.GetValue(o),
        Option<ulong?> o => r.GetValue(o),
        Option<string?> o => r.GetValue(o) is not { } text ? null : text.ToLowerInvariant() switch
        {
            "true" => EarlyStopping.True,
            "false" => EarlyStopping.False,
            "never" => EarlyStopping.Never,
            _ => throw new ArgumentException($"{flag.Name}: '{text}' is not true, false or never."),
        },
        _ => throw new InvalidOperationException($"{info.Name}: no flag type for {info.Kind}"),
    };

    [GeneratedRegex("[a-z]+(_[a-z]+)+")]
    private static partial Regex OptionName();
}
