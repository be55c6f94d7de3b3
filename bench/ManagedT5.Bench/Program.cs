// Entry point: `dotnet run -c Release --project bench/ManagedT5.Bench -- --filter '*'` runs the BenchmarkDotNet
// kernel benchmarks; `-- --quick [threads]` prints the roofline report instead; `-- --quick-decode [threads]` times a
// decoder step's Linears (from memory) at the row counts of greedy, beam4 and batch8; `-- --quick-embed [threads] [folder|-] [f32,bf16,int8]`
// prints sentence-embedding throughput (32 x 128 tokens) per weight format; `-- --quick-train [threads] [small|base]` times
// a training step's matrix products and attention op by op, then whole steps with dropout off and on (`... small dropout`:
// those alone).
using BenchmarkDotNet.Running;
using ManagedT5.Bench;

if (args.Length > 0 && args[0] == "--quick-embed")
{
    EmbeddingThroughput.Quick(args.Length > 1 ? int.Parse(args[1]) : 0, args.Length > 2 && args[2] != "-" ? args[2] : null,
        args.Length > 3 ? args[3].Split(',').Select(f => Enum.Parse<ManagedT5.Kernels.WeightFormat>(f, ignoreCase: true)).ToArray() : null);
    return;
}
if (args.Length > 0 && args[0] == "--quick-train")
{
    if (args.Length > 3 && args[3] == "dropout") { TrainingQuick.DropoutSteps(int.Parse(args[1]), args[2]); return; }   // the dropout lines alone
    MicroKernelCeiling.Run();
    TrainingQuick.Run(args.Length > 1 ? int.Parse(args[1]) : 0, args.Length > 2 ? args[2] : "small");
    return;
}
if (args.Length > 4 && args[0] == "--quick-gemm-shape")
{
    QuickReport.GemmShape(int.Parse(args[1]), int.Parse(args[2]), int.Parse(args[3]), int.Parse(args[4]));
    return;
}
if (args.Length > 0 && args[0] == "--quick-decode")
{
    QuickReport.DecodeRows(args.Length > 1 ? int.Parse(args[1]) : 0);
    return;
}
if (args.Length > 0 && args[0] is "--quick" or "--quick-gemm")
{
    QuickReport.Run(args.Length > 1 ? int.Parse(args[1]) : 0, gemmOnly: args[0] == "--quick-gemm");
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(QuickReport).Assembly).Run(args, BenchConfig.Create());
