#!/usr/bin/env bash
# tools/run_tests.sh — build everything and run the whole test suite, as CI does.
#
#   bash tools/run_tests.sh
#
# Installs the build and test dependencies with apt when they are missing (Debian/Ubuntu; sudo when not
# root), configures a Release build in build/ with tests and examples on, builds it, runs every
# CTest test (unit tests, compile-fail tests, the single-header test, the consumer projects, and the CUDA
# tests when nvcc is present), and checks that
# single_include/metagrad/metagrad.hpp matches a fresh amalgamation.
#
# CUDA code is built for the GPU this machine has; on a machine without one (CI) only as PTX
# (CMAKE_CUDA_ARCHITECTURES=90-virtual): every kernel still goes through nvcc's front end and its device
# compiler, but not through ptxas, the assembler to sm_90 machine code, which is a third of the CUDA tests'
# build time and whose output nothing here could run. bench/gpu_bundle.sh builds sm_90 machine code.
#
# Environment: BUILD_DIR (default build), BUILD_TYPE (default Release), JOBS (default: nproc),
# CUDA_ARCH (default: 90 with a GPU present, 90-virtual without),
# BENCH (default OFF: benches are built by their own scripts, see bench/README.md; ON builds them here too),
# CUDA_MODELS (default OFF: the whole-model CUDA programs, whose nvcc build is too long for CI; ON builds
# them), CMAKE_ARGS (extra arguments for the configure step).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-Release}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

SCRIPT_NAME=run_tests.sh
# shellcheck source=tools/ensure_packages.sh
source tools/ensure_packages.sh

ensure_packages cmake make g++ doctest-dev libbenchmark-dev libeigen3-dev libomp-dev libopenblas-dev python3 zlib1g-dev libdnnl-dev \
  dataset-fashion-mnist python3-torch

if [[ -z "${CUDA_ARCH:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    CUDA_ARCH=90
  else
    CUDA_ARCH=90-virtual
  fi
fi

echo "==> Configuring ${BUILD_DIR} (${BUILD_TYPE}, CUDA architectures ${CUDA_ARCH} where nvcc is present)"
# shellcheck disable=SC2086  # CMAKE_ARGS is a list of arguments
cmake -S . -B "${BUILD_DIR}" -DCMAKE_BUILD_TYPE="${BUILD_TYPE}" \
  -DMETAGRAD_BUILD_TESTS=ON -DMETAGRAD_BUILD_BENCH=${BENCH:-OFF} -DMETAGRAD_BUILD_EXAMPLES=ON \
  -DMETAGRAD_BUILD_CUDA_MODELS=${CUDA_MODELS:-OFF} -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH}" ${CMAKE_ARGS:-}

echo "==> Building with ${JOBS} jobs"
cmake --build "${BUILD_DIR}" --parallel "${JOBS}"

status=0
echo "==> Running the tests"
ctest --test-dir "${BUILD_DIR}" --output-on-failure --no-tests=error --parallel "${JOBS}" || status=1

echo "==> Checking single_include/metagrad/metagrad.hpp"
python3 tools/amalgamate.py --check || status=1

if [[ ${status} -eq 0 ]]; then
  echo "==> All tests passed"
else
  echo "==> FAILED (see above)" >&2
fi
exit "${status}"
