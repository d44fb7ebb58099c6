#!/usr/bin/env bash
# bench/gpu_bundle.sh — builds, on a machine WITHOUT a GPU, every program bench/run_gpu.sh runs on one, into a
# self-contained folder that travels to the GPU machine, so the whole GPU check there is runs only, no nvcc:
#
#   bash bench/gpu_bundle.sh [bundle-dir]     (default gpu-bundle/, ignored by git; build tree build-gpu/)
#   then, on the GPU machine:  BUNDLE=gpu-bundle bash bench/run_gpu.sh
#
# Why: nvcc's build of the whole-model programs (the LeNet example and its GPU test) takes about 5 1/2 minutes
# per file on 2 cores and does not get faster with more cores, and a GPU machine may lack what the build needs
# (doctest, Google Benchmark, OpenBLAS, oneDNN). This machine has them all, and nvcc and cuDNN compile and link
# here without a GPU.
#
# The bundle holds bin/ (metagrad_cuda_tests with the whole-model tests, bench_cuda, bench_cudnn,
# 03_lenet_mnist_cuda; stripped), lib/ (the shared libraries those programs need apart from the C/C++ runtime and
# CUDA's own: Google Benchmark, OpenBLAS, oneDNN, OpenMP, zlib, ...; CUDA's cudart, cuBLAS and cuDNN are the GPU
# machine's), data/ (Fashion-MNIST in IDX format when /usr/share/datasets has it and the bundle stays under
# BUNDLE_MAX_MIB, default 60: the device tool carries 64 MiB), and MANIFEST.txt (commit, flags, sizes).
# Built for sm_90 machine code only (CUDA_ARCH=90-real: H100/H200, no PTX; override for other GPUs) with
# compressed fat binaries, and for a generic x86-64 host (-DMETAGRAD_NATIVE=OFF: the GPU machine's CPU is not
# this one). Size: with PTX and uncompressed, the CUDA test program alone was 84 MB. When the folder is still
# over BUNDLE_MAX_MIB, bin/ and lib/ are packed as programs.tar.xz (run_gpu.sh unpacks it).
set -euo pipefail
cd "$(dirname "$0")/.."

BUNDLE=${1:-gpu-bundle}
BUILD=${BUILD:-build-gpu}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
CUDA_ARCH=${CUDA_ARCH:-90-real}
BUNDLE_MAX_MIB=${BUNDLE_MAX_MIB:-60}
START=$(date +%s)
say() { echo "[gpu_bundle $(($(date +%s) - START))s] $*"; }

command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
say "configuring $BUILD (sm_$CUDA_ARCH, generic x86-64 host code)"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" -DMETAGRAD_WITH_CUDA=ON \
  -DMETAGRAD_BUILD_TESTS=ON -DMETAGRAD_BUILD_BENCH=ON -DMETAGRAD_BUILD_EXAMPLES=ON -DMETAGRAD_BUILD_CUDA_MODELS=ON \
  -DMETAGRAD_NATIVE=OFF -DCMAKE_CUDA_FLAGS="-Xfatbin=-compress-all" ${CMAKE_ARGS:-} >"$BUILD.configure.log" 2>&1 || {
  cat "$BUILD.configure.log"
  exit 2
}
grep -E 'METAGRAD_WITH_(CUDA|BLAS|DNNL)|CUDA_MODELS|BUILD_BENCH' "$BUILD.configure.log" || true

programs=(metagrad_cuda_tests bench_cuda bench_cudnn 03_lenet_mnist_cuda)
say "building ${programs[*]} with $JOBS jobs (the two whole-model files take minutes each)"
cmake --build "$BUILD" --target "${programs[@]}" -j "$JOBS"

rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/bin" "$BUNDLE/lib"
for p in "${programs[@]}"; do
  f=$(find "$BUILD" -name "$p" -type f -perm -u+x | head -1)
  [ -n "$f" ] || {
    say "FAILED: $p was not built"
    exit 2
  }
  cp "$f" "$BUNDLE/bin/"
  strip --strip-unneeded "$BUNDLE/bin/$p"
done

# Shared libraries: everything ldd resolves except the C and C++ runtime (the GPU machine's newer ones serve)
# and CUDA's libraries (they must match the GPU machine's driver).
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libstdc\+\+|libgcc_s|libcuda\.|libcudart|libcublas|libcudnn|libnvrtc|libnvJitLink)'
for p in "$BUNDLE"/bin/*; do
  ldd "$p" | awk '/=> \// {print $1, $3}' | while read -r name path; do
    [[ $name =~ $skip ]] && continue
    [ -e "$BUNDLE/lib/$name" ] || cp -L "$path" "$BUNDLE/lib/$name"
  done
done
strip --strip-unneeded "$BUNDLE"/lib/* 2>/dev/null || true

size_mib() { du -sm "$1" | awk '{print $1}'; }
if [ "$(size_mib "$BUNDLE")" -gt "$BUNDLE_MAX_MIB" ]; then
  # Fat binaries and OpenBLAS (kernels for every CPU: 36 MB) compress well with xz (77 MiB -> about 24).
  say "$(size_mib "$BUNDLE") MiB is over $BUNDLE_MAX_MIB MiB: packing bin/ and lib/ as programs.tar.xz"
  XZ_OPT="-6 -T0" tar -C "$BUNDLE" -cJf "$BUNDLE/programs.tar.xz" bin lib && rm -rf "$BUNDLE/bin" "$BUNDLE/lib"
fi
[ "$(size_mib "$BUNDLE")" -le "$BUNDLE_MAX_MIB" ] || say "WARNING: the bundle is $(size_mib "$BUNDLE") MiB, over $BUNDLE_MAX_MIB MiB"
data=/usr/share/datasets/fashion-mnist
if [ -f "$data/train-images-idx3-ubyte.gz" ]; then
  need=$(($(size_mib "$BUNDLE") + $(size_mib "$data")))
  if [ "$need" -le "$BUNDLE_MAX_MIB" ]; then
    mkdir -p "$BUNDLE/data/fashion-mnist" && cp "$data"/*-ubyte.gz "$BUNDLE/data/fashion-mnist/"
  else
    say "leaving Fashion-MNIST out: the bundle would take $need MiB (BUNDLE_MAX_MIB $BUNDLE_MAX_MIB); run_gpu.sh then writes a synthetic set"
  fi
fi

{
  echo "metagrad GPU bundle"
  echo "commit: $(git rev-parse HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "built: $(date -Iseconds) on $(hostname), nvcc $(nvcc --version | grep -o 'release [0-9.]*'), sm_$CUDA_ARCH, METAGRAD_NATIVE=OFF"
  echo "configure:"
  grep -E '^--   ' "$BUILD.configure.log" || true
  echo "files:"
  (cd "$BUNDLE" && find . -type f -printf '%8s  %p\n' | sort -k2)
  echo "total: $(size_mib "$BUNDLE") MiB"
} >"$BUNDLE/MANIFEST.txt"
say "bundle ready: $BUNDLE ($(size_mib "$BUNDLE") MiB)"
cat "$BUNDLE/MANIFEST.txt"
