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
# Prepare (on a machine with the .NET SDK, before the device run; commit or stash changes to tests/fixtures first):
#   bash bench/gpu-check.sh --prepare
#   1. publishes the runner self-contained for linux-x64 (trimmed; it also runs `managedt5 bench`) into .device/gpucheck;
#   2. packs the fixtures a device run needs (bench/ManagedT5.Bench.GpuCheck/device-fixtures.txt: the four model
#      folders the parity suite reads and configs/) into .device/fixtures.tar.xz;
#   3. checks the published binary here, with no .NET on PATH: PTX compile checks (CUDA cases skip without a GPU),
#      and every CPU parity case on the packed fixtures alone (unpacked to a temporary folder, MANAGEDT5_FIXTURES);
#   4. packs the runner into .device/gpucheck.tar.xz (TRIM=0: the untrimmed framework, should the trimmed one fail on
#      the device) and copies the PyTorch peer (PEER_SRC=<folder holding torch_peer.py>; not in this repository);
#   5. slims the tree that travels (SLIM=0 leaves it whole): the tracked tree is ~110 MiB, nearly all tests/fixtures,
#      and a run may carry 64 MiB, so everything in tests/fixtures but its README moves to a stash in the git
#      directory (never sent) -- it refuses a tree with changes under tests/fixtures, or one already slimmed;
#   6. measures what the device tool counts (tracked files on disk + untracked-not-ignored + shared/ + carried) and
#      prints the `carry` list and the command line for the device tool's `run`.
#   .device/ is git-ignored. The device run (below) unpacks .device/fixtures.tar.xz into tests/fixtures when they
#   are missing. Afterwards, here: bash bench/gpu-check.sh --restore puts tests/fixtures back, byte for byte
#   (it refuses when a file there differs from the stash), and shows git status clean.
#   --slim alone does steps 2, 5 and 6 (the runner already packed); --sizes only measures. Sizes, what the subset
#   leaves untested on the GPU, and the steps with the device tool: docs/GPU-CHECK.md.
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

FIXTURES=tests/fixtures
FIXTURE_LIST=bench/$RUNNER_NAME/device-fixtures.txt
FIXTURES_PACKED=.device/fixtures.tar.xz
AIM_MIB=58     # what --prepare aims under, leaving room for a torch peer and a grown runner

