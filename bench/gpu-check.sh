#!/usr/bin/env bash
# bench/gpu-check.sh: everything a lent GPU machine should check, in one run, ending in ONE JSON line on stdout.
#   1. what the machine is (nvidia-smi, dotnet, python/torch)
#   2. the device runner (bench/ManagedT5.Bench.GpuCheck): the self-contained one that --prepare published, when the
#      machine has no .NET SDK (the lent GPU machine has none); else a Release build of it
#   3. the parity suites on CUDA, every case: the HF-fixture parity suite (tests/ManagedT5.Tests: hidden states,
#      logits, generated tokens, beam scores) and the ILGPU kernel parity suite, plus the PTX compile checks
#      (MANAGEDT5_ILGPU_REQUIRE=cuda with a GPU: a missing device fails, not skips)
#   4. the engine's benchmark on CUDA with random weights: flan-t5-small f32, flan-t5-base f32 and bf16
#   5. the PyTorch peer on CUDA for the same configs (the baseline the engine's numbers are compared to)
#
# Prepare (on a machine with the .NET SDK, before the device run): bash bench/gpu-check.sh --prepare
#   publishes the runner self-contained for linux-x64 (trimmed; it also runs `managedt5 bench`) into .device/gpucheck,
#   checks the published binary here (PTX compile checks, CPU parity), packs it into .device/gpucheck.tar.xz (TRIM=0:
#   the untrimmed framework, should the trimmed one fail on the device), copies
#   the PyTorch peer (PEER_SRC=<folder holding torch_peer.py>; the peer is not in this repository) to .device/, measures what a
#   device run would carry, and prints the `carry` list and the command line for the device tool's `run`.
#   .device/ is git-ignored; the fixtures the suites read are tracked in tests/fixtures and travel with the tree.
#
# Assumptions (each checked; an unmet one is reported in the JSON and its steps are skipped, never a hang):
#   - Runs from any directory; works in the repository root (the folder above bench/).
#   - An NVIDIA GPU with its driver (nvidia-smi, libcuda). ILGPU needs no CUDA toolkit.
#   - dotnet: `dotnet` on PATH with an SDK builds the runner from source; without one the published runner
#     (.device/gpucheck, unpacked from .device/gpucheck.tar.xz if needed) runs; with neither the .NET steps are skipped.
#   - No network: NuGet restore uses $NUGET_PACKAGES, else .nuget/packages if carried, else ~/.nuget/packages.
#   - SKIP_BUILD=1 uses the Release build already under bin/ instead of building.
#   - The peer runs when python3 imports torch with CUDA and .device/torch_peer.py exists.
#   - The whole run stays within BUDGET seconds (default 540); each step gets at most its own limit (TEST_TIMEOUT 240,
#     BENCH_TIMEOUT 90, PEER_TIMEOUT 90, BUILD_TIMEOUT 240) and never more than what is left of the budget.
# Output: stdout = one JSON line {gpu, dotnet, runner, torch, steps: [{name, status, seconds, detail}], parity, bench,
# peer, failed}; parity is the runner's own summary line (backend, device, total, passed, failed, skipped,
# worst_rel_error, worst_beam_score_diff, suites, skip_reasons, failures). The full log goes to $OUT/gpu-check.log
# when $OUT is set, else ./gpu-check.log. Exit status: failed steps.
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

RUNNER_NAME=ManagedT5.Bench.GpuCheck
PUBLISHED=.device/gpucheck
PACKED=.device/gpucheck.tar.xz
LIMIT_MIB=64   # what one device run may carry: tracked + untracked-not-ignored files + carried paths

if [ "${1:-}" = "--prepare" ]; then
    set -o pipefail
    command -v dotnet >/dev/null 2>&1 || { echo "gpu-check --prepare: needs the .NET SDK (dotnet) on this machine" >&2; exit 1; }
    mkdir -p .device
    rm -rf "$PUBLISHED" "$PACKED"
    echo "publishing bench/$RUNNER_NAME self-contained for linux-x64 into $PUBLISHED ..."
    # TRIM=0 publishes the whole framework (about 110 MB, 36 MiB packed) should the trimmed one fail on the device.
    # (Only ever =false on the command line: a global PublishTrimmed=true reaches the referenced projects too.)
    untrimmed=(); [ "${TRIM:-1}" = 0 ] && untrimmed=(-p:PublishTrimmed=false)
    dotnet publish "bench/$RUNNER_NAME" -c Release -r linux-x64 --self-contained -o "$PUBLISHED" -nologo -v quiet "${untrimmed[@]}" \
        || { echo "gpu-check --prepare: publish failed" >&2; exit 1; }
    # The published (trimmed) binary, run as the device will, with no .NET on PATH: the PTX compile checks pass and
    # the CUDA cases skip cleanly without a GPU; the CPU backend passes every HF parity case.
    for backend in cuda cpu; do
        line="$(env PATH=/usr/bin:/bin DOTNET_ROOT= "$PUBLISHED/$RUNNER_NAME" --backend "$backend" | tail -1)" \
            || { echo "gpu-check --prepare: the published runner failed on --backend $backend: $line" >&2; exit 1; }
        echo "self-check --backend $backend: $line"
    done
    echo "packing $PACKED ..."
    tar -cJf "$PACKED" -C .device gpucheck || { echo "gpu-check --prepare: tar -cJ failed" >&2; exit 1; }
    carry=("$PACKED")
    src="${PEER_SRC:-}"
    if [ -z "$src" ]; then
        echo "note: PEER_SRC is not set (the folder holding torch_peer.py): the device run will skip the PyTorch peer" >&2
    elif [ -f "$src/torch_peer.py" ]; then
        cp "$src/torch_peer.py" .device/torch_peer.py && carry+=(.device/torch_peer.py) && echo "copied $src/torch_peer.py to .device/"
    else
        echo "note: no torch_peer.py in PEER_SRC=$src: the device run will skip the PyTorch peer" >&2
    fi
    # What a device run carries: the working tree (tracked and untracked-not-ignored files) and the carried paths.
    tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
    carried=$(du -cb "${carry[@]}" | tail -1 | cut -f1)
    total=$((tree + carried))
    awk -v t="$tree" -v c="$carried" -v l="$LIMIT_MIB" -v what="${carry[*]}" 'BEGIN {
        printf "sizes: working tree %.1f MiB, carried %.1f MiB (%s), total %.1f MiB of the %d MiB a run may carry\n",
            t / 1048576, c / 1048576, what, (t + c) / 1048576, l }'
    if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
        echo "WARNING: over the ${LIMIT_MIB} MiB limit: the device tool will refuse the run until the working tree is smaller" >&2
    fi
    printf 'carry: ['; sep=""; for c in "${carry[@]}"; do printf '%s"%s"' "$sep" "$c"; sep=", "; done; printf ']\n'
    echo 'run command (timeout_s 600): BUDGET=540 bash bench/gpu-check.sh'
    exit 0
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

