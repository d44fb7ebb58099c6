// metagrad/backend/cuda/elementwise.hpp — the CUDA driver of a fused elementwise plan: one kernel per
// lowered plan type (so graphs of the same structure share a kernel), a grid-stride loop, 16-byte vector
// loads and stores on the flat path (every operand contiguous, of the output's shape and 16-byte aligned),
// a strided path for broadcasts and views, and 32-bit index math when the sizes allow. The launch geometry
// and the vector lanes are plain METAGRAD_HD code (backend/cuda/launch.hpp) that CPU tests drive too.
// Needs nvcc; include <metagrad/metagrad.hpp> (or <metagrad/cuda.hpp>) instead.
#pragma once

#if defined(__CUDACC__)

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "../../core/config.hpp"
#include "../../core/error.hpp"
#include "../../core/shape.hpp"
#include "../../expr/plan.hpp"
#include "../cpu/elementwise.hpp"
#include "launch.hpp"
#include "runtime.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cuda {

namespace kernels {
/// Flat path with N-lane vectors: thread v handles elements [v N, v N + N) with one vector load per leaf and
/// one vector store; the n % N tail is done element by element by the first threads.
template <int N, class T, class Plan, class I>
__global__ void elementwise_vector(T* __restrict__ out, const Plan plan, I n) {
  const I nvec = n / N;
  const I stride = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
  const I first = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x);
  for (I v = first; v < nvec; v += stride) {
    const auto x = load_lanes<N>(plan, v * N);
    Lanes<T, N> r;
    METAGRAD_UNROLL_
    for (int k = 0; k < N; ++k) r.v[k] = static_cast<T>(x.v[k]);
    *reinterpret_cast<Lanes<T, N>*>(out + v * N) = r;
  }
  for (I i = nvec * N + first; i < n; i += stride) out[i] = static_cast<T>(plan.flat(i));
}

/// Flat path, one element per iteration (plans or pointers that cannot be read as aligned vectors).
template <class T, class Plan, class I>
__global__ void elementwise_flat(T* __restrict__ out, const Plan plan, I n) {
  const I stride = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
  for (I i = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); i < n; i += stride)
    out[i] = static_cast<T>(plan.flat(i));
}

/// Strided path: element i's multi-index is unravelled from the output's extents.
template <class T, class Plan, class I, int R>
__global__ void elementwise_strided(T* __restrict__ out, const Strides<R> ostr, const Shape<R> shape, const Plan plan,
                                    I n) {
  const I stride = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
  for (I i = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); i < n;
       i += stride) {
    I off = 0;
    const auto idx = unravel_index<I, R>(i, shape, ostr, off);
    out[off] = static_cast<T>(plan.at(idx));
  }
}
}  // namespace kernels

namespace detail {
// Streaming multiprocessors of a device (cached: the attribute query costs a driver call).
inline int sm_count(int device) {
  static int cached[64] = {};
  if (device >= 0 && device < 64 && cached[device]) return cached[device];
  int n = 0;
  check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  if (device >= 0 && device < 64) cached[device] = n;
  return n;
}

// True when every leaf the plan reads starts on a 16-byte boundary (vector loads need it).
template <class Plan>
bool leaves_aligned(const Plan& plan, const Array<index_t, Plan::rank>& shape) {
  bool ok = true;
  plan.visit_leaves([&](const void* p, const void*, const void*, const auto&,
                        bool) { ok &= reinterpret_cast<std::uintptr_t>(p) % 16 == 0; },
                    false, shape);
  return ok;
}

template <class T, int R, class P, class I>
void launch_elementwise(T* out, const Strides<R>& ostr, const Shape<R>& shape, const P& plan, I n, bool flat,
                        int device, cudaStream_t st) {
  constexpr int N = vector_lanes<T, P>();
  const int sms = sm_count(device);
  if (flat && N > 1 && reinterpret_cast<std::uintptr_t>(out) % 16 == 0 && leaves_aligned(plan, shape)) {
    const LaunchShape g = launch_shape(static_cast<index_t>(n) / N > 0 ? static_cast<index_t>(n) / N : 1, sms);
    kernels::elementwise_vector<N, T, P, I><<<g.grid, g.block, 0, st>>>(out, plan, n);
  } else if (flat) {
    const LaunchShape g = launch_shape(static_cast<index_t>(n), sms);
    kernels::elementwise_flat<T, P, I><<<g.grid, g.block, 0, st>>>(out, plan, n);
  } else {
    const LaunchShape g = launch_shape(static_cast<index_t>(n), sms);
    kernels::elementwise_strided<T, P, I, R><<<g.grid, g.block, 0, st>>>(out, ostr, shape, plan, n);
  }
}
}  // namespace detail

/// Runs `plan` (lowered at `shape`, reading memory of CUDA device `device`) into that device's memory `out`
/// (strides `ostr`, in elements) on stream(device). Asynchronous: errors of the kernel itself surface at the
/// next synchronising call. @throws cuda_error when the launch fails.
template <class T, int R, class Plan>
void run_elementwise(T* out, const Strides<R>& ostr, const Shape<R>& shape, const Plan& plan_in, int device) {
  const index_t n = shape.numel();
  if (n == 0) return;
  DeviceGuard guard(device);
  const cudaStream_t st = stream(device);
  with_static_plan(plan_in, [&](const auto& plan) {
    using P = std::remove_cvref_t<decltype(plan)>;
    static_assert(std::is_trivially_copyable_v<P>, "metagrad: a kernel plan must be trivially copyable");
    // CUDA 12.1+ passes up to 32764 bytes of kernel parameters (Volta and newer).
    static_assert(sizeof(P) <= 32000,
                  "metagrad: this fused expression's plan exceeds the kernel-parameter budget; "
                  "evaluate part of it into a tensor first (eval(...))");
    const bool flat = plan.is_flat() && is_contiguous(shape, ostr);
    // 32-bit indices only with room for the grid-stride step: i + gridDim.x * blockDim.x (at most a few
    // million) must not wrap past INT32_MAX while i < n.
    constexpr index_t step_room = index_t(1) << 24;
    if (n < std::numeric_limits<std::int32_t>::max() - step_room && cpu::fits_int32<P, T, R>(plan, shape, ostr))
      detail::launch_elementwise<T, R, P, std::int32_t>(out, ostr, shape, plan, static_cast<std::int32_t>(n), flat,
                                                        device, st);
    else
      detail::launch_elementwise<T, R, P, std::int64_t>(out, ostr, shape, plan, n, flat, device, st);
  });
  check(cudaGetLastError(), "metagrad::cuda::run_elementwise kernel launch");
}

/// The same on stream 0 of the current device (kept for code written against the first CUDA driver).
template <class T, int R, class Plan>
void run_elementwise(T* out, const Strides<R>& ostr, const Shape<R>& shape, const Plan& plan) {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  run_elementwise(out, ostr, shape, plan, device);
}

}  // namespace cuda
METAGRAD_NAMESPACE_END

#endif  // __CUDACC__
