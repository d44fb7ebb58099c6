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
// The index math (ReduceIndex, split_range) and the per-thread accumulation loops are plain METAGRAD_HD code
// outside the nvcc guard, so CPU tests drive exactly what the kernels run. Include <metagrad/metagrad.hpp>.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include "../../core/config.hpp"
#include "../../core/shape.hpp"
#include "launch.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

// Roles of the input's axes. Axes of extent 1 are neither kept nor reduced: their index is always 0.
inline constexpr int axis_unit = 0;
inline constexpr int axis_kept = 1;
inline constexpr int axis_reduced = 2;

/// How a reduction of a rank-R input enumerates its work: segment m (one per output element, row-major over the
/// kept axes in enumeration order) and position t within a segment (over the reduced axes in enumeration
/// order). The enumeration order is the row-major (logical) one, or, for inputs that are not flat, the order of
/// the input's memory (largest stride first), so that neighbouring threads read neighbouring addresses; the
/// position passed to add() is always the logical row-major one within the reduced axes, as on the CPU.
/// Trivially copyable: kernels take it by value.
template <int R>
struct ReduceIndex {
  Array<int, R> role;       // axis_unit / axis_kept / axis_reduced
  Array<index_t, R> ext;    // extents
  Array<index_t, R> pitch;  // digit of axis d = (m or t) / pitch[d] % ext[d], in its group's enumeration
  Array<bool, R> slowest;   // the first axis of its group's enumeration: the quotient needs no modulo
  Array<index_t, R> cs;     // row-major contiguous strides of the input (offsets for flat plans)
  Array<index_t, R> os;     // output strides on kept axes, 0 elsewhere
  Array<index_t, R> rpos;   // stride of a reduced axis in the logical row-major position among the reduced axes
  index_t M;                // segments (outputs)
  index_t N;                // positions per segment
  index_t inner;            // with `run`: the flat offset of position t is t * inner
  bool run;                 // the reduced axes form one block of consecutive axes, enumerated logically
  bool logical;             // both groups enumerated in row-major order (position == t)
  bool out_contig;          // the output offset of segment m is m
  bool inner_reduced;       // the axis fastest in the enumeration (in memory) is a reduced one

  template <class I>
  METAGRAD_HD METAGRAD_INLINE I digit(I q, int d) const {
    const I p = static_cast<I>(pitch[d]);
    if (p != 1) q /= p;
    return slowest[d] ? q : q % static_cast<I>(ext[d]);
  }

  /// Writes the kept axes of segment m into idx; returns their part of the flat (row-major) offset.
  template <class I>
  METAGRAD_HD METAGRAD_INLINE I set_kept(Array<I, R>& idx, I m) const {
    I off = 0;
    METAGRAD_UNROLL_
    for (int d = 0; d < R; ++d)
      if (role[d] == axis_kept) {
        const I x = digit(m, d);
        idx[d] = x;
        off += x * static_cast<I>(cs[d]);
      }
    return off;
  }

  /// Writes the reduced axes of position t into idx and its logical position into pos; returns their part of
  /// the flat offset.
  template <class I>
  METAGRAD_HD METAGRAD_INLINE I set_reduced(Array<I, R>& idx, I t, I& pos) const {
    I off = 0, p = 0;
    METAGRAD_UNROLL_
    for (int d = 0; d < R; ++d)
      if (role[d] == axis_reduced) {
        const I x = digit(t, d);
        idx[d] = x;
        off += x * static_cast<I>(cs[d]);
        p += x * static_cast<I>(rpos[d]);
      }
    pos = logical ? t : p;
    return off;
  }

  /// The reduced part of the flat offset of position t.
  template <class I>
  METAGRAD_HD METAGRAD_INLINE I reduced_flat(I t) const {
    if (run) return t * static_cast<I>(inner);
    Array<I, R> idx{};
    I pos = 0;
    return set_reduced(idx, t, pos);
  }

  /// Offset in the output of segment m.
  template <class I>
  METAGRAD_HD METAGRAD_INLINE I out_offset(I m) const {
    if (out_contig) return m;
    I off = 0;
    METAGRAD_UNROLL_
    for (int d = 0; d < R; ++d)
      if (role[d] == axis_kept) off += digit(m, d) * static_cast<I>(os[d]);
    return off;
  }
};

