// metagrad/backend/cuda/reduce_layout.hpp — the device-independent half of the CUDA reduction driver
// (backend/cuda/reduce.hpp): how a reduction's index space maps to threads, warps and parts (ReduceIndex,
// split_range), the per-thread accumulation loops (FullItem, MergeOp, Finisher) and the choice of kernel
// shape. Everything here is plain METAGRAD_HD C++ outside the nvcc guard, so CPU tests
// (tests/backend/test_cuda_reduce_index.cpp) drive exactly what the kernels run.
// Include <metagrad/metagrad.hpp> instead.
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
