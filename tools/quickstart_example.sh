#!/usr/bin/env bash
# tools/quickstart_example.sh — build and run one example program.
#
#   bash tools/quickstart_example.sh [name [args...]]   # name defaults to 01_tensors (examples/01_tensors.cpp)
#   bash tools/quickstart_example.sh 03_lenet_mnist --epochs 5   # the flagship: LeNet-5 on Fashion-MNIST
#
# Arguments after the name are passed to the program. For 03_lenet_mnist the accelerators it uses
# (OpenBLAS, oneDNN, zlib) and the Fashion-MNIST data set package are installed too.
# Installs cmake and a C++ compiler with apt when they are missing (Debian/Ubuntu; sudo when not root),
# configures a Release build in build/, builds just that example and runs it from the repository root.
# A fresh build/ is configured without tests and benches so this needs no test libraries;
# tools/run_tests.sh turns them on later in the same build/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

NAME=${1:-01_tensors}
shift || true
NAME=${NAME%.cpp}
NAME=${NAME##*/}
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

if [[ ! -f examples/${NAME}.cpp && ! -f examples/${NAME}.cu ]]; then
  echo "quickstart_example.sh: no example named '${NAME}'. Available:" >&2
  for f in examples/*.cpp examples/*.cu; do
    [[ -e $f ]] && echo "  $(basename "${f%.*}")" >&2
  done
  exit 1
fi

SCRIPT_NAME=quickstart_example.sh
# shellcheck source=tools/ensure_packages.sh
source tools/ensure_packages.sh

ensure_packages cmake make g++
if [[ ${NAME} == 03_lenet_mnist ]]; then
  ensure_packages libomp-dev libopenblas-dev libdnnl-dev zlib1g-dev dataset-fashion-mnist
fi

configure_args=(-S . -B "${BUILD_DIR}" -DCMAKE_BUILD_TYPE=Release -DMETAGRAD_BUILD_EXAMPLES=ON)
if [[ ! -f ${BUILD_DIR}/CMakeCache.txt ]]; then
  configure_args+=(-DMETAGRAD_BUILD_TESTS=OFF -DMETAGRAD_BUILD_BENCH=OFF)
fi
echo "==> Configuring ${BUILD_DIR}"
cmake "${configure_args[@]}"

echo "==> Building ${NAME}"
cmake --build "${BUILD_DIR}" --target "${NAME}" --parallel "${JOBS}"

echo "==> Running ${BUILD_DIR}/examples/${NAME}"
exec "${BUILD_DIR}/examples/${NAME}" "$@"
