#!/usr/bin/env bash
# bench/run_gpu.sh — the whole GPU check in one command, for a machine with an NVIDIA GPU (written for an
# H100, sm_90, 16 cores, no network): configure a CUDA build, build the CUDA tests, bench_cuda, bench_cudnn
# and the LeNet example, record nvidia-smi, run the CUDA tests (ctest -L cuda), the benchmarks, LeNet-5 on
# MNIST-format data beside PyTorch (bench/lenet_pytorch.py, same model, data and batch size) at batch 64 and
# 256, and summarise the ratios.
#
#   bench/run_gpu.sh [build-dir]          (default build-gpu; JOBS=16, CUDA_ARCH=90 override)
#   DATA=dir bench/run_gpu.sh             (MNIST-format IDX files; default /usr/share/datasets/fashion-mnist,
#                                          else data/fashion-mnist in the tree, else a synthetic set is made)
#   CUDA_MODELS=OFF bench/run_gpu.sh      (leaves out the LeNet example's CUDA build and the LeNet GPU tests,
#                                          the longest nvcc builds: about 5 1/2 minutes each on a 2-core
#                                          machine; with LENET_BIN=path a prebuilt 03_lenet_mnist_cuda is used)
#   CMAKE_ARGS="..." bench/run_gpu.sh      (extra configure options)
#   BUNDLE=gpu-bundle bench/run_gpu.sh    (no build: run the programs bench/gpu_bundle.sh built on a machine
#                                          without a GPU; its lib/ and this machine's CUDA libraries go on
#                                          LD_LIBRARY_PATH, its data/ is the LeNet data. The way to fit the
#                                          whole check into one short device call.)
#
# Everything lands in bench/results/gpu-<date>/ (and is copied to $OUT when set): environment.txt (what was
# found and what is missing), nvidia-smi.txt, configure.txt, build.txt, tests.txt, bench_cuda.{txt,json},
# pytorch.{txt,json}, summary.md. Exit status: 0 when the tests passed and the bench ran; 1 when a CUDA test
# failed; 2 when configuring or building failed; 3 when bench_cuda failed. Partial results are kept in
# every case. Budget: under 10 minutes (most of it nvcc).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
BUILD=${1:-build-gpu}
JOBS=${JOBS:-16}
CUDA_ARCH=${CUDA_ARCH:-90}
STAMP=$(date +%Y-%m-%d_%H%M%S)
RES=bench/results/gpu-$STAMP
mkdir -p "$RES"
START=$(date +%s)
status=0

say() { echo "[run_gpu $(($(date +%s) - START))s] $*" | tee -a "$RES/run.log"; }
fail() { # fail <code> <message>: keep the first (most fundamental) failure code
  [ "$status" -eq 0 ] && status=$1
  say "FAILED: $2"
}
# step <name> <timeout-s> <command...>: runs the command, output to the terminal and $RES/<name>.txt.
step() {
  local name=$1 limit=$2
  shift 2
  say "$name: $*"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$RES/$name.txt"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 124 ] && say "$name: timed out after ${limit}s"
  return "$rc"
}

finish() {
  if [ -f "$RES/bench_cuda.json" ] && command -v python3 >/dev/null; then
    local torch_json=""
    [ -s "$RES/pytorch.json" ] && torch_json="$RES/pytorch.json"
    python3 bench/report_gpu.py "$RES/bench_cuda.json" $torch_json >"$RES/summary.md" 2>&1
  fi
  {
    echo
    echo "exit status: $status (0 ok, 1 CUDA test failure, 2 configure/build failure, 3 bench failure)"
    echo "wall time: $(($(date +%s) - START)) s"
  } >>"$RES/summary.md"
  say "results in $RES"
  [ -f "$RES/lenet_summary.md" ] && cat "$RES/lenet_summary.md" >>"$RES/summary.md"
  [ -f "$RES/summary.md" ] && cat "$RES/summary.md"
  if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT" && cp -r "$RES" "$OUT/" && say "copied to $OUT/$(basename "$RES")"
  fi
  exit "$status"
}
trap finish EXIT

# ---- what this machine has -------------------------------------------------------------------------------
if ! command -v nvcc >/dev/null; then
  for d in /usr/local/cuda/bin /opt/cuda/bin; do [ -x "$d/nvcc" ] && export PATH="$d:$PATH" && break; done