/// The enumeration of a reduction of `in` over the axes where reduce[d] is true, written through out_strides
/// (given at the input's rank; ignored on reduced axes). With memory_strides (a leaf's strides at the input's
/// rank) both groups are enumerated slowest axis first, broadcast (stride 0) axes slowest of all; without,
/// in row-major order.
template <int R>
ReduceIndex<R> make_reduce_index(const Shape<R>& in, const Array<bool, R>& reduce, const Strides<R>& out_strides,
                                 const Array<index_t, R>* memory_strides = nullptr) {
  ReduceIndex<R> ix{};
  ix.M = 1;
  ix.N = 1;
  index_t c = 1;
  for (int d = R - 1; d >= 0; --d) {
    ix.cs[d] = c;
    c *= in[d];
  }
  for (int d = 0; d < R; ++d) {
    ix.ext[d] = in[d];
    ix.role[d] = in[d] == 1 ? axis_unit : reduce[d] ? axis_reduced : axis_kept;
    (reduce[d] ? ix.N : ix.M) *= in[d];
    ix.os[d] = ix.role[d] == axis_kept ? out_strides[d] : 0;
    ix.pitch[d] = 1;
    ix.slowest[d] = false;
  }
  // Enumeration order, slowest first: insertion sort by memory stride, descending (ties keep logical order).
  Array<int, R> order{};
  for (int d = 0; d < R; ++d) order[d] = d;
  if (memory_strides) {
    auto key = [&](int d) {
      const index_t s = (*memory_strides)[d];
      return s == 0 ? std::numeric_limits<index_t>::max() : (s < 0 ? -s : s);
    };
    for (int i = 1; i < R; ++i)
      for (int j = i; j > 0 && key(order[j]) > key(order[j - 1]); --j) {
        const int tmp = order[j];
        order[j] = order[j - 1];
        order[j - 1] = tmp;
      }
  }
  ix.logical = true;
  for (const int g : {axis_kept, axis_reduced}) {
    index_t p = 1;
    int prev = R, slow = -1;
    for (int i = R - 1; i >= 0; --i) {
      const int d = order[i];
      if (ix.role[d] != g) continue;
      if (d > prev) ix.logical = false;
      prev = d;
      ix.pitch[d] = p;
      p *= ix.ext[d];
      slow = d;
    }
    if (slow >= 0) ix.slowest[slow] = true;
  }
  index_t p = 1;
  for (int d = R - 1; d >= 0; --d) {
    ix.rpos[d] = 0;
    if (ix.role[d] == axis_reduced) {
      ix.rpos[d] = p;
      p *= ix.ext[d];
    }
  }
  ix.out_contig = true;
  for (int d = 0; d < R; ++d)
    if (ix.role[d] == axis_kept && ix.os[d] != ix.pitch[d]) ix.out_contig = false;
  // One block of reduced axes among the non-unit ones, in logical order: offset t * (kept extents after it).
  ix.run = memory_strides == nullptr;
  ix.inner = 1;
  int state = 0;  // 0: before the block, 1: inside, 2: after
  for (int d = 0; d < R; ++d) {
    if (ix.role[d] == axis_reduced) {
      if (state == 2) ix.run = false;
      state = 1;
    } else if (ix.role[d] == axis_kept) {
      if (state >= 1) {
        state = 2;
        ix.inner *= ix.ext[d];
      }
    }
  }
  if (state == 0) ix.inner = 1;
  ix.inner_reduced = false;
  for (int i = R - 1; i >= 0; --i)
    if (ix.role[order[i]] != axis_unit) {
      ix.inner_reduced = ix.role[order[i]] == axis_reduced;
      break;
    }
  return ix;
}

/// Part s of [0, n) cut into S nearly equal parts (the first n % S one longer): [b, e).
template <class I>
METAGRAD_HD METAGRAD_INLINE void split_range(I n, I S, I s, I& b, I& e) {
  const I q = n / S, r = n % S;
  b = s * q + (s < r ? s : r);
  e = b + q + (s < r ? I(1) : I(0));
}

