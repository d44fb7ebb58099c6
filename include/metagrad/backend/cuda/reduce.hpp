// metagrad/backend/cuda/reduce.hpp — the CUDA driver of reductions over any set of axes, with the elementwise
// input fused in (the input is a plan read inside the reduction; nothing is materialised). Same contract as
// cpu::reduce: every reducer of ops/reduction.hpp, `index` in add() the row-major position within the reduced
// axes, finish(init, 0) over empty axes. Three kernels: a full reduction (one result) gives a warp to each
// part of the input, read as 16-byte vectors where the plan is flat and aligned, and merges the parts in one
// block; per-axis reductions take a warp per output when the axis that is fastest in memory is reduced
// (coalesced along the reduced run), else a thread per output with the block's rows cutting the reduced range
// (coalesced along the kept axis). Outputs with few, long segments cut them into parts whose partial
// accumulators a second kernel merges, so the whole GPU is busy either way. Every merge is of partial results
// whose positions may interleave, which every reducer allows (argmax and argmin compare positions on ties, so
// the first extreme still wins, deterministically). The kernels use warp shuffles, not CUB: CUB's headers
// bring CCCL's namespace ::cuda, which makes `cuda::` ambiguous in every file that says `using namespace
// metagrad` (and nvcc's generated kernel stubs spell CCCL types as `cuda::...`, so such files stop compiling).
//
// The index math and the per-thread accumulation loops are plain METAGRAD_HD code in reduce_layout.hpp, so
// CPU tests drive exactly what the kernels run. Include <metagrad/metagrad.hpp>.
#pragma once

#include "reduce_layout.hpp"

#if defined(__CUDACC__)

#include <cuda_runtime.h>

#include "../../core/error.hpp"
#include "../cpu/elementwise.hpp"
#include "elementwise.hpp"
#include "runtime.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cuda {

