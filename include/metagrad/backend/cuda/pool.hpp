// metagrad/backend/cuda/pool.hpp — the CUDA answers to the pooling hooks of expr/pool.hpp (run_pool2d,
// run_max_pool2d_backward, run_avg_pool2d_backward; backend/dispatch.hpp calls them for calls on a CUDA
// device). The operand plans are first evaluated into contiguous device buffers by the fused elementwise
// kernel (a contiguous tensor is read in place). Forward pooling is cudnnPoolingForward wherever cuDNN
// computes exactly the CPU's result (cudnn_pool_params says when), else metagrad's own kernel; the backward
// passes are always metagrad's own gather kernels (pool_index.hpp): cuDNN's max-pooling backward needs the
// forward output as well and does not document which of tied maxima receives the adjoint, while the CPU's
// rule (the first in row-major order) is part of metagrad's contract, and the gather form adds each input's
// contributions in the CPU's order without atomics, so the results equal the CPU's bit for bit. Needs nvcc;
// include <metagrad/metagrad.hpp> instead.
#pragma once

#if defined(__CUDACC__)

#include <atomic>
#include <type_traits>

#include "../../core/shape.hpp"
#include "../../expr/plan.hpp"
#include "../../expr/pool.hpp"
#include "cudnn.hpp"
#include "cudnn_params.hpp"
#include "elementwise.hpp"
#include "pool_index.hpp"
#include "runtime.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cuda {

namespace detail {
inline std::atomic<bool>& pool_cudnn_flag() {
  static std::atomic<bool> flag{true};
  return flag;
}
}  // namespace detail

/// Whether forward pooling on CUDA may use cuDNN (true, the default) where cuDNN's result is exact; false
/// runs metagrad's own kernel always (for tests and benchmarks: both must equal the CPU's result).
inline void set_pool_use_cudnn(bool use) { detail::pool_cudnn_flag().store(use, std::memory_order_relaxed); }
inline bool pool_use_cudnn() { return detail::pool_cudnn_flag().load(std::memory_order_relaxed); }

namespace kernels {

template <class T>
__global__ void pool_forward(const T* __restrict__ x, T* __restrict__ y, PoolShape s, index_t total) {
  const index_t per = s.y.out * s.x.out;
  for (index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += index_t(gridDim.x) * blockDim.x) {
    const index_t plane = i / per, r = i - plane * per;
    y[i] = pool_forward_at(x + plane * s.y.in * s.x.in, s, r / s.x.out, r % s.x.out);
  }
}

template <class T>
__global__ void max_pool_backward(const T* __restrict__ g, const T* __restrict__ x, T* __restrict__ dx, PoolShape s,
                                  index_t total) {
  const index_t per = s.y.in * s.x.in;
  for (index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += index_t(gridDim.x) * blockDim.x) {
    const index_t plane = i / per, r = i - plane * per;
    dx[i] = max_pool_backward_at(x + plane * per, g + plane * s.y.out * s.x.out, s, r / s.x.in, r % s.x.in);
  }
}

template <class T>
__global__ void avg_pool_backward(const T* __restrict__ g, T* __restrict__ dx, PoolShape s, index_t total) {
  const index_t per = s.y.in * s.x.in;
  for (index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += index_t(gridDim.x) * blockDim.x) {
    const index_t plane = i / per, r = i - plane * per;
    dx[i] = avg_pool_backward_at(g + plane * s.y.out * s.x.out, s, r / s.x.in, r % s.x.in);
  }
}

}  // namespace kernels

