// metagrad/backend/cuda/softmax.hpp — the CUDA answers to the softmax hooks of expr/softmax.hpp (run_softmax,
// run_softmax_backward; backend/dispatch.hpp calls them for calls on a CUDA device). Both passes are cuDNN's
// (cudnnSoftmaxForward / cudnnSoftmaxBackward, CUDNN_SOFTMAX_ACCURATE for softmax, CUDNN_SOFTMAX_LOG for
// log_softmax, channel mode over the tensor seen as [outer, n, inner, 1]), and metagrad's own kernel where cuDNN
// cannot take the call: a build without cuDNN, a tensor of 2^31 elements or more (cuDNN's descriptors hold int
// extents), or a case cuDNN answers CUDNN_STATUS_NOT_SUPPORTED. The kernel gives each row (one (outer, inner) position)
// a warp: the lanes stride along the axis, and the row's maximum and sum are combined with warp shuffles.
// set_softmax_use_cudnn(false) forces the kernel (tests compare both with the CPU). Needs nvcc; include
// <metagrad/metagrad.hpp> instead.
#pragma once

#if defined(__CUDACC__)

#include <atomic>
#include <climits>
#include <limits>
#include <mutex>
#include <string>

#include "../../core/math.hpp"
#include "../../core/shape.hpp"
#include "../../expr/softmax.hpp"
#include "cudnn.hpp"
#include "elementwise.hpp"
#include "runtime.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cuda {

namespace detail {
inline std::atomic<bool>& softmax_cudnn_flag() {
  static std::atomic<bool> flag{true};
  return flag;
}
}  // namespace detail

/// Whether softmax and log_softmax on CUDA may use cuDNN (true, the default); false runs metagrad's own kernel
/// always (for tests and benchmarks: both must equal the CPU's result within rounding).
inline void set_softmax_use_cudnn(bool use) { detail::softmax_cudnn_flag().store(use, std::memory_order_relaxed); }
inline bool softmax_use_cudnn() { return detail::softmax_cudnn_flag().load(std::memory_order_relaxed); }

namespace kernels {

template <class T>
__device__ __forceinline__ T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) {
    const T u = __shfl_xor_sync(0xffffffffu, v, o);
    v = u > v ? u : v;
  }
  return v;
}
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One warp per row; the rule for NaN, +inf and -inf rows is the CPU's (backend/cpu/softmax.hpp).
template <class T>
__global__ void softmax_forward(const T* __restrict__ x, T* __restrict__ y, SoftmaxGeometry g, bool log) {
  const int lane = threadIdx.x & 31;
  const index_t warps = index_t(gridDim.x) * (blockDim.x >> 5);
  const index_t rows = g.outer * g.inner;
  for (index_t r = index_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    const index_t o = r / g.inner, j = r - o * g.inner;
    const T* xr = x + o * g.n * g.inner + j;
    T* yr = y + o * g.n * g.inner + j;
    T m = -std::numeric_limits<T>::infinity();
    for (index_t i = lane; i < g.n; i += 32) m = xr[i * g.inner] > m ? xr[i * g.inner] : m;
    m = warp_max(m);
    T s = 0;
    for (index_t i = lane; i < g.n; i += 32) s += metagrad::math::exp(xr[i * g.inner] - m);
    s = warp_sum(s);
    if (log) {
      const T ls = metagrad::math::log(s);
      for (index_t i = lane; i < g.n; i += 32) yr[i * g.inner] = (xr[i * g.inner] - m) - ls;
    } else {
      for (index_t i = lane; i < g.n; i += 32) yr[i * g.inner] = metagrad::math::exp(xr[i * g.inner] - m) / s;
    }
  }
}

template <class T>
__global__ void softmax_backward(const T* __restrict__ y, const T* __restrict__ gr, T* __restrict__ dx,
                                 SoftmaxGeometry g, bool log) {
  const int lane = threadIdx.x & 31;
  const index_t warps = index_t(gridDim.x) * (blockDim.x >> 5);
  const index_t rows = g.outer * g.inner;
  for (index_t r = index_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    const index_t o = r / g.inner, j = r - o * g.inner;
    const index_t base = o * g.n * g.inner + j;
    T s = 0;
    for (index_t i = lane; i < g.n; i += 32) {
      const index_t k = base + i * g.inner;
      s += log ? gr[k] : gr[k] * y[k];
    }
    s = warp_sum(s);
    for (index_t i = lane; i < g.n; i += 32) {
      const index_t k = base + i * g.inner;
      dx[k] = log ? gr[k] - metagrad::math::exp(y[k]) * s : y[k] * (gr[k] - s);
    }
  }
}

}  // namespace kernels