/// Parts to cut each of m segments of n positions into so that about `want` workers are busy, each with at
/// least `min_part` positions, and at most `max_parts` parts.
inline index_t split_count(index_t m, index_t n, index_t want, index_t min_part, index_t max_parts) {
  if (m <= 0 || n <= 0) return 1;
  index_t s = (want + m - 1) / m;
  const index_t cap = (n + min_part - 1) / min_part;
  if (s > cap) s = cap;
  if (s > max_parts) s = max_parts;
  return s < 1 ? 1 : s;
}

/// Accumulates positions t = begin, begin + step, ... < end of segment m of `plan` into acc. `flat` says the
/// plan is flat (then ix must enumerate logically).
template <class Red, class Plan, class I, int R>
METAGRAD_HD METAGRAD_INLINE void accumulate(const Red& red, const Plan& plan, const ReduceIndex<R>& ix, bool flat, I m,
                                            I begin, I end, I step,
                                            typename Red::template acc_t<typename Plan::value_type>& acc) {
  using T = typename Plan::value_type;
  Array<I, R> idx{};
  const I base = ix.set_kept(idx, m);
  if (flat && ix.run) {
    const I inner = static_cast<I>(ix.inner);
    for (I t = begin; t < end; t += step)
      red.template add<T>(acc, plan.flat(base + t * inner), static_cast<index_t>(t));
  } else if (flat) {
    for (I t = begin; t < end; t += step)
      red.template add<T>(acc, plan.flat(base + ix.reduced_flat(t)), static_cast<index_t>(t));
  } else {
    for (I t = begin; t < end; t += step) {
      I pos = 0;
      ix.set_reduced(idx, t, pos);
      red.template add<T>(acc, plan.at(idx), static_cast<index_t>(pos));
    }
  }
}

// How a full reduction reads its items: L-element vectors of a flat plan with 16-byte aligned leaves, single
// elements of a flat plan, or single elements through the multi-index.
inline constexpr int item_vector = 0;
inline constexpr int item_flat = 1;
inline constexpr int item_strided = 2;

/// Item j of a full reduction (M == 1) as an accumulator: init() with the item's elements added. Vector items
/// cover elements [j L, j L + L) of n (the last one may be short); other items are element j.
template <int L, class Red, class Plan, class I, int R>
struct FullItem {
  using T = typename Plan::value_type;
  using Acc = typename Red::template acc_t<T>;
  Red red;
  Plan plan;
  ReduceIndex<R> ix;
  I n;
  int mode;
  METAGRAD_HD METAGRAD_INLINE Acc operator()(I j) const {
    Acc a = red.template init<T>();
    if (mode == item_vector) {
      const I b = j * static_cast<I>(L);
      if (b + static_cast<I>(L) <= n) {
        const auto x = load_lanes<L>(plan, b);
        METAGRAD_UNROLL_
        for (int k = 0; k < L; ++k) red.template add<T>(a, x.v[k], static_cast<index_t>(b + k));
      } else {
        for (I i = b; i < n; ++i) red.template add<T>(a, plan.flat(i), static_cast<index_t>(i));
      }
    } else if (mode == item_flat) {
      red.template add<T>(a, plan.flat(j), static_cast<index_t>(j));  // one segment: position j is element j
    } else {
      Array<I, R> idx{};
      I pos = 0;
      ix.set_reduced(idx, j, pos);
      red.template add<T>(a, plan.at(idx), static_cast<index_t>(pos));
    }
    return a;
  }
};

/// red.merge as a binary operator on accumulators.
template <class Red, class T>
struct MergeOp {
  using Acc = typename Red::template acc_t<T>;
  Red red;
  METAGRAD_HD METAGRAD_INLINE Acc operator()(const Acc& a, const Acc& b) const { return red.template merge<T>(a, b); }
};

/// red.finish over n positions, converted to the output type.
template <class Red, class T, class Out>
struct Finisher {
  using Acc = typename Red::template acc_t<T>;
  Red red;
  index_t n;
  METAGRAD_HD METAGRAD_INLINE Out operator()(const Acc& a) const {
    return static_cast<Out>(red.template finish<T>(a, n));
  }
};

