// managedt5 entry point: builds the command tree and turns every expected failure into one line on stderr and a
// non-zero exit code (no stack traces for bad input).
using System.CommandLine;
using ManagedT5.Cli;

RootCommand root = new("managedt5: Flan-T5 / T5 inference in pure managed .NET")
{
    InspectCommand.Create(),
    GenerateCommand.Create(),
    TokenizeCommands.CreateTokenize(),
    TokenizeCommands.CreateDetokenize(),
    BenchCommand.Create(),
};
return root.Parse(args).Invoke();