namespace kernels {
inline constexpr int reduce_block = 256;
inline constexpr int reduce_warps = reduce_block / 32;

// An accumulator of any trivially copyable type moved down the warp by `off` lanes, word by word.
template <class Acc>
__device__ __forceinline__ Acc shuffle_down(const Acc& a, int off) {
  constexpr int words = static_cast<int>((sizeof(Acc) + 3) / 4);
  unsigned w[words] = {};
  memcpy(w, &a, sizeof(Acc));
#pragma unroll
  for (int k = 0; k < words; ++k) w[k] = __shfl_down_sync(0xffffffffu, w[k], off);
  Acc r;
  memcpy(&r, w, sizeof(Acc));
  return r;
}

// Lane 0 gets the merge of the warp's 32 accumulators (a tree: lane i takes op(x_i, x_{i + off}) for
// off = 1, 2, 4, 8, 16; lanes whose partner is past the warp compute values lane 0 never reads).
// @pre all 32 lanes call it.
template <class Acc, class Op>
__device__ __forceinline__ Acc warp_merge(Acc a, const Op& op) {
#pragma unroll
  for (int off = 1; off < 32; off *= 2) {
    const Acc b = shuffle_down(a, off);
    a = op(a, b);
  }
  return a;
}

/// A warp per (segment, part): lanes take every 32nd position of the part, then the warp merges. With one
/// part the result is finished into out, otherwise the partial accumulator goes to partial[m * parts + s].
template <class Red, class Plan, class Out, class I, int R>
__global__ void __launch_bounds__(reduce_block)
    reduce_rows(const Red red, const Plan plan, const detail::ReduceIndex<R> ix, const bool flat, const I parts,
                Out* __restrict__ out, typename Red::template acc_t<typename Plan::value_type>* __restrict__ partial) {
  using T = typename Plan::value_type;
  using Acc = typename Red::template acc_t<T>;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const I total = static_cast<I>(ix.M) * parts, n = static_cast<I>(ix.N);
  const I step = static_cast<I>(gridDim.x) * reduce_warps;
  for (I w = static_cast<I>(blockIdx.x) * reduce_warps + warp; w < total; w += step) {
    const I m = w / parts, s = w - m * parts;
    I b = 0, e = 0;
    detail::split_range(n, parts, s, b, e);
    Acc acc = red.template init<T>();
    detail::accumulate(red, plan, ix, flat, m, b + static_cast<I>(lane), e, I(32), acc);
    acc = warp_merge(acc, detail::MergeOp<Red, T>{red});
    if (lane == 0) {
      if (partial)
        partial[w] = acc;
      else
        out[ix.out_offset(m)] = static_cast<Out>(red.template finish<T>(acc, ix.N));
    }
  }
}

/// A thread per segment, `bx` consecutive segments a block (blockDim.x / bx rows of threads, which take
/// every row-th position of the block's part, blockIdx.y), merged through shared memory. Output as reduce_rows.
template <class Red, class Plan, class Out, class I, int R>
__global__ void __launch_bounds__(reduce_block)
    reduce_cols(const Red red, const Plan plan, const detail::ReduceIndex<R> ix, const bool flat, const int bx,
                const I parts, Out* __restrict__ out,
                typename Red::template acc_t<typename Plan::value_type>* __restrict__ partial) {
  using T = typename Plan::value_type;
  using Acc = typename Red::template acc_t<T>;
  __shared__ alignas(16) unsigned char raw[reduce_block * sizeof(Acc)];
  Acc* sh = reinterpret_cast<Acc*>(raw);
  const int tx = static_cast<int>(threadIdx.x) % bx, ty = static_cast<int>(threadIdx.x) / bx;
  const int rows = reduce_block / bx;
  const I M = static_cast<I>(ix.M), s = static_cast<I>(blockIdx.y);
  const I blocks = (M + static_cast<I>(bx) - 1) / static_cast<I>(bx);
  I b = 0, e = 0;
  detail::split_range(static_cast<I>(ix.N), parts, s, b, e);
  for (I mb = static_cast<I>(blockIdx.x); mb < blocks; mb += static_cast<I>(gridDim.x)) {
    const I m = mb * static_cast<I>(bx) + static_cast<I>(tx);
    Acc acc = red.template init<T>();
    if (m < M) detail::accumulate(red, plan, ix, flat, m, b + static_cast<I>(ty), e, static_cast<I>(rows), acc);
    sh[threadIdx.x] = acc;
    __syncthreads();
    if (ty == 0 && m < M) {
      for (int k = 1; k < rows; ++k) acc = red.template merge<T>(acc, sh[k * bx + tx]);
      if (partial)
        partial[m * parts + s] = acc;
      else
        out[ix.out_offset(m)] = static_cast<Out>(red.template finish<T>(acc, ix.N));
    }
    __syncthreads();
  }
}

/// One segment (M == 1): a warp per part of the items (whole 16-byte vectors of a flat plan, or single
/// positions), lanes taking every 32nd item. With one part the result is finished into out[0], otherwise the
/// partial accumulator goes to partial[s].
template <int L, class Red, class Plan, class Out, class I, int R>
__global__ void __launch_bounds__(reduce_block)
    reduce_items(const detail::FullItem<L, Red, Plan, I, R> item, const I items, const I parts, Out* __restrict__ out,
                 typename Red::template acc_t<typename Plan::value_type>* __restrict__ partial) {
  using T = typename Plan::value_type;
  using Acc = typename Red::template acc_t<T>;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const I step = static_cast<I>(gridDim.x) * reduce_warps;
  const detail::MergeOp<Red, T> op{item.red};
  for (I s = static_cast<I>(blockIdx.x) * reduce_warps + warp; s < parts; s += step) {
    I b = 0, e = 0;
    detail::split_range(items, parts, s, b, e);
    Acc acc = item.red.template init<T>();
#pragma unroll 4
    for (I j = b + static_cast<I>(lane); j < e; j += 32) acc = op(acc, item(j));
    acc = warp_merge(acc, op);
    if (lane == 0) {
      if (partial)
        partial[s] = acc;
      else
        out[0] = static_cast<Out>(item.red.template finish<T>(acc, item.ix.N));
    }
  }
}

/// A warp per segment merges its `parts` partial accumulators and finishes the result into out.
template <class Red, class T, class Out, class I, int R>
__global__ void __launch_bounds__(reduce_block)
    reduce_parts(const Red red, const detail::ReduceIndex<R> ix, const I parts,
                 const typename Red::template acc_t<T>* __restrict__ partial, Out* __restrict__ out) {
  using Acc = typename Red::template acc_t<T>;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const I M = static_cast<I>(ix.M);
  const I step = static_cast<I>(gridDim.x) * reduce_warps;
  const detail::MergeOp<Red, T> op{red};
  for (I m = static_cast<I>(blockIdx.x) * reduce_warps + warp; m < M; m += step) {
    Acc acc = red.template init<T>();
    for (I k = static_cast<I>(lane); k < parts; k += 32) acc = op(acc, partial[m * parts + k]);
    acc = warp_merge(acc, op);
    if (lane == 0) out[ix.out_offset(m)] = static_cast<Out>(red.template finish<T>(acc, ix.N));
  }
}

/// One block merges the `parts` partial accumulators of a single segment (threads strided over them, then
/// each warp, then warp 0 over the warps' results) and finishes it into out[0].
template <class Red, class T, class Out, class I>
__global__ void __launch_bounds__(reduce_block)
    reduce_parts_block(const Red red, const index_t n, const I parts,
                       const typename Red::template acc_t<T>* __restrict__ partial, Out* __restrict__ out) {
  using Acc = typename Red::template acc_t<T>;
  __shared__ alignas(16) unsigned char raw[reduce_warps * sizeof(Acc)];
  Acc* sh = reinterpret_cast<Acc*>(raw);
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const detail::MergeOp<Red, T> op{red};
  Acc acc = red.template init<T>();
  for (I k = static_cast<I>(threadIdx.x); k < parts; k += reduce_block) acc = op(acc, partial[k]);
  acc = warp_merge(acc, op);
  if (lane == 0) sh[warp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    acc = sh[0];
    for (int k = 1; k < reduce_warps; ++k) acc = op(acc, sh[k]);
    out[0] = static_cast<Out>(red.template finish<T>(acc, n));
  }
}
}  // namespace kernels

