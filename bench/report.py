#!/usr/bin/env python3
"""Turns bench/run-all.sh's JSON lines into docs/BENCHMARKS.md's tables: median of the runs per engine and
config, and each engine's ratio to ONNX Runtime and PyTorch measured in the same session.
Usage: bench/report.py bench-results.jsonl [more.jsonl ...] > table.md
The tables come from the first file; the machine's limits (read bandwidth, FMA peak) are the best measured in any
of the files (other runs on the same machine the same day), since one reading can land in a disturbed moment."""
import json, statistics, sys
from collections import defaultdict

FIELDS = [("encode_128_ms", "encode 128 (ms)", False), ("greedy_ms_per_token", "greedy (ms/token)", False),
          ("beam4_ms_per_token", "beam4 (ms/token)", False), ("batch8_tokens_per_s", "batch8 (tokens/s)", True)]
runs = defaultdict(list)
limits = defaultdict(list)
for index, path in enumerate(sys.argv[1:]):
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        key = (r.get("config"), r["engine"])
        if "read_gb_s" in r:
            limits[r.get("config")].append(r)
        if index == 0:
            runs[key].append(r)

for config in sorted({k[0] for k in runs}):
    engines = sorted(e for c, e in runs if c == config)
    med = {e: {f: statistics.median(x[f] for x in runs[(config, e)]) for f, _, _ in FIELDS} for e in engines}
    ort = next((e for e in engines if e.startswith("onnxruntime")), None)
    torch = next((e for e in engines if e.startswith("pytorch")), None)
    print(f"### {config} ({len(runs[(config, engines[0])])} interleaved runs, median)\n")
    print("| engine | " + " | ".join(n for _, n, _ in FIELDS) + " | vs ORT (enc / greedy / beam4 / batch8) | vs PyTorch (same) |")
    print("|---|" + "---:|" * (len(FIELDS) + 2))
    for e in engines:
        def ratios(peer):
            if peer is None or peer == e:
                return "—"
            # time ratios (ours / peer: < 1 is faster), throughput ratio (ours / peer: > 1 is faster)
            return " / ".join(f"{med[e][f] / med[peer][f]:.2f}x" for f, _, _ in FIELDS)
        print(f"| {e} | " + " | ".join(f"{med[e][f]:g}" for f, _, _ in FIELDS) + f" | {ratios(ort)} | {ratios(torch)} |")
    print()
    # The machine's limits: the best read bandwidth and FMA peak measured by any engine's first run this session (a
    # single measurement on a shared machine can land in a disturbed moment; the best one is what the hardware does).
    rooflines = limits[config]
    if rooflines:
        gbps = max(r["read_gb_s"] for r in rooflines)
        gflops = max(r["fma_gflop_s"] for r in rooflines)
        print(f"Machine limits (best of {len(rooflines)} measurements on this machine today): read bandwidth {gbps} GB/s, "
              f"FMA peak {gflops} GFLOP/s.\n")
        for e in engines:
            r = next((x for x in runs[(config, e)] if "weight_bytes_per_token" in x), None)
            if r is None:
                continue
            bound = r["weight_bytes_per_token"] / (gbps * 1e9) * 1e3
            enc = r["encoder_gflop_128"] / gflops / (med[e]["encode_128_ms"] / 1e3)
            print(f"- {e}: weights per token {r['weight_bytes_per_token'] / 1e6:.1f} MB -> bandwidth bound "
                  f"{bound:.3f} ms/token; greedy (median) at {bound / med[e]['greedy_ms_per_token']:.0%} of it, i.e. "
                  f"{med[e]['greedy_ms_per_token'] / bound:.2f}x the bound; encoder {r['encoder_gflop_128']} GFLOP, "
                  f"encode (median) at {enc:.0%} of FMA peak"
                  + (" (its GEMMs multiply int8 with VNNI, so the fp32 FMA peak is not its ceiling)" if e.endswith("int8") else ""))
    print()
    # Load time and resident memory (ours only: the peers do not report them), medians over the runs.
    loads = [e for e in engines if all("load_warm_ms" in x for x in runs[(config, e)])]
    if loads:
        print("Load and memory (median; the checkpoint is F32, so bf16/int8 convert at load; resident = the whole process):\n")
        for e in loads:
            m = {f: statistics.median(x[f] for x in runs[(config, e)])
                 for f in ("load_first_ms", "load_warm_ms", "checkpoint_mb", "resident_after_load_mb", "resident_after_run_mb")}
            limit = 1.1 * m["checkpoint_mb"] + 50
            print(f"- {e}: load {m['load_first_ms']:g} ms first in the process, {m['load_warm_ms']:g} ms warm; checkpoint "
                  f"{m['checkpoint_mb']:g} MB; resident {m['resident_after_load_mb']:g} MB after load, "
                  f"{m['resident_after_run_mb']:g} MB after the timings ({m['resident_after_run_mb'] / limit:.2f}x of "
                  f"1.1 x checkpoint + 50 MB = {limit:.0f} MB)")
        print()
