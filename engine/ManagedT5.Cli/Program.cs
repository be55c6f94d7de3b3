// managedt5 entry point: builds the command tree and turns every expected failure into one line on stderr and a
// non-zero exit code (no stack traces for bad input).
using System.CommandLine;
using ManagedT5.Cli;

var offline = new Option<bool>("--offline")
{
    Description = "Never download: use weights/ or the HuggingFace cache only (like HF_HUB_OFFLINE=1)",
    Recursive = true,
};
RootCommand root = new("managedt5: Flan-T5 / T5 inference in pure managed .NET")
{
    InspectCommand.Create(),
    GenerateCommand.Create(),
    TokenizeCommands.CreateTokenize(),
    TokenizeCommands.CreateDetokenize(),
    BenchCommand.Create(),
    TraceCommand.Create(),
};
root.Options.Add(offline);
ParseResult parsed = root.Parse(args);
if (parsed.GetValue(offline)) Environment.SetEnvironmentVariable("HF_HUB_OFFLINE", "1");
return parsed.Invoke();