# --- 2. the runner ---------------------------------------------------------------------------------------------------
# With the SDK: build it (framework-dependent) from source. Without: the self-contained publish of --prepare.
RUNNER=""
RUNNER_KIND=""
if [ "$DOTNET_SDK" = 1 ] && [ "${SKIP_BUILD:-0}" != "1" ]; then
    step "build $RUNNER_NAME" "$BUILD_TIMEOUT" "$DOTNET" build "bench/$RUNNER_NAME" -c Release \
        && RUNNER="bench/$RUNNER_NAME/bin/Release/net10.0/$RUNNER_NAME" RUNNER_KIND="built from source"
elif [ "$DOTNET_SDK" = 1 ] && [ -x "bench/$RUNNER_NAME/bin/Release/net10.0/$RUNNER_NAME" ]; then
    skip "build" "SKIP_BUILD=1: using the Release build under bin/"
    RUNNER="bench/$RUNNER_NAME/bin/Release/net10.0/$RUNNER_NAME" RUNNER_KIND="Release build under bin/"
else
    if [ ! -x "$PUBLISHED/$RUNNER_NAME" ] && [ -f "$PACKED" ]; then
        # tar -J needs xz; Python's tarfile reads .tar.xz on its own.
        step "unpack $PACKED" 60 bash -c "tar -xJf '$PACKED' -C .device 2>/dev/null || python3 -c 'import tarfile, sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' '$PACKED' .device"
    fi
    if [ -x "$PUBLISHED/$RUNNER_NAME" ]; then
        RUNNER="$PUBLISHED/$RUNNER_NAME" RUNNER_KIND="self-contained publish ($PUBLISHED)"
        log "runner: $RUNNER (no .NET SDK here: the self-contained publish)"
    else
        skip "runner" "no .NET SDK here and no published runner: run bash bench/gpu-check.sh --prepare on a machine with the SDK and carry $PACKED"
    fi
fi

# --- 3. parity on CUDA ----------------------------------------------------------------------------------------------
PARITY=""
if [ -z "$RUNNER" ]; then
    skip "parity suites on CUDA" "no runner"
else
    # With a GPU a missing CUDA device fails the cases; without one they skip (a dry run shows the skip path works).
    REQUIRE=""; [ -n "$GPU" ] && REQUIRE=cuda
    MANAGEDT5_ILGPU_REQUIRE="$REQUIRE" step "parity suites on CUDA" "$TEST_TIMEOUT" "$RUNNER" --backend cuda
    # The runner's last line is its JSON summary.
    PARITY="$(grep -E '^\{"backend"' "$RESULTS/last" | tail -1)"
    [ -n "$PARITY" ] || PARITY='{"note": "no summary line from the runner (crash or timeout): see the log"}'
fi

# --- 4. engine benchmark on CUDA ------------------------------------------------------------------------------------
bench() { # bench NAME CONFIG [EXTRA FLAGS...]: keeps the tool's JSON line as $RESULTS/bench-N
    local name="$1" config="$2"; shift 2
    if [ -z "$GPU" ]; then skip "bench $name" "no GPU"; return; fi
    # The runner's `bench` is `managedt5 bench` (the CLI's entry point); tiered compilation off as the CLI ships.
    DOTNET_TieredCompilation=0 step "bench $name" "$BENCH_TIMEOUT" "$RUNNER" bench --device cuda --config "$config" \
        --random-weights --json "$@"
    local line; line="$(grep -E '^\{' "$RESULTS/last" | tail -1)"
    [ -n "$line" ] && printf '%s\t%s\n' "$name" "$line" > "$RESULTS/bench-$STEP"
}
if [ -z "$RUNNER" ]; then
    skip "engine benchmark" "no runner"
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
    skip "PyTorch peer" "no .device/torch_peer.py (run bash bench/gpu-check.sh --prepare, PEER_SRC=<folder holding torch_peer.py>, before the device run)"
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
export GPU GPU_ERROR="${GPU_ERROR:-}" DOTNET_VERSION RUNNER_KIND TORCH PARITY FAILED RESULTS SECONDS LOG
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
    "runner": os.environ["RUNNER_KIND"] or None,
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