fi
missing=()
{
  echo "date: $(date -Iseconds)"
  echo "host: $(hostname), $(nproc) cores, $(free -g 2>/dev/null | awk '/Mem:/ {print $2 " GiB"}')"
  for tool in cmake g++ nvcc nvidia-smi python3 ninja; do
    if command -v "$tool" >/dev/null; then
      echo "$tool: $(command -v "$tool") ($("$tool" --version 2>&1 | grep -m1 -iE 'version|[0-9]+\.[0-9]+' | head -c 120))"
    else
      echo "$tool: MISSING"
      [ "$tool" != ninja ] && missing+=("$tool")
    fi
  done
  found=""
  for d in /usr/include /usr/local/include; do [ -f "$d/doctest/doctest.h" ] && found="$d/doctest/doctest.h"; done
  echo "doctest: ${found:-MISSING (Debian: doctest-dev) — the CUDA tests cannot be built}"
  [ -z "$found" ] && missing+=("doctest")
  found=""
  for d in /usr/include /usr/local/include; do [ -f "$d/benchmark/benchmark.h" ] && found="$d/benchmark/benchmark.h"; done
  echo "google benchmark: ${found:-MISSING (Debian: libbenchmark-dev) — bench_cuda cannot be built}"
  [ -z "$found" ] && missing+=("libbenchmark")
  if command -v python3 >/dev/null; then
    t=$(python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -1)
    echo "python3 torch: $t"
    python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null || missing+=("torch-with-cuda")
  fi
  echo "missing: ${missing[*]:-nothing}"
} 2>&1 | tee "$RES/environment.txt"
missing_line=$(grep '^missing:' "$RES/environment.txt")

step nvidia-smi 30 nvidia-smi || fail 2 "nvidia-smi (no driver or no GPU?)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit \
  --format=csv >>"$RES/nvidia-smi.txt" 2>&1

