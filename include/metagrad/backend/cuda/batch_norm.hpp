// metagrad/backend/cuda/batch_norm.hpp — the CUDA answers to the batch-norm hooks of expr/batch_norm.hpp
// (run_batch_norm, run_batch_norm_backward; backend/dispatch.hpp calls them for calls on a CUDA device). Both
// passes are cuDNN's (cudnnBatchNormalizationForwardTraining and cudnnBatchNormalizationBackward, spatial mode
// over x seen as [n, c, inner, 1]); the forward call also writes the unbiased batch variance, through its running
// variance output with an averaging factor of 1. metagrad's own kernels take over where cuDNN cannot take the
// call: a build without cuDNN, extents beyond cuDNN's int, channels of fewer than two values (the unbiased
// variance is then NaN, as on the CPU), or a case cuDNN answers CUDNN_STATUS_NOT_SUPPORTED. The kernels give each
// channel a block: sums in double, the mean before the squared deviations, as on the CPU.
// set_batch_norm_use_cudnn(false) forces the kernels (tests compare both with the CPU). Needs nvcc; include
// <metagrad/metagrad.hpp> instead.
#pragma once

#if defined(__CUDACC__)

#include <atomic>
#include <climits>
#include <mutex>
#include <string>

#include "../../core/shape.hpp"
#include "../../expr/batch_norm.hpp"
#include "cudnn.hpp"
#include "runtime.hpp"
#include "softmax.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cuda {

namespace detail {
inline std::atomic<bool>& batch_norm_cudnn_flag() {
  static std::atomic<bool> flag{true};
  return flag;
}
}  // namespace detail

/// Whether batch_norm on CUDA may use cuDNN (true, the default); false runs metagrad's own kernels always (for
/// tests and benchmarks: both must equal the CPU's result within rounding).
inline void set_batch_norm_use_cudnn(bool use) {
  detail::batch_norm_cudnn_flag().store(use, std::memory_order_relaxed);
}
inline bool batch_norm_use_cudnn() { return detail::batch_norm_cudnn_flag().load(std::memory_order_relaxed); }

namespace kernels {

// The sum of v over the block (blockDim.x a multiple of 32, at most 1024), returned to every thread.
__device__ inline double block_sum(double v, double* shared) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = threadIdx.x < (blockDim.x >> 5) ? shared[threadIdx.x] : 0.0;
  if (warp == 0) v = warp_sum(v);
  if (threadIdx.x == 0) shared[0] = v;
  __syncthreads();
  const double r = shared[0];
  __syncthreads();  // shared is written again by the next call
  return r;
}

// Element k of channel c's n * inner values.
__device__ __forceinline__ index_t bn_at(const BatchNormGeometry& g, index_t c, index_t k) {
  const index_t i = k / g.inner;
  return (i * g.c + c) * g.inner + (k - i * g.inner);
}

// One block per channel: out = [y, mean, invstd, unbiased var, mean], the CPU's formulas.
template <class T>
__global__ void batch_norm_forward(BatchNormCall<T> call) {
  __shared__ double shared[32];
  const BatchNormGeometry g = call.geom;
  const index_t cnt = g.count();
  for (index_t c = blockIdx.x; c < g.c; c += gridDim.x) {
    double s = 0;
    for (index_t k = threadIdx.x; k < cnt; k += blockDim.x) s += static_cast<double>(call.x[bn_at(g, c, k)]);
    const double mean = block_sum(s, shared) / static_cast<double>(cnt);
    double ss = 0;
    for (index_t k = threadIdx.x; k < cnt; k += blockDim.x) {
      const double d = static_cast<double>(call.x[bn_at(g, c, k)]) - mean;
      ss += d * d;
    }
    ss = block_sum(ss, shared);
    const double invstd = 1.0 / ::sqrt(ss / static_cast<double>(cnt) + call.eps);
    T* stats = call.out + g.numel();
    if (threadIdx.x == 0) {
      stats[c] = static_cast<T>(mean);
      stats[g.c + c] = static_cast<T>(invstd);
      stats[2 * g.c + c] = static_cast<T>(cnt > 1 ? ss / static_cast<double>(cnt - 1) : ::nan(""));
      stats[3 * g.c + c] = static_cast<T>(mean);
    }
    const T a = static_cast<T>(static_cast<double>(call.gamma[c]) * invstd);
    const T m = static_cast<T>(mean), b = call.beta[c];
    for (index_t k = threadIdx.x; k < cnt; k += blockDim.x) {
      const index_t at = bn_at(g, c, k);
      call.out[at] = (call.x[at] - m) * a + b;
    }
  }
}

// One block per channel: out = [dx, dgamma, dbeta] from the saved mean and invstd.
template <class T>
__global__ void batch_norm_backward(BatchNormCall<T> call) {
  __shared__ double shared[32];
  const BatchNormGeometry g = call.geom;
  const index_t cnt = g.count();
  for (index_t c = blockIdx.x; c < g.c; c += gridDim.x) {
    const double mean = static_cast<double>(call.mean[c]);
    const double invstd = static_cast<double>(call.invstd[c]);
    double s = 0, sx = 0;
    for (index_t k = threadIdx.x; k < cnt; k += blockDim.x) {
      const index_t at = bn_at(g, c, k);
      const double d = static_cast<double>(call.dy[at]);
      s += d;
      sx += d * (static_cast<double>(call.x[at]) - mean);
    }
    s = block_sum(s, shared);
    sx = block_sum(sx, shared);
    const double dgam = sx * invstd;
    if (threadIdx.x == 0) {
      call.out[g.numel() + c] = static_cast<T>(dgam);
      call.out[g.numel() + g.c + c] = static_cast<T>(s);
    }
    const double n = static_cast<double>(cnt);
    const double kk = static_cast<double>(call.gamma[c]) * invstd;
    const T tk = static_cast<T>(kk), tkx = static_cast<T>(-kk * invstd * dgam / n), tk0 = static_cast<T>(-kk * s / n);
    const T m = call.mean[c];
    for (index_t k = threadIdx.x; k < cnt; k += blockDim.x) {
      const index_t at = bn_at(g, c, k);
      call.out[at] = call.dy[at] * tk + (call.x[at] - m) * tkx + tk0;
    }
  }
}

}  // namespace kernels

