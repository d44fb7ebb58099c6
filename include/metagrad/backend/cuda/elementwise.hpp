// metagrad/backend/cuda/elementwise.hpp — the CUDA driver of a fused elementwise plan: one kernel per
// lowered plan type (so graphs of the same structure share a kernel), a grid-stride loop, the flat path
// when every operand is contiguous and of the output's shape, a strided path otherwise, and 32-bit index
// math when the sizes allow. Needs nvcc; include <metagrad/cuda.hpp> instead.
#pragma once

#if defined(__CUDACC__)

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "../../core/config.hpp"
#include "../../core/error.hpp"
#include "../../core/shape.hpp"
#include "../cpu/elementwise.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cuda {

/// Throws cuda_error naming `what` when `status` is not cudaSuccess.
inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw cuda_error(std::string(what) + " failed: " + cudaGetErrorName(status) + " (" +
                     std::to_string(static_cast<int>(status)) + "): " + cudaGetErrorString(status));
}

/// Number of CUDA devices visible (0 when there is no driver or no GPU; never throws).
inline int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

namespace kernels {
template <class T, class Plan, class I>
__global__ void elementwise_flat(T* __restrict__ out, const Plan plan, I n) {
  const I stride = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
  for (I i = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); i < n; i += stride)
    out[i] = static_cast<T>(plan.flat(i));
}

template <class T, class Plan, class I, int R>
__global__ void elementwise_strided(T* __restrict__ out, const Strides<R> ostr, const Shape<R> shape, const Plan plan,
                                    I n) {
  const I stride = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
  for (I i = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); i < n;
       i += stride) {
    Array<I, R> idx{};
    I rem = i, off = 0;
    for (int d = R - 1; d >= 0; --d) {
      const I ext = static_cast<I>(shape[d]);
      idx[d] = rem % ext;
      rem /= ext;
      off += idx[d] * static_cast<I>(ostr[d]);
    }
    out[off] = static_cast<T>(plan.at(idx));
  }
}
}  // namespace kernels

/// Runs `plan` (lowered at `shape`, reading device memory) into device memory `out` on `stream`.
/// @throws cuda_error when the launch fails.
template <class T, int R, class Plan>
void run_elementwise(T* out, const Strides<R>& ostr, const Shape<R>& shape, const Plan& plan, cudaStream_t stream = 0) {
  static_assert(std::is_trivially_copyable_v<Plan>, "metagrad: a kernel plan must be trivially copyable");
  const index_t n = shape.numel();
  if (n == 0) return;
  constexpr int block = 256;
  const index_t blocks_needed = (n + block - 1) / block;
  const int grid = static_cast<int>(blocks_needed < 65535 * 8 ? blocks_needed : 65535 * 8);
  const bool flat = plan.is_flat() && is_contiguous(shape, ostr);
  const bool small = cpu::fits_int32<Plan, T, R>(plan, shape, ostr);
  if (flat) {
    if (small)
      kernels::elementwise_flat<T, Plan, std::int32_t>
          <<<grid, block, 0, stream>>>(out, plan, static_cast<std::int32_t>(n));
    else
      kernels::elementwise_flat<T, Plan, std::int64_t><<<grid, block, 0, stream>>>(out, plan, n);
  } else {
    if (small)
      kernels::elementwise_strided<T, Plan, std::int32_t, R>
          <<<grid, block, 0, stream>>>(out, ostr, shape, plan, static_cast<std::int32_t>(n));
    else
      kernels::elementwise_strided<T, Plan, std::int64_t, R><<<grid, block, 0, stream>>>(out, ostr, shape, plan, n);
  }
  check(cudaGetLastError(), "metagrad::cuda::run_elementwise kernel launch");
}

}  // namespace cuda
METAGRAD_NAMESPACE_END

#endif  // __CUDACC__
