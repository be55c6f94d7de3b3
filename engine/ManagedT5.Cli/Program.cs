// managedt5 entry point: builds the command tree and hands the parsed command line to CliCommon.Run, which turns every
// failure into one line on stderr and a non-zero exit code (2: usage error, 1: runtime failure).
using System.CommandLine;
using System.CommandLine.Help;
using ManagedT5.Cli;

// A plain Command named "managedt5" rather than RootCommand, whose name would be the assembly's (ManagedT5.Cli) in help.
Command root = new(CliCommon.ToolName, "managedt5: Flan-T5 / T5 inference in pure managed .NET. Exit codes: 0 success, " +
                                       "1 failure (model, file, memory), 2 usage error (unknown option, bad value).")
{
    InspectCommand.Create(),
    GenerateCommand.Create(),
    TokenizeCommands.CreateTokenize(),
    TokenizeCommands.CreateDetokenize(),
    BenchCommand.Create(),
    TraceCommand.Create(),
    ScoreCommand.Create(),
    EvalCommand.Create(),
    EmbedCommand.Create(),
    ServeCommand.Create(),
    FinetuneCommand.Create(),
};
root.Options.Add(new HelpOption());
root.Options.Add(new VersionOption());
root.Options.Add(CliCommon.Offline);
root.Options.Add(CliCommon.CacheDir);
return CliCommon.Run(root.Parse(args));