namespace detail {

// Grid of a grid-stride launch over `blocks` blocks: no more than 16 blocks a multiprocessor stay useful.
inline unsigned reduce_grid(index_t blocks, int sms) {
  const index_t cap = static_cast<index_t>(sms > 0 ? sms : 1) * 16;
  const index_t g = blocks < cap ? blocks : cap;
  return static_cast<unsigned>(g > 0 ? g : 1);
}

template <class I, class Red, class Plan, class Out, int R>
void launch_reduction(const Red& red, const Plan& plan, const Shape<R>& in, const ReduceIndex<R>& ix, bool flat,
                      Out* out, int device, cudaStream_t st) {
  using T = typename Plan::value_type;
  using Acc = typename Red::template acc_t<T>;
  const int sms = sm_count(device);
  const index_t M = ix.M, N = ix.N;
  const ReducePath path = reduce_path(ix);
  DeviceBuffer part_buffer;
  Acc* partial = nullptr;
  index_t parts = 1;
  auto make_parts = [&](index_t count) {
    part_buffer = DeviceBuffer(static_cast<std::size_t>(count) * sizeof(Acc), device);
    partial = static_cast<Acc*>(part_buffer.get());
  };

  if (path == ReducePath::full) {
    constexpr int L = vector_lanes<T, Plan>();
    const int mode = full_item_mode(flat, L > 1 && flat && leaves_aligned(plan, in));
    const index_t items = full_items(N, L, mode);
    parts = full_parts(items, sms);
    if (parts > 1) make_parts(parts);
    const FullItem<L, Red, Plan, I, R> item{red, plan, ix, static_cast<I>(N), mode};
    kernels::reduce_items<L, Red, Plan, Out, I, R>
        <<<reduce_grid((parts + kernels::reduce_warps - 1) / kernels::reduce_warps, sms), kernels::reduce_block, 0,
           st>>>(item, static_cast<I>(items), static_cast<I>(parts), out, partial);
    check(cudaGetLastError(), "metagrad::cuda::run_reduction kernel launch");
    if (parts > 1) {
      kernels::reduce_parts_block<Red, T, Out, I>
          <<<1, kernels::reduce_block, 0, st>>>(red, N, static_cast<I>(parts), partial, out);
      check(cudaGetLastError(), "metagrad::cuda::run_reduction kernel launch (merge of parts)");
    }
    return;
  }

  if (path == ReducePath::rows) {
    parts = rows_parts(M, N, sms);
    if (parts > 1) make_parts(M * parts);
    const index_t warps = M * parts;
    kernels::reduce_rows<Red, Plan, Out, I, R>
        <<<reduce_grid((warps + kernels::reduce_warps - 1) / kernels::reduce_warps, sms), kernels::reduce_block, 0,
           st>>>(red, plan, ix, flat, static_cast<I>(parts), out, partial);
  } else {
    const ColsShape g = cols_shape(M, N, kernels::reduce_block, sms);
    parts = g.parts;
    if (parts > 1) make_parts(M * parts);
    const dim3 grid(reduce_grid(g.blocks, sms), static_cast<unsigned>(parts));
    kernels::reduce_cols<Red, Plan, Out, I, R>
        <<<grid, kernels::reduce_block, 0, st>>>(red, plan, ix, flat, g.bx, static_cast<I>(parts), out, partial);
  }
  check(cudaGetLastError(), "metagrad::cuda::run_reduction kernel launch");
  if (parts > 1) {
    kernels::reduce_parts<Red, T, Out, I, R>
        <<<reduce_grid((M + kernels::reduce_warps - 1) / kernels::reduce_warps, sms), kernels::reduce_block, 0, st>>>(
            red, ix, static_cast<I>(parts), partial, out);
    check(cudaGetLastError(), "metagrad::cuda::run_reduction kernel launch (merge of parts)");
  }
  // part_buffer returns to the stream-ordered cache here: work queued later on `st` runs after the merge.
}

}  // namespace detail