namespace detail {

inline unsigned batch_norm_blocks(index_t channels) {
  const index_t cap = index_t(1) << 16;
  return static_cast<unsigned>(channels < 1 ? 1 : (channels < cap ? channels : cap));
}

#if METAGRAD_WITH_CUDNN
// The [n, c, inner, 1] extents of g for a cuDNN descriptor; false when cuDNN cannot take the call (extents or the
// element count beyond int, fewer than two values per channel).
inline bool batch_norm_dims(const BatchNormGeometry& g, int (&d)[4]) {
  if (g.numel() > INT_MAX || g.count() < 2 || g.c < 1) return false;
  d[0] = static_cast<int>(g.n);
  d[1] = static_cast<int>(g.c);
  d[2] = static_cast<int>(g.inner);
  d[3] = 1;
  return true;
}

// cudnnBatchNormalizationForwardTraining or, with `backward`, cudnnBatchNormalizationBackward; false when cuDNN
// cannot take the call.
template <class T>
bool cudnn_batch_norm(const BatchNormCall<T>& call, bool backward) {
  int d[4];
  if (!batch_norm_use_cudnn() || !batch_norm_dims(call.geom, d)) return false;
  const BatchNormGeometry& g = call.geom;
  const int device = call.device.index();
  auto& state = cudnn::device_state(device);
  std::lock_guard<std::mutex> lock(state.mutex);
  const cudnnHandle_t h = cudnn::bound_handle(state, device);
  cudnn::TensorDescriptor desc(cudnn::data_type<T>(), d);
  // The statistics and affine parameters: [1, c, 1, 1] of x's type (what cudnnDeriveBNTensorDescriptor gives for
  // float and double in spatial mode).
  const int pd[4] = {1, d[1], 1, 1};
  cudnn::TensorDescriptor pdesc(cudnn::data_type<T>(), pd);
  const T one = 1, zero = 0;
  T* stats = call.out + g.numel();
  cudnnStatus_t status;
  if (backward) {
    status = cudnnBatchNormalizationBackward(h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &zero, desc.get(), call.x,
                                             desc.get(), call.dy, desc.get(), call.out, pdesc.get(), call.gamma, stats,
                                             stats + g.c, call.eps, call.mean, call.invstd);
  } else {
    // The running outputs, with factor 1, receive the batch mean (into the packed buffer's last block) and the
    // unbiased variance. cuDNN blends them with their old contents (times 0), which must not be NaN: zeroed.
    T* var = stats + 2 * g.c;
    check(cudaMemsetAsync(var, 0, 2 * static_cast<std::size_t>(g.c) * sizeof(T), stream(device)),
          "batch_norm: cudaMemsetAsync");
    status = cudnnBatchNormalizationForwardTraining(h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, desc.get(), call.x,
                                                    desc.get(), call.out, pdesc.get(), call.gamma, call.beta, 1.0,
                                                    var + g.c, var, call.eps, stats, stats + g.c);
  }
  if (CUDNN_STATUS_CATEGORY(status) == CUDNN_STATUS_NOT_SUPPORTED) return false;
  if (status != CUDNN_STATUS_SUCCESS)
    cudnn::check(status, std::string(backward ? "cudnnBatchNormalizationBackward ("
                                              : "cudnnBatchNormalizationForwardTraining (") +
                             cudnn::TensorDescriptor::dims(d) + ")");
  return true;
}
#endif

}  // namespace detail

/// call.out = [y, mean, invstd, unbiased var, mean] of call.x on call.device (cuDNN, else metagrad's kernel), queued
/// on stream(device). @throws cuda_error naming the cuDNN call or the kernel launch when either fails.
template <class T>
void run_batch_norm(const BatchNormCall<T>& call) {
  if (call.geom.c == 0) return;
  const int device = call.device.index();
  DeviceGuard guard(device);
#if METAGRAD_WITH_CUDNN
  if (detail::cudnn_batch_norm(call, false)) return;
#endif
  kernels::batch_norm_forward<T><<<detail::batch_norm_blocks(call.geom.c), 256, 0, stream(device)>>>(call);
  check(cudaGetLastError(), "metagrad::cuda::run_batch_norm kernel launch");
}

/// call.out = [dx, dgamma, dbeta] on call.device (cuDNN, else metagrad's kernel).
/// @throws cuda_error naming the cuDNN call or the kernel launch when either fails.
template <class T>
void run_batch_norm_backward(const BatchNormCall<T>& call) {
  if (call.geom.c == 0) return;
  const int device = call.device.index();
  DeviceGuard guard(device);
#if METAGRAD_WITH_CUDNN
  if (detail::cudnn_batch_norm(call, true)) return;
#endif
  kernels::batch_norm_backward<T><<<detail::batch_norm_blocks(call.geom.c), 256, 0, stream(device)>>>(call);
  check(cudaGetLastError(), "metagrad::cuda::run_batch_norm_backward kernel launch");
}

}  // namespace cuda
METAGRAD_NAMESPACE_END

#endif  // __CUDACC__
