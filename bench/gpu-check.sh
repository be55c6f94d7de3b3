#!/usr/bin/env bash
# bench/gpu-check.sh: everything a lent GPU machine should check, in one run, into one log.
#   1. what the machine is (nvidia-smi, dotnet, python/torch)
#   2. a Release build of the ILGPU tests and the command-line tool
#   3. the ILGPU parity suite on CUDA (MANAGEDT5_ILGPU_REQUIRE=cuda: a missing GPU fails instead of skipping)
#   4. the engine's benchmark on CUDA with random weights: flan-t5-small f32, flan-t5-base f32 and bf16
#   5. the PyTorch peer on CUDA for the same configs (the baseline the engine's numbers are compared to)
#
# Assumptions (each checked; an unmet one is logged and its steps are skipped, never a hang):
#   - Run from any directory; the script works in the repository root (the folder above bench/).
#   - An NVIDIA GPU with its driver (nvidia-smi and libcuda). ILGPU needs no CUDA toolkit.
#   - dotnet: the `dotnet` on PATH, else ./.dotnet/dotnet (an SDK carried with the checkout; DOTNET_ROOT is set to it).
#     Neither present: the build, tests and benchmark are skipped and the log says so.
#   - The machine has no network. NuGet restore must find every package locally: $NUGET_PACKAGES if set, else
#     ./.nuget/packages if carried with the checkout, else ~/.nuget/packages.
#   - SKIP_BUILD=1 uses Release outputs already under bin/ (built elsewhere and carried) instead of building.
#   - The benchmark command is engine/ManagedT5.Cli's `bench --device cuda --config FILE --random-weights --json`;
#     the bf16 run adds $BENCH_BF16_FLAGS (default "--dtype bf16"; change it if the tool spells it otherwise).
#   - The PyTorch peer runs when python3 can import torch with CUDA and .peer/torch_peer.py (or, failing that,
#     ./shared/bench/torch_peer.py) exists (copy it there before the run).
#   - Per-step time limits (seconds): TEST_TIMEOUT (default 420), BENCH_TIMEOUT (240), PEER_TIMEOUT (240).
# Output: $OUT/gpu-check.log when $OUT is set, else ./gpu-check.log (also echoed). Exit status: the number of
# failed steps (0 = all passed; skipped steps do not count).
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
LOG="${OUT:+$OUT/}gpu-check.log"
[ -n "${OUT:-}" ] && mkdir -p "$OUT"
: > "$LOG"

TEST_TIMEOUT="${TEST_TIMEOUT:-420}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-240}"
PEER_TIMEOUT="${PEER_TIMEOUT:-240}"
BENCH_BF16_FLAGS="${BENCH_BF16_FLAGS:---dtype bf16}"
FAILED=0
SUMMARY=()

log() { echo "$*" | tee -a "$LOG"; }

# step NAME TIMEOUT COMMAND...: runs one step with a time limit, output to the log, and records its outcome.
step() {
    local name="$1" limit="$2"; shift 2
    log ""
    log "=== $name ($(date -u +%H:%M:%S), limit ${limit}s)"
    log "\$ $*"
    local start=$SECONDS
    timeout --kill-after=20 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    local took=$((SECONDS - start))
    if [ "$rc" -eq 0 ]; then
        SUMMARY+=("PASS  $name (${took}s)")
    else
        [ "$rc" -eq 124 ] && log "--- timed out after ${limit}s"
        SUMMARY+=("FAIL  $name (exit $rc, ${took}s)")
        FAILED=$((FAILED + 1))
    fi
    return "$rc"
}

skip() { log ""; log "=== $1: SKIPPED ($2)"; SUMMARY+=("SKIP  $1 ($2)"); }

# --- 1. the machine -------------------------------------------------------------------------------------------------
log "gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname) in $ROOT"
log "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown) $(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l | tr -d ' ') changed files"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1 | tee -a "$LOG"
else
    log "nvidia-smi: not found (no NVIDIA driver?); the CUDA steps below will fail or skip"