namespace detail {

/// The values of plan p (lowered at shape s) as a contiguous buffer on `device`: a flat leaf's own memory,
/// else `buf`, filled by the fused elementwise kernel.
template <class T, class Plan>
const T* contiguous_operand(const Plan& p, const Shape<4>& s, DeviceBuffer& buf, int device) {
  if constexpr (is_leaf_plan_v<Plan>) {
    if (p.is_flat()) return p.ptr;
  }
  if (s.numel() == 0) return nullptr;
  buf = DeviceBuffer(static_cast<std::size_t>(s.numel()) * sizeof(T), device);
  T* out = static_cast<T*>(buf.get());
  run_elementwise(out, contiguous_strides(s), s, p, device);
  return out;
}

// Grid of a grid-stride loop over n items, 256 threads a block.
inline unsigned pool_blocks(index_t n, int device) {
  const index_t cap = index_t(sm_count(device)) * 32;
  const index_t b = (n + 255) / 256;
  return static_cast<unsigned>(b < cap ? (b < 1 ? 1 : b) : cap);
}

#if METAGRAD_WITH_CUDNN
// cudnnPoolingForward of contiguous x into y when cuDNN computes the CPU's result exactly; false otherwise
// (also when cuDNN's own output extents disagree with metagrad's, which cudnn_pool_params rules out).
template <class T>
bool cudnn_pool_forward(const Pool2dGeometry& g, const T* x, T* y, int device) {
  const CudnnPoolParams p = cudnn_pool_params(g);
  if (!p.exact) return false;
  auto& state = cudnn::device_state(device);
  std::lock_guard<std::mutex> lock(state.mutex);
  const cudnnHandle_t h = cudnn::bound_handle(state, device);
  const cudnnDataType_t dt = cudnn::data_type<T>();
  cudnn::PoolingDescriptor pd(p);
  cudnn::TensorDescriptor xd(dt, p.x), yd(dt, p.y);
  int dims[4] = {0, 0, 0, 0};
  cudnn::check(cudnnGetPooling2dForwardOutputDim(pd.get(), xd.get(), &dims[0], &dims[1], &dims[2], &dims[3]),
               "cudnnGetPooling2dForwardOutputDim");
  for (int d = 0; d < 4; ++d)
    if (dims[d] != p.y[d]) return false;
  const T one = 1, zero = 0;
  cudnn::check(cudnnPoolingForward(h, pd.get(), &one, xd.get(), x, &zero, yd.get(), y),
               std::string("cudnnPoolingForward (") + metagrad::detail::pool_name(g.p.kind) + ", input " +
                   to_string(g.input_shape()) + ")");
  return true;
}
#endif

}  // namespace detail

/// Forward pooling of the plan x into call.out on call.device (cuDNN where exact, else metagrad's kernel),
/// queued on stream(device).
/// @throws cuda_error naming the cuDNN call or the kernel launch when either fails.
template <class T, class Plan>
void run_pool2d(const Pool2dCall<T>& call, const Plan& x) {
  const Pool2dGeometry& g = call.geom;
  const index_t total = g.n * g.c * g.oh * g.ow;
  if (total == 0) return;
  const int device = call.device.index();
  DeviceGuard guard(device);
  DeviceBuffer buf;
  const T* xp = detail::contiguous_operand<T>(x, g.input_shape(), buf, device);
#if METAGRAD_WITH_CUDNN
  if (pool_use_cudnn() && detail::cudnn_pool_forward(g, xp, call.out, device)) return;
#endif
  kernels::pool_forward<T>
      <<<detail::pool_blocks(total, device), 256, 0, stream(device)>>>(xp, call.out, pool_shape(g), total);
  check(cudaGetLastError(), "metagrad::cuda::run_pool2d kernel launch");
}

/// dx (call.out, shaped like x, overwritten) of a max pooling on call.device: each output adjoint to its
/// window's first maximum, as the CPU.
/// @throws cuda_error when the kernel launch fails.
template <class T, class GPlan, class XPlan>
void run_max_pool2d_backward(const Pool2dCall<T>& call, const GPlan& gp, const XPlan& x) {
  const Pool2dGeometry& g = call.geom;
  const index_t total = g.n * g.c * g.h * g.w;
  if (total == 0) return;
  const int device = call.device.index();
  DeviceGuard guard(device);
  DeviceBuffer gbuf, xbuf;
  const T* gr = detail::contiguous_operand<T>(gp, g.output_shape(), gbuf, device);
  const T* xr = detail::contiguous_operand<T>(x, g.input_shape(), xbuf, device);
  kernels::max_pool_backward<T>
      <<<detail::pool_blocks(total, device), 256, 0, stream(device)>>>(gr, xr, call.out, pool_shape(g), total);
  check(cudaGetLastError(), "metagrad::cuda::run_max_pool2d_backward kernel launch");
}

/// dx (call.out, shaped like x, overwritten) of an average pooling on call.device.
/// @throws cuda_error when the kernel launch fails.
template <class T, class GPlan>
void run_avg_pool2d_backward(const Pool2dCall<T>& call, const GPlan& gp) {
  const Pool2dGeometry& g = call.geom;
  const index_t total = g.n * g.c * g.h * g.w;
  if (total == 0) return;
  const int device = call.device.index();
  DeviceGuard guard(device);
  DeviceBuffer gbuf;
  const T* gr = detail::contiguous_operand<T>(gp, g.output_shape(), gbuf, device);
  kernels::avg_pool_backward<T>
      <<<detail::pool_blocks(total, device), 256, 0, stream(device)>>>(gr, call.out, pool_shape(g), total);
  check(cudaGetLastError(), "metagrad::cuda::run_avg_pool2d_backward kernel launch");
}

}  // namespace cuda
METAGRAD_NAMESPACE_END

#endif  // __CUDACC__
