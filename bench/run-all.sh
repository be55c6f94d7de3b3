#!/usr/bin/env bash
# Regenerates the end-to-end numbers of docs/BENCHMARKS.md on this machine, in one session: ManagedT5 (f32, bf16,
# int8) beside the PyTorch peer and the ONNX Runtime peer, interleaved, 3 runs each; prints one JSON line per run.
# The peers (torch_peer.py, ort/) come from $PEER_SRC, the shared bench folder beside the repository; they are copied to $PEER_DIR
# (outside the repository, so its central package versions do not apply to the ORT peer's project).
# Needs: apt-get install -y python3-torch python3-onnx libopenblas0-openmp   (and the .NET 10 SDK)
# Usage: PEER_SRC=<shared>/bench bench/run-all.sh [flan-t5-small|flan-t5-base ...] > bench-results.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
configs=("${@:-flan-t5-small}")
threads=${THREADS:-2}
runs=${RUNS:-3}
peer_src=${PEER_SRC:?set PEER_SRC to the folder holding torch_peer.py and ort/ (the shared bench folder)}
peer=${PEER_DIR:-/tmp/managedt5-peer}
mkdir -p "$peer"
[ -f "$peer/torch_peer.py" ] || cp "$peer_src/torch_peer.py" "$peer/"
[ -d "$peer/ort" ] || { cp -r "$peer_src/ort" "$peer/ort"; chmod -R u+w "$peer/ort"; }
export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp:${LD_LIBRARY_PATH:-}
dotnet build engine/ManagedT5.Cli -c Release -v q -nologo >/dev/null
cli="dotnet engine/ManagedT5.Cli/bin/Release/net10.0/ManagedT5.Cli.dll"
ort_ok=1
dotnet build "$peer/ort" -c Release -v q -nologo >/dev/null 2>&1 || { ort_ok=0; echo "warning: ORT peer did not build" >&2; }
for name in "${configs[@]}"; do
  cfg=tests/fixtures/configs/$name.json
  if [ "$ort_ok" = 1 ] && [ ! -d "/tmp/ort-peer/$name" ]; then
    (repo=$PWD; cd "$peer/ort" && /usr/bin/python3 export_onnx.py "$repo/$cfg" >&2) || { ort_ok=0; echo "warning: ONNX export failed" >&2; }
  fi
  for run in $(seq "$runs"); do
    for dtype in f32 bf16 int8; do
      $cli bench --config "$cfg" --random-weights --dtype $dtype --threads "$threads" --json $([ "$run" -gt 1 ] && echo --no-roofline)
    done
    /usr/bin/python3 "$peer/torch_peer.py" --config "$cfg" --threads "$threads"
    if [ "$ort_ok" = 1 ]; then
      dotnet "$peer/ort/bin/Release/net10.0/OrtPeer.dll" "/tmp/ort-peer/$name" --threads "$threads" || true
    fi
  done
done
