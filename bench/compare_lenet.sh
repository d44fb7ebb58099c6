#!/usr/bin/env bash
# compare_lenet.sh — LeNet-5 on (Fashion-)MNIST: metagrad (examples/03_lenet_mnist.cpp) against LibTorch
# (bench/lenet_torch.cpp) and PyTorch (bench/lenet_pytorch.py), same model, data, preprocessing and
# hyperparameters. For each thread count it trains each implementation for $EPOCHS epochs under
# /usr/bin/time -v and prints a table: epoch time (mean of epochs 2..E, the first one pays warm-up), images/s,
# final test accuracy, peak RSS, and the ratios torch/metagrad. It also measures the compile time and peak
# compiler memory of the metagrad example and of the LibTorch program (g++ -O2). Everything, per-epoch
# lines included, goes to bench/results/lenet_<date>.txt.
#
#   bash bench/compare_lenet.sh                       # 5 epochs, SGD, threads 1 and 2
#   EPOCHS=1 MAX_BATCHES=200 bash bench/compare_lenet.sh   # a quick look
#
# Settings (environment variables, defaults in brackets):
#   EPOCHS [5]  THREADS ["1 2"]  OPTIMIZER [sgd]  LR [the optimizer's default]  SEED [0]  MAX_BATCHES []
#   DATA [/usr/share/datasets/fashion-mnist]   any directory of MNIST-format IDX files, .gz or not
#   METAGRAD_LENET  path of a built examples/03_lenet_mnist (else built here from the source, if present;
#                   without either, metagrad is skipped with a note)
#   LENET_TORCH     path of a built lenet_torch (else built here)
#   PYTHON          a python with torch [the first of python3, /usr/bin/python3 that imports it]
#   BUILD_DIR [/tmp/metagrad-lenet-compare]  where programs built here go
#   METAGRAD_CXXFLAGS / METAGRAD_LIBS  how the example is compiled (defaults: what CMake gives examples on a
#                   Debian box with OpenMP and OpenBLAS: -O2 -march=native -fno-math-errno -fopenmp, -lopenblas -lz)
#   TORCH_INCLUDE [/usr/include/torch/csrc/api/include]  TORCH_LIBS [-ltorch -ltorch_cpu -lc10]
#   MEASURE_COMPILE [1]  0 skips the compile measurements of programs given by path
#   LOCK [/tmp/metagrad-build.lock]  every compile and run holds this flock, so measurements never overlap
#                   a compile on a shared machine; LOCK= (empty) runs without it
#   RESULTS [bench/results/lenet_<date>.txt]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

EPOCHS=${EPOCHS:-5}
THREADS=${THREADS:-"1 2"}
OPTIMIZER=${OPTIMIZER:-sgd}
LR=${LR:-}
SEED=${SEED:-0}
MAX_BATCHES=${MAX_BATCHES:-}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
BUILD_DIR=${BUILD_DIR:-/tmp/metagrad-lenet-compare}
METAGRAD_CXXFLAGS=${METAGRAD_CXXFLAGS:-"-std=c++20 -O2 -march=native -fno-math-errno -fopenmp -DMETAGRAD_WITH_OPENMP=1 -DMETAGRAD_WITH_BLAS=1"}
METAGRAD_LIBS=${METAGRAD_LIBS:-"-lopenblas -lz"}
TORCH_INCLUDE=${TORCH_INCLUDE:-/usr/include/torch/csrc/api/include}
TORCH_LIBS=${TORCH_LIBS:-"-ltorch -ltorch_cpu -lc10"}
MEASURE_COMPILE=${MEASURE_COMPILE:-1}
LOCK=${LOCK-/tmp/metagrad-build.lock}
stamp=$(date +%Y-%m-%d_%H%M)
RESULTS=${RESULTS:-$root/bench/results/lenet_$stamp.txt}

die() { echo "compare_lenet: $*" >&2; exit 1; }
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (Debian: apt-get install time)"
command -v g++ >/dev/null || die "g++ is missing"
mkdir -p "$BUILD_DIR" "$(dirname "$RESULTS")"
logs="$BUILD_DIR/logs_$stamp"
mkdir -p "$logs"

locked() { if [[ -n "$LOCK" ]]; then flock "$LOCK" "$@"; else "$@"; fi; }

