// Entry point: dotnet run -c Release --project bench/ManagedT5.Bench.Tokenizer [-- BenchmarkDotNet args]
// Runs the encode benchmarks; compare with `/usr/bin/python3 bench/tokenizer_peer.py` (sentencepiece).

using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(ManagedT5.Bench.Tokenizer.EncodeBenchmarks).Assembly).Run(args.Length == 0 ? ["--filter", "*"] : args);