fi
log "cores: $(nproc), memory: $(free -g 2>/dev/null | awk '/Mem:/ {print $2 " GiB"}')"

DOTNET=""
if command -v dotnet >/dev/null 2>&1; then
    DOTNET="$(command -v dotnet)"
elif [ -x "$ROOT/.dotnet/dotnet" ]; then
    DOTNET="$ROOT/.dotnet/dotnet"
    export DOTNET_ROOT="$ROOT/.dotnet"
    export PATH="$ROOT/.dotnet:$PATH"
fi
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
if [ -z "${NUGET_PACKAGES:-}" ] && [ -d "$ROOT/.nuget/packages" ]; then export NUGET_PACKAGES="$ROOT/.nuget/packages"; fi
if [ -n "$DOTNET" ]; then
    log "dotnet: $DOTNET ($("$DOTNET" --version 2>&1)); NuGet packages: ${NUGET_PACKAGES:-$HOME/.nuget/packages}"
else
    log "dotnet: not found (neither on PATH nor ./.dotnet/dotnet)"
fi

PYTHON_TORCH=""
if command -v python3 >/dev/null 2>&1 && python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
    PYTHON_TORCH="$(python3 -c "import torch; print(torch.__version__, 'cuda', torch.version.cuda)")"
    log "torch: $PYTHON_TORCH"
else
    log "torch with CUDA: not available"
fi

# --- 2. build -------------------------------------------------------------------------------------------------------
BUILT=0
if [ -z "$DOTNET" ]; then
    skip "build" "no dotnet"
elif [ "${SKIP_BUILD:-0}" = "1" ]; then
    skip "build" "SKIP_BUILD=1: using carried Release outputs"
    BUILT=1
else
    step "build ILGPU tests (Release)" 600 "$DOTNET" build tests/ManagedT5.Kernels.Ilgpu.Tests -c Release && BUILT=1
    if [ -d engine/ManagedT5.Cli ]; then
        step "build ManagedT5.Cli (Release)" 600 "$DOTNET" build engine/ManagedT5.Cli -c Release || true
    fi
fi

# --- 3. parity on CUDA ----------------------------------------------------------------------------------------------
if [ "$BUILT" = "1" ]; then
    export MANAGEDT5_ILGPU_REQUIRE=cuda
    step "ILGPU parity suite on CUDA" "$TEST_TIMEOUT" \
        "$DOTNET" test tests/ManagedT5.Kernels.Ilgpu.Tests -c Release --no-build \
        --filter "DisplayName~Cuda" --logger "console;verbosity=normal" || true
    unset MANAGEDT5_ILGPU_REQUIRE
else
    skip "ILGPU parity suite on CUDA" "nothing built"
fi

# --- 4. engine benchmark on CUDA ------------------------------------------------------------------------------------
bench() { # bench NAME CONFIG [EXTRA FLAGS...]
    local name="$1" config="$2"; shift 2
    # shellcheck disable=SC2086
    step "bench $name" "$BENCH_TIMEOUT" "$DOTNET" run --project engine/ManagedT5.Cli -c Release --no-build -- \
        bench --device cuda --config "$config" --random-weights --json "$@" || true
}
if [ -z "$DOTNET" ]; then
    skip "engine benchmark" "no dotnet"
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
for candidate in .peer/torch_peer.py shared/bench/torch_peer.py; do
    if [ -f "$candidate" ]; then PEER="$candidate"; break; fi
done
if [ -z "$PEER" ]; then
    skip "PyTorch peer" "no .peer/torch_peer.py"
elif [ -z "$PYTHON_TORCH" ]; then
    skip "PyTorch peer" "python3 cannot import torch with CUDA"
else
    for config in flan-t5-small flan-t5-base; do
        step "torch peer $config (cuda)" "$PEER_TIMEOUT" \
            python3 "$PEER" --config "tests/fixtures/configs/$config.json" --device cuda || true
    done
fi

# --- summary --------------------------------------------------------------------------------------------------------
log ""
log "=== summary: $FAILED failed"
for line in "${SUMMARY[@]}"; do log "$line"; done
exit "$FAILED"