# compile NAME OUTPUT ARGS...: g++ under /usr/bin/time -v; records "NAME wall_s peak_mib" in $logs/compile.txt.
compile() {
  local name=$1 out=$2
  shift 2
  echo "compiling $name ..." >&2
  if ! locked /usr/bin/time -v -o "$logs/compile_$name.time" g++ "$@" -o "$out" >"$logs/compile_$name.log" 2>&1; then
    cat "$logs/compile_$name.log" >&2
    die "compiling $name failed"
  fi
  local wall kib
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; ++i) s = s * 60 + p[i]; print s}' "$logs/compile_$name.time")
  kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$logs/compile_$name.time")
  echo "$name $wall $(awk -v k="$kib" 'BEGIN {printf "%.0f", k / 1024}')" >>"$logs/compile.txt"
}

# --- programs
: >"$logs/compile.txt"
example_src=$root/examples/03_lenet_mnist.cpp
if [[ -z "${METAGRAD_LENET:-}" ]]; then
  if [[ -f "$example_src" ]]; then
    METAGRAD_LENET=$BUILD_DIR/03_lenet_mnist
    # shellcheck disable=SC2086  # the flag variables are word lists on purpose
    compile metagrad "$METAGRAD_LENET" $METAGRAD_CXXFLAGS -I"$root/include" "$example_src" $METAGRAD_LIBS
  fi
elif [[ "$MEASURE_COMPILE" == 1 && -f "$example_src" ]]; then
  # shellcheck disable=SC2086
  compile metagrad "$BUILD_DIR/03_lenet_mnist.measure" $METAGRAD_CXXFLAGS -I"$root/include" "$example_src" $METAGRAD_LIBS
fi
if [[ -n "${METAGRAD_LENET:-}" && ! -x "$METAGRAD_LENET" ]]; then
  die "METAGRAD_LENET=$METAGRAD_LENET is not an executable"
fi

torch_flags=(-std=c++17 -O2 -I"$TORCH_INCLUDE")
if [[ -z "${LENET_TORCH:-}" ]]; then
  LENET_TORCH=$BUILD_DIR/lenet_torch
  # shellcheck disable=SC2086
  compile libtorch "$LENET_TORCH" "${torch_flags[@]}" "$here/lenet_torch.cpp" $TORCH_LIBS -lz
elif [[ "$MEASURE_COMPILE" == 1 ]]; then
  # shellcheck disable=SC2086
  compile libtorch "$BUILD_DIR/lenet_torch.measure" "${torch_flags[@]}" "$here/lenet_torch.cpp" $TORCH_LIBS -lz
fi

if [[ -z "${PYTHON:-}" ]]; then
  for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import torch' 2>/dev/null; then PYTHON=$p; break; fi
  done
fi

# --- runs
common=(--data "$DATA" --epochs "$EPOCHS" --optimizer "$OPTIMIZER" --seed "$SEED")
[[ -n "$LR" ]] && common+=(--lr "$LR")
[[ -n "$MAX_BATCHES" ]] && common+=(--max-batches "$MAX_BATCHES")

# run IMPL THREADS CMD...: per-epoch lines to $logs/run_IMPL_THREADS.log, /usr/bin/time -v to .time.
run() {
  local impl=$1 t=$2
  shift 2
  echo "running $impl, $t thread(s) ..." >&2
  if ! OMP_NUM_THREADS=$t locked /usr/bin/time -v -o "$logs/run_${impl}_$t.time" "$@" --threads "$t" "${common[@]}" \
    >"$logs/run_${impl}_$t.log" 2>&1; then
    echo "compare_lenet: $impl with $t thread(s) failed; its log:" >&2
    cat "$logs/run_${impl}_$t.log" >&2
  fi
}

notes=()
for t in $THREADS; do
  if [[ -n "${METAGRAD_LENET:-}" ]]; then
    run metagrad "$t" "$METAGRAD_LENET"
  fi
  run libtorch "$t" "$LENET_TORCH"
  if [[ -n "${PYTHON:-}" ]]; then
    run pytorch "$t" "$PYTHON" "$here/lenet_pytorch.py"
  fi
done
[[ -n "${METAGRAD_LENET:-}" ]] || notes+=("metagrad skipped: no $example_src and no METAGRAD_LENET")
[[ -n "${PYTHON:-}" ]] || notes+=("pytorch skipped: no python3 that imports torch (Debian: python3-torch)")