# ---- a prebuilt bundle: libraries and programs, no build ---------------------------------------------------
if [ -n "${BUNDLE:-}" ]; then
  if [ ! -d "$BUNDLE/bin" ] && [ -f "$BUNDLE/programs.tar.xz" ]; then
    say "unpacking $BUNDLE/programs.tar.xz"
    tar -C "$BUNDLE" -xJf "$BUNDLE/programs.tar.xz" || { fail 2 "unpacking $BUNDLE/programs.tar.xz"; exit; }
  fi
  [ -x "$BUNDLE/bin/metagrad_cuda_tests" ] || { fail 2 "BUNDLE=$BUNDLE has no bin/metagrad_cuda_tests (run bench/gpu_bundle.sh)"; exit; }
  # CUDA's libraries come from this machine: the toolkit's lib64, or the pip wheels next to PyTorch.
  libdirs=("$(cd "$BUNDLE/lib" && pwd)")
  roots=(/usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu
    /usr/local/nvidia/lib64)
  for d in /usr/local/cuda-*/lib64 /usr/local/cuda-*/lib; do [ -d "$d" ] && roots+=("$d"); done
  while IFS= read -r d; do roots+=("$d"); done < <(python3 -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null)
  for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcudnn.so.9; do
    hit=$(find "${roots[@]}" -maxdepth 5 -name "$lib" 2>/dev/null | head -1)
    if [ -n "$hit" ]; then
      libdirs+=("$(dirname "$hit")")
      echo "$lib: $hit" >>"$RES/environment.txt"
    else
      echo "$lib: NOT FOUND under ${roots[*]}" >>"$RES/environment.txt"
    fi
  done
  LD_LIBRARY_PATH=$(printf '%s:' "${libdirs[@]}")${LD_LIBRARY_PATH:-}
  export LD_LIBRARY_PATH
  cp "$BUNDLE/MANIFEST.txt" "$RES/bundle-manifest.txt" 2>/dev/null
  for p in "$BUNDLE"/bin/*; do
    echo "== ldd $p" && ldd "$p" | grep -E 'not found|cud|cublas|benchmark|blas|dnnl'
  done >>"$RES/environment.txt" 2>&1
  grep -q 'not found' "$RES/environment.txt" && say "some shared libraries were not found: see environment.txt"
  [ -z "${DATA:-}" ] && [ -d "$BUNDLE/data/fashion-mnist" ] && DATA=$BUNDLE/data/fashion-mnist
  BUILD=$BUNDLE/bin
fi

# ---- configure and build -----------------------------------------------------------------------------------
if [ -z "${BUNDLE:-}" ]; then
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if [ -f "$BUILD/CMakeCache.txt" ]; then gen=(); fi # keep the generator of an existing build tree
step configure 180 cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" -DMETAGRAD_WITH_CUDA=ON -DMETAGRAD_BUILD_TESTS=ON \
  -DMETAGRAD_BUILD_BENCH=ON -DMETAGRAD_BUILD_EXAMPLES=ON -DMETAGRAD_BUILD_CUDA_MODELS="${CUDA_MODELS:-ON}" \
  ${CMAKE_ARGS:-} || { fail 2 "configure ($missing_line)"; exit; }

# Both targets in one build, going on past a failure so one broken target does not hide the other.
keep_going=(-k)
grep -q 'CMAKE_GENERATOR:INTERNAL=Ninja' "$BUILD/CMakeCache.txt" && keep_going=(-k 0)
targets=()
grep -q 'metagrad_cuda_tests' "$BUILD/CMakeFiles/TargetDirectories.txt" 2>/dev/null && targets+=(metagrad_cuda_tests)
for t in bench_cuda bench_cudnn 03_lenet_mnist_cuda; do
  grep -q "/$t.dir" "$BUILD/CMakeFiles/TargetDirectories.txt" 2>/dev/null && targets+=("$t")
done
[ ${#targets[@]} -eq 0 ] && { fail 2 "neither metagrad_cuda_tests nor bench_cuda is configured ($missing_line)"; exit; }
step build 480 cmake --build "$BUILD" --target "${targets[@]}" -j "$JOBS" -- "${keep_going[@]}" ||
  fail 2 "build of ${targets[*]}"
fi

# ---- tests ---------------------------------------------------------------------------------------------------
tests_bin=$(find "$BUILD" -name metagrad_cuda_tests -type f -perm -u+x | head -1)
if [ -n "${BUNDLE:-}" ]; then
  step tests 300 "$tests_bin" --duration=true || fail 1 "CUDA tests"
elif [ -n "$tests_bin" ]; then
  step tests 300 ctest --test-dir "$BUILD" -L cuda --output-on-failure -V --timeout 280 || fail 1 "CUDA tests"
else
  fail 2 "metagrad_cuda_tests was not built"
fi
# The tests pass by skipping when they see no device (CI has none); here that is a failure: CUDA 13 needs a
# driver of the 580 series or newer, and an older one shows no device to the runtime.
if grep -q 'skipped: no CUDA device' "$RES/tests.txt" 2>/dev/null; then
  fail 1 "the CUDA tests saw no device (nvidia-smi.txt has the driver; CUDA 13 needs 580 or newer)"
fi

# ---- benchmarks ---------------------------------------------------------------------------------------------
bench_bin=$(find "$BUILD" -name bench_cuda -type f -perm -u+x | head -1)
if [ -n "$bench_bin" ]; then
  step bench_cuda 300 "$bench_bin" --benchmark_out="$RES/bench_cuda.json" --benchmark_out_format=json ||
    fail 3 "bench_cuda"
else
  fail 2 "bench_cuda was not built"
fi
have_torch=0
python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null && have_torch=1
if [ "$have_torch" -eq 1 ]; then
  step pytorch 240 python3 bench/mlp_step_pytorch.py --out "$RES/pytorch.json" || say "PyTorch baseline failed"
else
  say "PyTorch with CUDA not available: no PyTorch baseline ($missing_line)"
fi
cudnn_bin=$(find "$BUILD" -name bench_cudnn -type f -perm -u+x | head -1)
if [ -n "$cudnn_bin" ]; then
  step bench_cudnn 240 "$cudnn_bin" --benchmark_out="$RES/bench_cudnn.json" --benchmark_out_format=json ||
    fail 3 "bench_cudnn"
else
  say "bench_cudnn was not built"
fi

# ---- LeNet-5 on MNIST-format data, metagrad beside PyTorch ------------------------------------------------
lenet_bin=${LENET_BIN:-$(find "$BUILD" -name 03_lenet_mnist_cuda -type f -perm -u+x | head -1)}
DATA=${DATA:-}
for d in /usr/share/datasets/fashion-mnist data/fashion-mnist; do
  [ -z "$DATA" ] && ls "$d"/train-images-idx3-ubyte* >/dev/null 2>&1 && DATA=$d
done
if [ -z "$DATA" ]; then
  DATA=$RES/synthetic-mnist
  say "no MNIST-format data found: writing a synthetic set to $DATA (speed figures only; accuracy is not MNIST's)"
  python3 bench/make_synthetic_idx.py "$DATA" >"$RES/synthetic-data.txt" 2>&1 || say "making synthetic data failed"
fi
echo "$DATA" >"$RES/lenet-data.txt"
if [ -n "$lenet_bin" ]; then
  for B in 64 256; do
    # Steps on one batch already on the device (the step alone), with and without CUDA-graph replay.
    step "lenet_step_b$B" 120 "$lenet_bin" --bench-step 300 --batch-size "$B" || fail 3 "LeNet step, batch $B"
    step "lenet_step_nograph_b$B" 120 "$lenet_bin" --bench-step 300 --batch-size "$B" --no-cuda-graphs ||
      fail 3 "LeNet step without graphs, batch $B"
    # Two epochs on the data (the second is the figure: the first pays start-up), test accuracy after each.
    step "lenet_epochs_b$B" 300 "$lenet_bin" --epochs 2 --batch-size "$B" --data "$DATA" ||
      fail 3 "LeNet epochs, batch $B"
    if [ "$have_torch" -eq 1 ]; then
      step "torch_step_b$B" 120 python3 bench/lenet_pytorch.py --device cuda --bench-step 300 --batch-size "$B" ||
        say "PyTorch LeNet step failed"
      step "torch_epochs_b$B" 300 python3 bench/lenet_pytorch.py --device cuda --epochs 2 --batch-size "$B" \
        --data "$DATA" || say "PyTorch LeNet epochs failed"
      # The same loop reading the loss once per epoch, as metagrad's Trainer does on a GPU: the stronger baseline.
      step "torch_epochs_defer_b$B" 300 python3 bench/lenet_pytorch.py --device cuda --epochs 2 --batch-size "$B" \
        --data "$DATA" --defer-loss-read || say "PyTorch LeNet epochs (deferred loss read) failed"
    fi
  done
  python3 bench/report_lenet_gpu.py "$RES" >"$RES/lenet_summary.md" 2>&1 || say "LeNet report failed"
else
  say "no 03_lenet_mnist_cuda (CUDA_MODELS=OFF and no LENET_BIN): no LeNet figures"
fi