namespace detail {

// Blocks of 8 warps for `rows` rows, a few per multiprocessor at most.
inline unsigned softmax_blocks(index_t rows, int device) {
  const index_t cap = index_t(sm_count(device)) * 16;
  const index_t b = (rows + 7) / 8;
  return static_cast<unsigned>(b < cap ? (b < 1 ? 1 : b) : cap);
}

#if METAGRAD_WITH_CUDNN
// The [outer, n, inner, 1] extents of g for a cuDNN descriptor; false when they (or the element count) do not
// fit cuDNN's int.
inline bool softmax_dims(const SoftmaxGeometry& g, int (&d)[4]) {
  if (g.numel() > INT_MAX) return false;
  d[0] = static_cast<int>(g.outer);
  d[1] = static_cast<int>(g.n);
  d[2] = static_cast<int>(g.inner);
  d[3] = 1;
  return true;
}

// cudnnSoftmaxForward (call.x -> call.out) or, with `backward`, cudnnSoftmaxBackward (y = call.x, dy = call.g
// -> call.out); false when cuDNN cannot take the call.
template <class T>
bool cudnn_softmax(const SoftmaxCall<T>& call, bool backward) {
  int d[4];
  if (!softmax_use_cudnn() || !softmax_dims(call.geom, d)) return false;
  const int device = call.device.index();
  auto& state = cudnn::device_state(device);
  std::lock_guard<std::mutex> lock(state.mutex);
  const cudnnHandle_t h = cudnn::bound_handle(state, device);
  cudnn::TensorDescriptor desc(cudnn::data_type<T>(), d);
  const cudnnSoftmaxAlgorithm_t algo = call.log ? CUDNN_SOFTMAX_LOG : CUDNN_SOFTMAX_ACCURATE;
  const T one = 1, zero = 0;
  const cudnnStatus_t status = backward ? cudnnSoftmaxBackward(h, algo, CUDNN_SOFTMAX_MODE_CHANNEL, &one, desc.get(),
                                                               call.x, desc.get(), call.g, &zero, desc.get(), call.out)
                                        : cudnnSoftmaxForward(h, algo, CUDNN_SOFTMAX_MODE_CHANNEL, &one, desc.get(),
                                                              call.x, &zero, desc.get(), call.out);
  // This cuDNN lacks the case (cuDNN 9 answers with sub-codes of NOT_SUPPORTED): metagrad's kernel.
  if (CUDNN_STATUS_CATEGORY(status) == CUDNN_STATUS_NOT_SUPPORTED) return false;
  if (status != CUDNN_STATUS_SUCCESS)  // the message is built only on failure
    cudnn::check(status, std::string(backward ? "cudnnSoftmaxBackward (" : "cudnnSoftmaxForward (") +
                             metagrad::detail::softmax_name(call.log) + ", " + cudnn::TensorDescriptor::dims(d) + ")");
  return true;
}
#endif

}  // namespace detail

/// call.out = softmax (or log_softmax) of call.x on call.device (cuDNN, else metagrad's kernel), queued on
/// stream(device). @throws cuda_error naming the cuDNN call or the kernel launch when either fails.
template <class T>
void run_softmax(const SoftmaxCall<T>& call) {
  const SoftmaxGeometry& g = call.geom;
  if (g.numel() == 0) return;
  const int device = call.device.index();
  DeviceGuard guard(device);
#if METAGRAD_WITH_CUDNN
  if (detail::cudnn_softmax(call, false)) return;
#endif
  kernels::softmax_forward<T>
      <<<detail::softmax_blocks(g.outer * g.inner, device), 256, 0, stream(device)>>>(call.x, call.out, g, call.log);
  check(cudaGetLastError(), "metagrad::cuda::run_softmax kernel launch");
}

/// call.out = dx of softmax (or log_softmax) from its result call.x and adjoint call.g, on call.device.
/// @throws cuda_error naming the cuDNN call or the kernel launch when either fails.
template <class T>
void run_softmax_backward(const SoftmaxCall<T>& call) {
  const SoftmaxGeometry& g = call.geom;
  if (g.numel() == 0) return;
  const int device = call.device.index();
  DeviceGuard guard(device);
#if METAGRAD_WITH_CUDNN
  if (detail::cudnn_softmax(call, true)) return;
#endif
  kernels::softmax_backward<T><<<detail::softmax_blocks(g.outer * g.inner, device), 256, 0, stream(device)>>>(
      call.x, call.g, call.out, g, call.log);
  check(cudaGetLastError(), "metagrad::cuda::run_softmax_backward kernel launch");
}

}  // namespace cuda
METAGRAD_NAMESPACE_END

#endif  // __CUDACC__