// The leaf strides that decide the enumeration order of a plan that is not flat: those of the leaf spanning
// the most memory among the leaves read at the input's rank. False when there is none (views of computed
// expressions, random draws): the logical order is used then.
template <int R, class Plan>
bool dominant_strides(const Plan& plan, const Shape<R>& in, Array<index_t, R>& strides) {
  bool found = false;
  std::ptrdiff_t best = -1;
  plan.visit_leaves(
      [&](const void*, const void* lo, const void* hi, const auto& s, bool remapped) {
        using S = std::remove_cvref_t<decltype(s)>;
        if constexpr (S::size() == R) {
          const std::ptrdiff_t span = static_cast<const char*>(hi) - static_cast<const char*>(lo);
          if (!remapped && span > best) {
            best = span;
            for (int d = 0; d < R; ++d) strides[d] = s[d];
            found = true;
          }
        }
      },
      false, in);
  return found;
}

/// The enumeration run_reduction uses for `plan`: row-major when the plan is flat, else in the memory order
/// of its dominant leaf. Output strides on reduced axes are ignored.
template <class Plan, int R>
ReduceIndex<R> reduce_index_for(const Plan& plan, const Shape<R>& in, const Array<bool, R>& reduce,
                                const Strides<R>& out_strides) {
  Strides<R> ost = out_strides;
  for (int d = 0; d < R; ++d)
    if (reduce[d]) ost[d] = 0;
  Array<index_t, R> mem{};
  const bool by_memory = !plan.is_flat() && dominant_strides(plan, in, mem);
  return make_reduce_index(in, reduce, ost, by_memory ? &mem : nullptr);
}

/// The item form of a full reduction: vectors when the plan is flat and its leaves 16-byte aligned (and a
/// vector holds more than one element), single elements of a flat plan, else the multi-index.
inline int full_item_mode(bool flat, bool vectors) { return !flat ? item_strided : vectors ? item_vector : item_flat; }
/// Items of a full reduction of n positions in `mode` with L-element vectors.
inline index_t full_items(index_t n, int L, int mode) { return mode == item_vector ? (n + L - 1) / L : n; }
/// Parts (one warp each) of a full reduction: enough warps to keep every SM's loads in flight (32 each, with
/// four loads unrolled), each lane with at least 8 items, so that the block merging the parts has little to do.
inline index_t full_parts(index_t items, int sms) {
  return split_count(1, items, static_cast<index_t>(sms > 0 ? sms : 1) * 32, 32 * 8, index_t(1) << 20);
}

enum class ReducePath { full, rows, cols };

/// The kernel a reduction takes: warps over parts of all positions when there is one segment; a warp per segment when
/// the axis fastest in memory is reduced and segments are longer than a warp; a thread per segment otherwise.
template <int R>
ReducePath reduce_path(const ReduceIndex<R>& ix) {
  if (ix.M == 1 && ix.N > 0) return ReducePath::full;
  if (ix.N > 32 && ix.inner_reduced) return ReducePath::rows;
  return ReducePath::cols;
}

/// Parts per segment of the warp-per-segment kernel: enough warps to fill every SM (64 resident warps each),
/// each lane with at least 32 positions.
inline index_t rows_parts(index_t M, index_t N, int sms) {
  return split_count(M, N, static_cast<index_t>(sms > 0 ? sms : 1) * 64, 32 * 32, index_t(1) << 24);
}

/// Geometry of the thread-per-segment kernel: bx segments a block (a power of two from 32 to 256, so that
/// few segments leave room for rows of threads that share their positions), blocks along the segments, and
/// parts per segment enough to fill every SM (8 resident blocks of 256 threads), each thread with at least
/// 16 positions; at most 65535 parts (the grid's y extent).
struct ColsShape {
  int bx, rows;
  index_t blocks, parts;
};
inline ColsShape cols_shape(index_t M, index_t N, int block, int sms) {
  int bx = 32;
  while (bx < block && bx < M) bx *= 2;
  const int rows = block / bx;
  const index_t blocks = (M + bx - 1) / bx;
  const index_t parts =
      split_count(blocks, N, static_cast<index_t>(sms > 0 ? sms : 1) * 8, static_cast<index_t>(rows) * 16, 65535);
  return {bx, rows, blocks, parts};
}

}  // namespace detail
}  // namespace cuda
METAGRAD_NAMESPACE_END

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