# The paths under tests/fixtures that a device run gets, one a line (comments and blank lines left out).
listed_fixtures() { sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$FIXTURE_LIST" | grep -v '^$'; }

# Whether any listed fixture is missing from tests/fixtures (a slimmed tree, or the device before unpacking).
fixtures_missing() { local p; while read -r p; do [ -e "$FIXTURES/$p" ] || return 0; done < <(listed_fixtures); return 1; }

# unpack_fixtures DEST: the packed fixtures into DEST (tar -J needs xz; Python's tarfile reads .tar.xz on its own).
unpack_fixtures() {
    mkdir -p "$1" && { tar -xJf "$FIXTURES_PACKED" -C "$1" 2>/dev/null \
        || python3 -c 'import tarfile, sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$FIXTURES_PACKED" "$1"; }
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# The stash of a slimmed tree: inside the git directory, which the device tool never sends (it sends the files git
# lists: tracked, and untracked-not-ignored). Per worktree: each checkout slims on its own.
stash_dir() { echo "$(git rev-parse --absolute-git-dir)/gpucheck-fixtures-stash"; }

# sizes CARRIED...: what the device tool counts, printed; returns 1 over the limit.
sizes() {
    local tree shared=0 carried=0 total
    # Tracked files present on disk and untracked files that are not ignored (a moved-away tracked file is not sent).
    tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
    # shared/ travels even when ignored.
    if [ -d shared ] && git check-ignore -q shared; then shared=$(du -sb shared | cut -f1); fi
    [ "$#" -gt 0 ] && carried=$(du -cb "$@" | tail -1 | cut -f1)
    total=$((tree + shared + carried))
    echo "sizes: working tree $(mib "$tree") MiB (tests/fixtures in it: $(mib "$(git ls-files -z -- "$FIXTURES" | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')") MiB)$([ "$shared" -gt 0 ] && echo ", shared/ $(mib "$shared") MiB"), carried $(mib "$carried") MiB${*:+ ($*)}, total $(mib "$total") MiB of the $LIMIT_MIB MiB a run may carry (aim: $AIM_MIB)"
    if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
        if [ -d "$FIXTURES/models" ] && [ ! -e "$(stash_dir)" ]; then
            echo "gpu-check: over the ${LIMIT_MIB} MiB limit: the device tool will refuse the run; slim the tree first (bash bench/gpu-check.sh --prepare, or --slim)" >&2
        else
            echo "gpu-check: over the ${LIMIT_MIB} MiB limit: the device tool will refuse the run; leave fewer folders in $FIXTURE_LIST or carry less" >&2
        fi
        return 1
    fi
    [ "$total" -gt $((AIM_MIB * 1048576)) ] && echo "note: over the ${AIM_MIB} MiB aimed at, with little margin" >&2
    return 0
}

# Refuses (exit 1) a tree that cannot be slimmed: already slimmed, or changes under tests/fixtures.
check_slimmable() {
    local stash dirty
    stash="$(stash_dir)"
    if [ -e "$stash" ]; then
        echo "gpu-check: this tree is already slimmed (the stash $stash exists): run bash bench/gpu-check.sh --restore first" >&2
        exit 1
    fi
    dirty="$(git status --porcelain --untracked-files=all --ignored=no -- "$FIXTURES")"
    if [ -n "$dirty" ]; then
        echo "gpu-check: refusing to slim: $FIXTURES has changes (commit or stash them first, so --restore can prove the tree whole):" >&2
        echo "$dirty" | head -10 | sed 's/^/  /' >&2
        exit 1
    fi
    local p missing=0
    while read -r p; do
        [ -e "$FIXTURES/$p" ] || { echo "gpu-check: $FIXTURE_LIST names $FIXTURES/$p, which is not in this tree" >&2; missing=1; }
    done < <(listed_fixtures)
    [ "$missing" = 0 ] || exit 1
}

# Packs the listed fixtures into $FIXTURES_PACKED (xz -9: a 64 MiB window, so the models' identical tokenizer files
# are stored once).
pack_fixtures() {
    mkdir -p .device
    rm -f "$FIXTURES_PACKED"
    echo "packing $FIXTURES_PACKED: $(listed_fixtures | tr '\n' ' ')..."
    listed_fixtures | tar -cf - --sort=name -C "$FIXTURES" -T - | xz -9 -T1 > "$FIXTURES_PACKED.tmp" \
        && mv "$FIXTURES_PACKED.tmp" "$FIXTURES_PACKED" \
        || { rm -f "$FIXTURES_PACKED.tmp"; echo "gpu-check: packing the fixtures failed (tar, xz)" >&2; exit 1; }
}

# Moves everything in tests/fixtures but its README to the stash, printing what moved.
slim() {
    local stash entry moved=0
    stash="$(stash_dir)"
    mkdir -p "$stash" || { echo "gpu-check: cannot create $stash" >&2; exit 1; }
    git rev-parse HEAD > "$stash/.commit"
    for entry in "$FIXTURES"/* "$FIXTURES"/.[!.]*; do
        [ -e "$entry" ] || continue
        [ "$entry" = "$FIXTURES/README.md" ] && continue
        local size; size=$(du -sb "$entry" | cut -f1)
        mv "$entry" "$stash/" || { echo "gpu-check: moving $entry to $stash failed: run bash bench/gpu-check.sh --restore" >&2; exit 1; }
        echo "moved $entry ($(awk -v b="$size" 'BEGIN { if (b < 104858) printf "%.0f KiB", b / 1024; else printf "%.1f MiB", b / 1048576 }')) to $stash/"
        moved=$((moved + size))
    done
    echo "slimmed: $(mib "$moved") MiB of $FIXTURES moved out of the tree that travels (the device run unpacks $FIXTURES_PACKED);"
    echo "  put it back with: bash bench/gpu-check.sh --restore"
}

# Moves the stash back. A folder the device-style unpack put there must hold only files identical to the stash's;
# every entry is checked before anything moves.
restore() {
    local stash entry name bad
    stash="$(stash_dir)"
    if [ ! -d "$stash" ]; then echo "gpu-check --restore: nothing to restore (no stash at $stash)"; return 0; fi
    for entry in "$stash"/* "$stash"/.[!.]*; do
        [ -e "$entry" ] || continue
        name="$(basename "$entry")"
        [ "$name" = .commit ] || [ ! -e "$FIXTURES/$name" ] && continue
        # Only in the stash: not unpacked (fine). Only here, or different: changed since the slim (refuse).
        bad="$(diff -rq "$FIXTURES/$name" "$entry" 2>&1 | grep -v "^Only in $stash")"
        if [ -n "$bad" ]; then
            echo "gpu-check --restore: $FIXTURES/$name differs from the stash $entry; move your changes away, then run --restore again (nothing was moved):" >&2
            echo "$bad" | head -10 | sed 's/^/  /' >&2
            exit 1
        fi
    done
    for entry in "$stash"/* "$stash"/.[!.]*; do
        [ -e "$entry" ] || continue
        name="$(basename "$entry")"
        [ "$name" = .commit ] && continue
        rm -rf "${FIXTURES:?}/$name"
        mv "$entry" "$FIXTURES/" || { echo "gpu-check --restore: moving $entry back failed" >&2; exit 1; }
        echo "restored $FIXTURES/$name"
    done
    rm -f "$stash/.commit" && rmdir "$stash" || { echo "gpu-check --restore: $stash is not empty" >&2; exit 1; }
    local status; status="$(git status --porcelain --untracked-files=all -- "$FIXTURES")"
    if [ -n "$status" ]; then
        echo "gpu-check --restore: $FIXTURES is back but git status shows changes:" >&2; echo "$status" | head -10 >&2; exit 1
    fi
    local stat; stat="$(git diff --stat -- "$FIXTURES" | tail -1)"
    echo "git status --porcelain -- $FIXTURES: clean; git diff --stat -- $FIXTURES: ${stat:-empty}"
}

# The carried paths that exist: the runner, the fixtures, the peer.
carried_paths() { local c; for c in "$PACKED" "$FIXTURES_PACKED" .device/torch_peer.py; do [ -f "$c" ] && echo "$c"; done; }

print_run() {
    local carry; mapfile -t carry < <(carried_paths)
    printf 'carry: ['; local sep="" c; for c in "${carry[@]}"; do printf '%s"%s"' "$sep" "$c"; sep=", "; done; printf ']\n'
    echo 'run command (timeout_s 600): BUDGET=540 bash bench/gpu-check.sh'
    echo 'afterwards, here: bash bench/gpu-check.sh --restore'
}

case "${1:-}" in
--restore) restore; exit 0 ;;
--sizes) mapfile -t carry < <(carried_paths); sizes "${carry[@]}"; exit $? ;;
--slim)
    check_slimmable
    pack_fixtures
    slim
    mapfile -t carry < <(carried_paths)
    sizes "${carry[@]}" || exit 1
    print_run
    exit 0 ;;
esac

if [ "${1:-}" = "--prepare" ]; then
    set -o pipefail
    command -v dotnet >/dev/null 2>&1 || { echo "gpu-check --prepare: needs the .NET SDK (dotnet) on this machine" >&2; exit 1; }
    [ "${SLIM:-1}" = 0 ] || check_slimmable   # before the long publish
    mkdir -p .device
    rm -rf "$PUBLISHED" "$PACKED"
    echo "publishing bench/$RUNNER_NAME self-contained for linux-x64 into $PUBLISHED ..."
    # TRIM=0 publishes the whole framework (about 110 MB, 36 MiB packed) should the trimmed one fail on the device.
    # (Only ever =false on the command line: a global PublishTrimmed=true reaches the referenced projects too.)
    untrimmed=(); [ "${TRIM:-1}" = 0 ] && untrimmed=(-p:PublishTrimmed=false)
    dotnet publish "bench/$RUNNER_NAME" -c Release -r linux-x64 --self-contained -o "$PUBLISHED" -nologo -v quiet "${untrimmed[@]}" \
        || { echo "gpu-check --prepare: publish failed" >&2; exit 1; }
    pack_fixtures
    # The published (trimmed) binary, run as the device will, with no .NET on PATH: the PTX compile checks pass and
    # the CUDA cases skip cleanly without a GPU; the CPU backend passes every HF parity case on the packed fixtures.
    sent="$(mktemp -d)"
    unpack_fixtures "$sent" || { rm -rf "$sent"; echo "gpu-check --prepare: cannot unpack $FIXTURES_PACKED" >&2; exit 1; }
    for backend in cuda cpu; do
        line="$(env PATH=/usr/bin:/bin DOTNET_ROOT= MANAGEDT5_FIXTURES="$sent" "$PUBLISHED/$RUNNER_NAME" --backend "$backend" | tail -1)" \
            || { rm -rf "$sent"; echo "gpu-check --prepare: the published runner failed on --backend $backend (packed fixtures): $line" >&2; exit 1; }
        echo "self-check --backend $backend on the packed fixtures: $line"
    done
    rm -rf "$sent"
    echo "packing $PACKED ..."
    tar -cJf "$PACKED" -C .device gpucheck || { echo "gpu-check --prepare: tar -cJ failed" >&2; exit 1; }
    src="${PEER_SRC:-}"
    rm -f .device/torch_peer.py
    if [ -z "$src" ]; then
        echo "note: PEER_SRC is not set (the folder holding torch_peer.py): the device run will skip the PyTorch peer" >&2
    elif [ -f "$src/torch_peer.py" ]; then
        cp "$src/torch_peer.py" .device/torch_peer.py && echo "copied $src/torch_peer.py to .device/"
    else
        echo "note: no torch_peer.py in PEER_SRC=$src: the device run will skip the PyTorch peer" >&2
    fi
    if [ "${SLIM:-1}" = 0 ]; then
        echo "SLIM=0: the tree is left whole; the device run will not need $FIXTURES_PACKED"
        rm -f "$FIXTURES_PACKED"
    else
        slim
    fi
    mapfile -t carry < <(carried_paths)
    sizes "${carry[@]}" || exit 1
    print_run
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

# The fixtures: a tree slimmed by --prepare has sent them packed; a case whose folder is still missing skips, naming it.
if [ -f "$FIXTURES_PACKED" ] && fixtures_missing; then
    export -f unpack_fixtures; export FIXTURES_PACKED
    step "unpack $FIXTURES_PACKED" 60 bash -c 'unpack_fixtures "$1"' _ "$FIXTURES"
elif fixtures_missing; then
    skip "fixtures" "$FIXTURES lacks some of $FIXTURE_LIST and there is no $FIXTURES_PACKED: their cases skip"
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