/// Reduces `plan` (lowered at its own shape `in`, reading memory of CUDA device `device`) over the axes where
/// reduce[d] is true, writing red.finish(...) of each kept position, converted to Out, to `out` (that device's
/// memory) at the offsets of out_strides (given at the input's rank; the values on reduced axes are ignored).
/// Same results as cpu::reduce up to the summation order (sums accumulate in double either way); argmax and
/// argmin give the same first index. Runs on stream(device), asynchronously.
/// @pre max, min, argmax, argmin are not asked over an empty axis (ReduceExpr rejects that first).
/// @throws cuda_error when a launch fails.
template <class Red, class Plan, class Out, int R>
void run_reduction(const Red& red, const Plan& plan, const Shape<R>& in, const Array<bool, R>& reduce, Out* out,
                   const Strides<R>& out_strides, int device) {
  using T = typename Plan::value_type;
  using Acc = typename Red::template acc_t<T>;
  static_assert(std::is_trivially_copyable_v<Plan>, "metagrad: a kernel plan must be trivially copyable");
  static_assert(std::is_trivially_copyable_v<Red> && std::is_trivially_copyable_v<Acc>,
                "metagrad: reducers and their accumulators must be trivially copyable");
  static_assert(sizeof(Plan) <= 3200,
                "metagrad: this fused expression's plan exceeds the kernel-parameter budget; "
                "evaluate part of it into a tensor first (eval(...))");
  index_t M = 1;
  for (int d = 0; d < R; ++d)
    if (!reduce[d]) M *= in[d];
  if (M == 0) return;
  Strides<R> ost = out_strides;
  for (int d = 0; d < R; ++d)
    if (reduce[d]) ost[d] = 0;
  const bool flat = plan.is_flat();
  const auto ix = detail::reduce_index_for(plan, in, reduce, ost);
  DeviceGuard guard(device);
  const cudaStream_t st = stream(device);
  // 32-bit index math when every offset fits, with room for the loops' last step past the end.
  const bool small = in.numel() < std::numeric_limits<std::int32_t>::max() - (index_t(1) << 20) &&
                     cpu::fits_int32<Plan, Out, R>(plan, in, ost);
  if (small)
    detail::launch_reduction<std::int32_t>(red, plan, in, ix, flat, out, device, st);
  else
    detail::launch_reduction<std::int64_t>(red, plan, in, ix, flat, out, device, st);
}

}  // namespace cuda
METAGRAD_NAMESPACE_END

#endif  // __CUDACC__
