#!/usr/bin/env bash
# bench/gpu-check.sh: everything a lent GPU machine should check, in one run, ending in ONE JSON line on stdout.
#   1. what the machine is (nvidia-smi, dotnet, python/torch)
#   2. a Release build of the ILGPU tests and the command-line tool (needs the .NET SDK)
#   3. the ILGPU parity suite on CUDA, every case (MANAGEDT5_ILGPU_REQUIRE=cuda: a missing GPU fails, not skips)
#   4. the engine's benchmark on CUDA with random weights: flan-t5-small f32, flan-t5-base f32 and bf16
#   5. the PyTorch peer on CUDA for the same configs (the baseline the engine's numbers are compared to)
#
# Prepare (on the build machine, once per run): PEER_SRC=<shared bench folder> bash bench/gpu-check.sh --prepare copies the PyTorch peer into .device/
# (git-ignored; the device run carries it). The fixtures the suites read are tracked in tests/fixtures and travel
# with the working tree.
#
# Assumptions (each checked; an unmet one is reported in the JSON and its steps are skipped, never a hang):
#   - Runs from any directory; works in the repository root (the folder above bench/).
#   - An NVIDIA GPU with its driver (nvidia-smi, libcuda). ILGPU needs no CUDA toolkit.
#   - dotnet: `dotnet` on PATH, else .device/dotnet/dotnet (DOTNET_ROOT is set to it). Building and `dotnet test`
#     need the SDK; with none the .NET steps are skipped and the JSON says why.
#   - No network: NuGet restore uses $NUGET_PACKAGES, else .nuget/packages if carried, else ~/.nuget/packages.
#   - SKIP_BUILD=1 uses Release outputs already under bin/ instead of building.
#   - The peer runs when python3 imports torch with CUDA and .device/torch_peer.py exists: before the device run,
#     `PEER_SRC=<folder holding torch_peer.py> bench/gpu-check.sh --prepare` copies it there (as bench/run-all.sh takes
#     its peers from PEER_SRC).
#   - The whole run stays within BUDGET seconds (default 540); each step gets at most its own limit (TEST_TIMEOUT 240,
#     BENCH_TIMEOUT 90, PEER_TIMEOUT 90, BUILD_TIMEOUT 240) and never more than what is left of the budget.
# Output: stdout = one JSON line {gpu, dotnet, torch, steps: [{name, status, seconds, detail}], parity, bench, peer,
# failed}; the full log goes to $OUT/gpu-check.log when $OUT is set, else ./gpu-check.log. Exit status: failed steps.
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

if [ "${1:-}" = "--prepare" ]; then
    mkdir -p .device
    src=${PEER_SRC:?set PEER_SRC to the folder holding torch_peer.py (the shared bench folder, as for bench/run-all.sh)}
    if [ -f "$src/torch_peer.py" ]; then cp "$src/torch_peer.py" .device/torch_peer.py; echo "copied $src/torch_peer.py to .device/"; exit 0; fi
    echo "torch_peer.py not found in PEER_SRC=$src" >&2
    exit 1
fi

LOG="${OUT:+$OUT/}gpu-check.log"
[ -n "${OUT:-}" ] && mkdir -p "$OUT"
: > "$LOG"
RESULTS="$(mktemp -d)"   # one file per step and per captured JSON line; the summary is built from them
trap 'rm -rf "$RESULTS"' EXIT

BUDGET="${BUDGET:-540}"
TEST_TIMEOUT="${TEST_TIMEOUT:-240}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-90}"
PEER_TIMEOUT="${PEER_TIMEOUT:-90}"
BUILD_TIMEOUT="${BUILD_TIMEOUT:-240}"
BENCH_BF16_FLAGS="${BENCH_BF16_FLAGS:---dtype bf16}"
FAILED=0
STEP=0

log() { echo "$*" >> "$LOG"; }

