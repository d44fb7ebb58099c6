// metagrad/backend/cuda/multi_tensor.hpp — multi-tensor updates on a CUDA device: the launches planned by
// backend/multi_tensor_plan.hpp, one kernel per launch with one thread block per 64Ki-element chunk, so one
// kernel updates every parameter of a model (optimiser steps: parameter, gradient and up to three state
// buffers per tensor, read and written once). The launch table is passed by value as a __grid_constant__
// parameter (Volta and newer, as the 32000-byte parameter budget already requires), so the block reads its
// chunk's entry from the constant bank without a per-thread copy. Needs nvcc; include
// <metagrad/metagrad.hpp> instead.
#pragma once

#if defined(__CUDACC__)

#include <cuda_runtime.h>

#include <type_traits>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/error.hpp"
#include "../multi_tensor_plan.hpp"
#include "runtime.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cuda {

namespace kernels {
/// Block b runs chunk b of the table (see detail::multi_tensor_chunk).
template <int NS, class T, int NPtr, class Op>
__global__ void __launch_bounds__(512)
    multi_tensor_update(const __grid_constant__ ::metagrad::detail::MultiTensorTable<T, NPtr> table, const Op op) {
  ::metagrad::detail::multi_tensor_chunk<NS>(table, static_cast<int>(blockIdx.x), static_cast<index_t>(threadIdx.x),
                                             static_cast<index_t>(blockDim.x), op);
}
}  // namespace kernels

/// Threads per block of the multi-tensor kernels: a 64Ki-element chunk is 32 float4 vectors per thread.
inline constexpr int multi_tensor_block = 512;

/// Applies `op` to every element of every tensor of `list` (buffers on CUDA device `device`: parameter,
/// gradient, then NS states, each contiguous) in as few launches as the table budget allows, queued on
/// stream(device). Asynchronous; the buffers must stay allocated until the kernels ran (stream order: memory
/// freed to metagrad's caching allocator after this call is only reused by later work on the same stream).
/// @pre Op is trivially copyable with a METAGRAD_HD `void operator()(T& p, T g, T* s) const` and a static
/// `max_state` >= NS. @throws cuda_error when a launch fails.
template <int NS, class T, class Op>
void multi_tensor_apply(const std::vector<::metagrad::detail::MultiTensorEntry<T, 2 + NS>>& list, const Op& op,
                        int device) {
  using Table = ::metagrad::detail::MultiTensorTable<T, 2 + NS>;
  static_assert(std::is_trivially_copyable_v<Table> && std::is_trivially_copyable_v<Op>,
                "metagrad: multi-tensor kernel arguments must be trivially copyable");
  static_assert(sizeof(Table) + sizeof(Op) <= 32000, "metagrad: a multi-tensor launch exceeds the parameter budget");
  if (list.empty()) return;
  DeviceGuard guard(device);
  const cudaStream_t st = stream(device);
  ::metagrad::detail::for_each_multi_tensor_launch(
      list, ::metagrad::detail::multi_tensor_chunk_size, [&](const Table& t) {
        kernels::multi_tensor_update<NS, T, 2 + NS, Op><<<t.num_chunks, multi_tensor_block, 0, st>>>(t, op);
        check(cudaGetLastError(), "metagrad::cuda::multi_tensor_apply kernel launch");
      });
}

}  // namespace cuda
METAGRAD_NAMESPACE_END

#endif  // __CUDACC__
