// metagrad/backend/dispatch.hpp — the backend hooks that expr/ nodes call by argument-dependent lookup
// (run_fill, run_reduction, run_gemm, run_conv2d, the pooling, softmax and batch-norm hooks), answered on the device
// the data lives on: the CPU drivers, or the CUDA ones in a file compiled by nvcc. A plain C++ file asked for CUDA work
// throws device_error saying to compile it with nvcc. Include <metagrad/metagrad.hpp> instead.
#pragma once

#include <string>

#include "../core/device.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../expr/batch_norm.hpp"
#include "../expr/conv.hpp"
#include "../expr/matmul.hpp"
#include "../expr/plan.hpp"
#include "../expr/pool.hpp"
#include "../expr/softmax.hpp"
#include "cpu/batch_norm.hpp"
#include "cpu/conv.hpp"
#include "cpu/elementwise.hpp"
#include "cpu/matmul.hpp"
#include "cpu/pool.hpp"
#include "cpu/reduce.hpp"
#include "cpu/softmax.hpp"

#if defined(__CUDACC__)
#include "cuda/batch_norm.hpp"
#include "cuda/conv.hpp"
#include "cuda/cudnn.hpp"
#include "cuda/elementwise.hpp"
#include "cuda/matmul.hpp"
#include "cuda/pool.hpp"
#include "cuda/reduce.hpp"
#include "cuda/runtime.hpp"
#include "cuda/softmax.hpp"
#endif

METAGRAD_NAMESPACE_BEGIN

namespace detail {
/// @throws device_error: `what` was asked of a CUDA device in a file without the CUDA backend.
[[noreturn]] inline void no_cuda_backend(const char* what, Device device) {
  throw device_error(std::string(what) + " on " + device.str() +
                     ": this translation unit was not compiled by nvcc, so it has no CUDA kernels; compile the "
                     "file that evaluates CUDA tensors with nvcc (CMake: a .cu source linked to metagrad::cuda)");
}
}  // namespace detail

/// Evaluates `plan` (lowered at `shape`) into `out` (strides `strides`) on `device`: one fused loop nest on
/// the CPU, one kernel on CUDA.
template <class T, int R, class Plan>
void run_fill(Device device, T* out, const Strides<R>& strides, const Shape<R>& shape, const Plan& plan) {
  if (device.is_cpu()) {
    cpu::run_elementwise(out, strides, shape, plan);
    return;
  }
#if defined(__CUDACC__)
  cuda::run_elementwise(out, strides, shape, plan, device.index());
#else
  detail::no_cuda_backend("elementwise evaluation", device);
#endif
}

/// Reduces `plan` (lowered at its own shape `in`) over the axes where reduce[d] is true into out, whose
/// strides are given at the input's rank, on `device`.
template <class Red, class Plan, class Out, int R>
void run_reduction(Device device, const Red& red, const Plan& plan, const Shape<R>& in, const Array<bool, R>& reduce,
                   Out* out, const Strides<R>& out_strides) {
  if (device.is_cpu()) {
    with_static_plan(plan, [&](const auto& p) { cpu::reduce(red, p, in, reduce, out, out_strides); });
    return;
  }
#if defined(__CUDACC__)
  with_static_plan(plan,
                   [&](const auto& p) { cuda::run_reduction(red, p, in, reduce, out, out_strides, device.index()); });
#else
  detail::no_cuda_backend(Red::name, device);
#endif
}

/// Runs one (strided-batched) GEMM on `call.device`.
template <class T>
void run_gemm(const GemmCall<T>& call) {
  if (call.device.is_cpu()) {
    cpu::run_gemm(call);
    return;
  }
#if defined(__CUDACC__)
  cuda::run_gemm(call);
#else
  detail::no_cuda_backend("matmul", call.device);
#endif
}

/// Runs one convolution pass on `call.device` (cuDNN on CUDA).
template <class T>
void run_conv2d(const Conv2dCall<T>& call) {
  if (call.device.is_cpu()) {
    cpu::run_conv2d(call);
    return;
  }
#if defined(__CUDACC__)
  cuda::run_conv2d(call);
#else
  detail::no_cuda_backend("conv2d", call.device);
#endif
}

/// Forward pooling of the plan x into call.out on `call.device`.
template <class T, class Plan>
void run_pool2d(const Pool2dCall<T>& call, const Plan& x) {
  if (call.device.is_cpu()) {
    cpu::run_pool2d(call, x);
    return;
  }
#if defined(__CUDACC__)
  cuda::run_pool2d(call, x);
#else
  detail::no_cuda_backend(detail::pool_name(call.geom.p.kind), call.device);
#endif
}

/// dx of a max pooling (adjoint plan g, operand plan x) into call.out on `call.device`.
template <class T, class GPlan, class XPlan>
void run_max_pool2d_backward(const Pool2dCall<T>& call, const GPlan& g, const XPlan& x) {
  if (call.device.is_cpu()) {
    cpu::run_max_pool2d_backward(call, g, x);
    return;
  }
#if defined(__CUDACC__)
  cuda::run_max_pool2d_backward(call, g, x);
#else
  detail::no_cuda_backend("max_pool2d (backward)", call.device);
#endif
}

/// dx of an average pooling (adjoint plan g) into call.out on `call.device`.
template <class T, class GPlan>
void run_avg_pool2d_backward(const Pool2dCall<T>& call, const GPlan& g) {
  if (call.device.is_cpu()) {
    cpu::run_avg_pool2d_backward(call, g);
    return;
  }
#if defined(__CUDACC__)
  cuda::run_avg_pool2d_backward(call, g);
#else
  detail::no_cuda_backend("average pooling (backward)", call.device);
#endif
}

/// softmax or log_softmax of call.x into call.out on `call.device` (cuDNN on CUDA).
template <class T>
void run_softmax(const SoftmaxCall<T>& call) {
  if (call.device.is_cpu()) {
    cpu::run_softmax(call);
    return;
  }
#if defined(__CUDACC__)
  cuda::run_softmax(call);
#else
  detail::no_cuda_backend(detail::softmax_name(call.log), call.device);
#endif
}

/// dx of softmax or log_softmax (result call.x, adjoint call.g) into call.out on `call.device`.
template <class T>
void run_softmax_backward(const SoftmaxCall<T>& call) {
  if (call.device.is_cpu()) {
    cpu::run_softmax_backward(call);
    return;
  }
#if defined(__CUDACC__)
  cuda::run_softmax_backward(call);
#else
  detail::no_cuda_backend(call.log ? "log_softmax (backward)" : "softmax (backward)", call.device);
#endif
}

/// y and the batch statistics of batch normalisation into call.out on `call.device` (cuDNN on CUDA).
template <class T>
void run_batch_norm(const BatchNormCall<T>& call) {
  if (call.device.is_cpu()) {
    cpu::run_batch_norm(call);
    return;
  }
#if defined(__CUDACC__)
  cuda::run_batch_norm(call);
#else
  detail::no_cuda_backend("batch_norm", call.device);
#endif
}

/// dx, dgamma and dbeta of batch normalisation into call.out on `call.device` (cuDNN on CUDA).
template <class T>
void run_batch_norm_backward(const BatchNormCall<T>& call) {
  if (call.device.is_cpu()) {
    cpu::run_batch_norm_backward(call);
    return;
  }
#if defined(__CUDACC__)
  cuda::run_batch_norm_backward(call);
#else
  detail::no_cuda_backend("batch_norm (backward)", call.device);
#endif
}

METAGRAD_NAMESPACE_END