# --- report
{
  echo "# LeNet-5 comparison, $(date '+%Y-%m-%d %H:%M')"
  echo "machine: $(nproc) cpus, $(lscpu 2>/dev/null | awk -F': *' '/Model name/ {print $2; exit}'); $(g++ --version | head -1)"
  echo "git: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "data: $DATA  epochs: $EPOCHS  optimizer: $OPTIMIZER  lr: ${LR:-default}  seed: $SEED  max_batches: ${MAX_BATCHES:-all}"
  echo "metagrad: ${METAGRAD_LENET:-none} ($METAGRAD_CXXFLAGS $METAGRAD_LIBS)"
  echo "libtorch: $LENET_TORCH  pytorch: ${PYTHON:-none}"
  for n in "${notes[@]}"; do echo "note: $n"; done
  echo
  python3 - "$logs" "$THREADS" <<'EOF'
import os, re, sys

logs, threads = sys.argv[1], sys.argv[2].split()
impls = ["metagrad", "libtorch", "pytorch"]


def epochs(path):
    rows = []
    for line in open(path, errors="replace"):
        f = line.split()
        if len(f) >= 3 and f[0] == "epoch" and f[1].isdigit():
            kv = dict(zip(f[2::2], f[3::2]))
            try:
                rows.append({k: float(v) for k, v in kv.items()})
            except ValueError:
                pass
    return rows


def peak_mib(path):
    for line in open(path, errors="replace"):
        if "Maximum resident set size" in line:
            return int(line.split(":")[-1]) / 1024.0
    return float("nan")


res = {}
for impl in impls:
    for t in threads:
        log = os.path.join(logs, f"run_{impl}_{t}.log")
        if not os.path.exists(log):
            continue
        rows = epochs(log)
        if not rows:
            res[(impl, t)] = None
            continue
        steady = rows[1:] or rows  # epoch 1 pays warm-up
        acc = rows[-1].get("test_acc", float("nan"))
        if acc <= 1.0:  # a fraction, not a percentage
            acc *= 100.0
        res[(impl, t)] = {
            "epoch_s": sum(r["epoch_s"] for r in steady) / len(steady),
            "ips": sum(r["images_per_s"] for r in steady) / len(steady),
            "acc": acc,
            "rss": peak_mib(os.path.join(logs, f"run_{impl}_{t}.time")),
            "accs": " ".join(f"{r.get('test_acc', float('nan')):.2f}" for r in rows),
        }

print("| impl | threads | epoch s (mean 2..E) | images/s | final test acc % | peak RSS MiB | test acc per epoch |")
print("|---|---|---|---|---|---|---|")
for t in threads:
    for impl in impls:
        if (impl, t) not in res:
            continue
        r = res[(impl, t)]
        if r is None:
            print(f"| {impl} | {t} | failed (see log) | | | | |")
            continue
        print(f"| {impl} | {t} | {r['epoch_s']:.2f} | {r['ips']:.0f} | {r['acc']:.2f} | {r['rss']:.0f} | {r['accs']} |")

print()
print("ratios torch/metagrad (epoch time > 1: metagrad is faster; peak RSS > 1: metagrad uses less memory):")
any_ratio = False
for t in threads:
    m = res.get(("metagrad", t))
    for impl in ("libtorch", "pytorch"):
        o = res.get((impl, t))
        if m and o:
            any_ratio = True
            print(f"  threads {t}: {impl}/metagrad epoch time {o['epoch_s'] / m['epoch_s']:.2f}, "
                  f"peak RSS {o['rss'] / m['rss']:.2f}")
if not any_ratio:
    print("  (none: no metagrad run)")

print()
print("compile (g++ -O2, under /usr/bin/time -v):")
comp = os.path.join(logs, "compile.txt")
for line in open(comp) if os.path.exists(comp) else []:
    name, wall, mib = line.split()
    print(f"  {name}: {float(wall):.1f} s, peak compiler memory {int(mib)} MiB ({int(mib) / 1024:.2f} GiB)")
EOF
  echo
  echo "## per-epoch output"
  for f in "$logs"/run_*.log; do
    [[ -e "$f" ]] || continue
    echo "### $(basename "$f" .log)"
    grep -E '^(epoch|lenet|03_lenet|metagrad)' "$f" || tail -5 "$f"
  done
} | tee "$RESULTS"
echo "written: $RESULTS (raw logs: $logs)" >&2
