// metagrad/backend/cuda/matmul.hpp — placeholder being written (cuBLAS GEMM).
#pragma once
#if defined(__CUDACC__)
#include "../../core/error.hpp"
#include "../../expr/matmul.hpp"
#include "runtime.hpp"
METAGRAD_NAMESPACE_BEGIN
namespace cuda {
template <class T>
void run_gemm(const GemmCall<T>&) {
  throw device_error("cuda matmul: not written yet");
}
}  // namespace cuda
METAGRAD_NAMESPACE_END
#endif