# record NAME STATUS SECONDS DETAIL: one step's outcome, for the JSON line.
record() { STEP=$((STEP + 1)); printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" > "$RESULTS/step-$(printf %03d $STEP)"; }

# step NAME LIMIT COMMAND...: runs one step within its limit and what is left of the budget; output to the log and
# to $RESULTS/last. Returns the command's status.
step() {
    local name="$1" limit="$2"; shift 2
    local left=$((BUDGET - SECONDS - 15))
    if [ "$left" -lt 20 ]; then record "$name" skip 0 "no time left in the ${BUDGET}s budget"; return 125; fi
    [ "$limit" -gt "$left" ] && limit="$left"
    log ""; log "=== $name ($(date -u +%H:%M:%S), limit ${limit}s)"; log "\$ $*"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" > "$RESULTS/last" 2>&1
    local rc=$?
    cat "$RESULTS/last" >> "$LOG"
    local took=$((SECONDS - start))
    if [ "$rc" -eq 0 ]; then
        record "$name" pass "$took" ""
    else
        local detail="exit $rc"
        [ "$rc" -eq 124 ] && detail="timed out after ${limit}s"
        record "$name" fail "$took" "$detail: $(grep -m1 -iE 'error|exception|fail' "$RESULTS/last" | cut -c1-300)"
        FAILED=$((FAILED + 1))
    fi
    return "$rc"
}

skip() { log ""; log "=== $1: SKIPPED ($2)"; record "$1" skip 0 "$2"; }

# --- 1. the machine -------------------------------------------------------------------------------------------------
log "gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname) in $ROOT"
log "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
GPU=""
if command -v nvidia-smi >/dev/null 2>&1 && GPU="$(nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2>&1 | head -1)" \
    && nvidia-smi -L >/dev/null 2>&1; then
    log "gpu: $GPU"
else
    GPU_ERROR="${GPU:-nvidia-smi not found (no NVIDIA driver)}"
    GPU=""
    log "gpu: none ($GPU_ERROR)"
fi
log "cores: $(nproc), memory: $(free -g 2>/dev/null | awk '/Mem:/ {print $2 " GiB"}')"

DOTNET=""
if command -v dotnet >/dev/null 2>&1; then
    DOTNET="$(command -v dotnet)"
elif [ -x "$ROOT/.device/dotnet/dotnet" ]; then
    DOTNET="$ROOT/.device/dotnet/dotnet"
    export DOTNET_ROOT="$ROOT/.device/dotnet" PATH="$ROOT/.device/dotnet:$PATH"
fi
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
if [ -z "${NUGET_PACKAGES:-}" ] && [ -d "$ROOT/.nuget/packages" ]; then export NUGET_PACKAGES="$ROOT/.nuget/packages"; fi
DOTNET_VERSION=""
DOTNET_SDK=0
if [ -n "$DOTNET" ]; then
    DOTNET_VERSION="$("$DOTNET" --version 2>/dev/null || "$DOTNET" --list-runtimes 2>/dev/null | tail -1)"
    "$DOTNET" --list-sdks 2>/dev/null | grep -q . && DOTNET_SDK=1
    log "dotnet: $DOTNET ($DOTNET_VERSION, SDK: $DOTNET_SDK)"
else
    log "dotnet: not found (neither on PATH nor .device/dotnet/dotnet)"
fi

TORCH=""
if command -v python3 >/dev/null 2>&1 && python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
    TORCH="$(python3 -c "import torch; print(torch.__version__, 'cuda', torch.version.cuda)")"
fi
log "torch with CUDA: ${TORCH:-not available}"

# --- 2. build -------------------------------------------------------------------------------------------------------
BUILT=0
if [ -z "$DOTNET" ]; then
    skip "build" "no dotnet on this machine"
elif [ "${SKIP_BUILD:-0}" = "1" ]; then
    skip "build" "SKIP_BUILD=1: using carried Release outputs"; BUILT=1
elif [ "$DOTNET_SDK" = 0 ]; then
    skip "build" "dotnet has no SDK here"
else
    step "build ILGPU tests" "$BUILD_TIMEOUT" "$DOTNET" build tests/ManagedT5.Kernels.Ilgpu.Tests -c Release && BUILT=1
    [ -d engine/ManagedT5.Cli ] && { step "build ManagedT5.Cli" "$BUILD_TIMEOUT" "$DOTNET" build engine/ManagedT5.Cli -c Release || true; }
fi

# --- 3. parity on CUDA ----------------------------------------------------------------------------------------------
PARITY=""
if [ "$BUILT" != 1 ]; then
    skip "ILGPU parity suite on CUDA" "nothing built"
elif [ "$DOTNET_SDK" = 0 ]; then
    skip "ILGPU parity suite on CUDA" "dotnet test needs the SDK"
else
    # With a GPU a missing CUDA device fails the cases; without one they skip (a dry run shows the skip path works).
    REQUIRE=""; [ -n "$GPU" ] && REQUIRE=cuda
    MANAGEDT5_ILGPU_REQUIRE="$REQUIRE" step "ILGPU parity suite on CUDA" "$TEST_TIMEOUT" \
        "$DOTNET" test tests/ManagedT5.Kernels.Ilgpu.Tests -c Release --no-build --filter "DisplayName~Cuda" \
        --logger "console;verbosity=normal"
    # The console logger's totals: "Total tests: 16", "     Passed: 2", "     Skipped: 14", "     Failed: 0".
    PARITY="$(awk '/^Total tests:/ {t=$3} /^ +Passed:/ {p=$2} /^ +Failed:/ {f=$2} /^ +Skipped:/ {s=$2}
        END {if (t != "") printf "{\"total\": %d, \"passed\": %d, \"failed\": %d, \"skipped\": %d}", t, p, f, s}' "$RESULTS/last")"
    [ -n "$PARITY" ] || PARITY='{"note": "no test totals in the output (build or test host error): see the log"}'
fi

# --- 4. engine benchmark on CUDA ------------------------------------------------------------------------------------
bench() { # bench NAME CONFIG [EXTRA FLAGS...]: keeps the tool's JSON line as $RESULTS/bench-N
    local name="$1" config="$2"; shift 2
    if [ -z "$GPU" ]; then skip "bench $name" "no GPU"; return; fi
    step "bench $name" "$BENCH_TIMEOUT" "$DOTNET" run --project engine/ManagedT5.Cli -c Release --no-build -- \
        bench --device cuda --config "$config" --random-weights --json "$@"
    local line; line="$(grep -E '^\{' "$RESULTS/last" | tail -1)"
    [ -n "$line" ] && printf '%s\t%s\n' "$name" "$line" > "$RESULTS/bench-$STEP"
}
if [ "$BUILT" != 1 ] || [ -z "$DOTNET" ]; then
    skip "engine benchmark" "nothing built"
elif [ ! -d engine/ManagedT5.Cli ]; then
    skip "engine benchmark" "engine/ManagedT5.Cli not in this checkout"
else
    bench "flan-t5-small f32" tests/fixtures/configs/flan-t5-small.json
    bench "flan-t5-base f32" tests/fixtures/configs/flan-t5-base.json
    # shellcheck disable=SC2086
    bench "flan-t5-base bf16" tests/fixtures/configs/flan-t5-base.json $BENCH_BF16_FLAGS
fi

# --- 5. PyTorch peer on CUDA ----------------------------------------------------------------------------------------
PEER=""
for candidate in .device/torch_peer.py; do
    if [ -f "$candidate" ]; then PEER="$candidate"; break; fi
done
if [ -z "$PEER" ]; then
    skip "PyTorch peer" "no .device/torch_peer.py (run PEER_SRC=<shared bench folder> bench/gpu-check.sh --prepare before the device run)"
elif [ -z "$TORCH" ]; then
    skip "PyTorch peer" "python3 cannot import torch with CUDA"
else
    for config in flan-t5-small flan-t5-base; do
        step "torch peer $config" "$PEER_TIMEOUT" python3 "$PEER" --config "tests/fixtures/configs/$config.json" --device cuda
        line="$(grep -E '^\{' "$RESULTS/last" | tail -1)"
        [ -n "$line" ] && printf '%s\t%s\n' "$config" "$line" > "$RESULTS/peer-$STEP"
    done
fi

# --- the JSON line --------------------------------------------------------------------------------------------------
export GPU GPU_ERROR="${GPU_ERROR:-}" DOTNET_VERSION TORCH PARITY FAILED RESULTS SECONDS LOG
SUMMARY="$(python3 - <<'PY' 2>>"$LOG"
import glob, json, os
def lines(pattern):
    out = []
    for path in sorted(glob.glob(os.path.join(os.environ["RESULTS"], pattern))):
        with open(path) as f:
            out.append(f.read().rstrip("\n").split("\t"))
    return out
def parsed(rows):
    result = {}
    for name, text in rows:
        try: result[name] = json.loads(text)
        except ValueError: result[name] = {"unparsed": text[:300]}
    return result
steps = [{"name": n, "status": s, "seconds": int(t), "detail": d} for n, s, t, d in lines("step-*")]
print(json.dumps({
    "gpu": os.environ["GPU"] or None,
    "gpu_error": os.environ["GPU_ERROR"] or None,
    "dotnet": os.environ["DOTNET_VERSION"] or None,
    "torch": os.environ["TORCH"] or None,
    "steps": steps,
    "parity": json.loads(os.environ["PARITY"]) if os.environ["PARITY"] else None,
    "bench": parsed(lines("bench-*")),
    "peer": parsed(lines("peer-*")),
    "failed": int(os.environ["FAILED"]),
    "seconds": int(os.environ["SECONDS"]),
    "log": os.environ["LOG"],
}))
PY
)"
if [ -z "$SUMMARY" ]; then # no python3: the essentials by hand
    SUMMARY="{\"gpu\": \"${GPU//\"/}\", \"failed\": $FAILED, \"seconds\": $SECONDS, \"note\": \"python3 missing: see $LOG\"}"
fi
log ""; log "$SUMMARY"
echo "$SUMMARY"
exit "$FAILED"
