// metagrad/backend/cuda/launch.hpp — the device-independent part of the CUDA elementwise driver: launch
// geometry, the unravelling of a flat index into a multi-index and an output offset, and N-lane vector reads
// of a plan (one aligned vector load per leaf, the op applied lane by lane). Everything here is METAGRAD_HD
// plain C++, so CPU tests drive the same code the kernels run. Include <metagrad/metagrad.hpp> instead.
#pragma once

#include <cstring>
#include <type_traits>

#include "../../core/config.hpp"
#include "../../core/shape.hpp"
#include "../../expr/plan.hpp"

// Unrolls the lane loops (nvcc, GCC, clang); a plain loop elsewhere.
#if defined(__CUDA_ARCH__) || (defined(__clang__) && !defined(__CUDACC__))
#define METAGRAD_UNROLL_ METAGRAD_PRAGMA_(unroll)
#elif defined(__GNUC__) && !defined(__CUDACC__)
#define METAGRAD_UNROLL_ METAGRAD_PRAGMA_(GCC unroll 16)
#else
#define METAGRAD_UNROLL_
#endif

METAGRAD_NAMESPACE_BEGIN
namespace cuda {

/// N consecutive elements, aligned so that a 16-byte (or smaller, when N sizeof(T) is) vector load or store
/// moves them at once.
template <class T, int N>
struct alignas(sizeof(T) * N < 16 ? sizeof(T) * N : 16) Lanes {
  T v[N];
};

/// Lanes per thread on the flat path: as many output elements as fill 16 bytes.
template <class T, class Plan>
constexpr int vector_lanes() {
  return sizeof(T) >= 16 ? 1 : static_cast<int>(16 / sizeof(T));
}

/// Blocks and threads per block of a grid-stride launch over n work items.
struct LaunchShape {
  int grid;
  int block;
};

/// 256 threads a block; enough blocks to fill every multiprocessor several times over (16 blocks of 256
/// threads per SM keeps the memory pipeline busy on Hopper), never more than the work needs.
METAGRAD_HD inline LaunchShape launch_shape(index_t n, int sm_count) {
  constexpr int block = 256;
  const index_t needed = (n + block - 1) / block;
  const index_t cap = static_cast<index_t>(sm_count > 0 ? sm_count : 1) * 16;
  const index_t grid = needed < cap ? needed : cap;
  return {static_cast<int>(grid > 0 ? grid : 1), block};
}

/// The multi-index of row-major element i of `shape`, and its offset under `strides` (in `off`).
template <class I, int R>
METAGRAD_HD METAGRAD_INLINE Array<I, R> unravel_index(I i, const Shape<R>& shape, const Strides<R>& strides, I& off) {
  Array<I, R> idx{};
  I rem = i;
  off = 0;
  for (int d = R - 1; d >= 0; --d) {
    const I ext = static_cast<I>(shape[d]);
    idx[d] = rem % ext;
    rem /= ext;
    off += idx[d] * static_cast<I>(strides[d]);
  }
  return idx;
}

// --- N-lane reads -------------------------------------------------------------------------------------
// load_lanes<N>(plan, i) is elements i .. i + N - 1 of a flat plan. Leaves load one aligned vector; the op
// plans apply their op lane by lane to their children's lanes; any other plan reads element by element.
// @pre i is a multiple of N and every leaf pointer is 16-byte aligned.

template <int N, class P, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<typename P::value_type, N> load_lanes(const P& p, I i);
template <int N, class T, int R, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<T, N> load_lanes(const LeafPlan<T, R>& p, I i);
template <int N, class T, int R, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<T, N> load_lanes(const ScalarPlan<T, R>& p, I i);
template <int N, class Op, class C, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<typename UnaryPlan<Op, C>::value_type, N> load_lanes(const UnaryPlan<Op, C>& p, I i);
template <int N, class Op, class U, class A, class B, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<typename BinaryPlan<Op, U, A, B>::value_type, N> load_lanes(
    const BinaryPlan<Op, U, A, B>& p, I i);
template <int N, class Op, class U, class A, class B, class C, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<typename TernaryPlan<Op, U, A, B, C>::value_type, N> load_lanes(
    const TernaryPlan<Op, U, A, B, C>& p, I i);
template <int N, class T, class C, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<T, N> load_lanes(const ConvertPlan<T, C>& p, I i);
template <int N, class C, int R, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<typename C::value_type, N> load_lanes(const ReshapePlan<C, R>& p, I i);
template <int N, class C, int R, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<typename C::value_type, N> load_lanes(const AxisMapPlan<C, R>& p, I i);

template <int N, class P, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<typename P::value_type, N> load_lanes(const P& p, I i) {
  Lanes<typename P::value_type, N> r;
  METAGRAD_UNROLL_
  for (int k = 0; k < N; ++k) r.v[k] = p.flat(i + static_cast<I>(k));
  return r;
}
template <int N, class T, int R, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<T, N> load_lanes(const LeafPlan<T, R>& p, I i) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const Lanes<T, N>*>(p.ptr + i);
#else
  Lanes<T, N> r;
  std::memcpy(r.v, p.ptr + i, sizeof(T) * N);
  return r;
#endif
}
template <int N, class T, int R, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<T, N> load_lanes(const ScalarPlan<T, R>& p, I) {
  Lanes<T, N> r;
  METAGRAD_UNROLL_
  for (int k = 0; k < N; ++k) r.v[k] = p.value;
  return r;
}
template <int N, class Op, class C, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<typename UnaryPlan<Op, C>::value_type, N> load_lanes(const UnaryPlan<Op, C>& p, I i) {
  const auto x = load_lanes<N>(p.c, i);
  Lanes<typename UnaryPlan<Op, C>::value_type, N> r;
  METAGRAD_UNROLL_
  for (int k = 0; k < N; ++k) r.v[k] = p.op(x.v[k]);
  return r;
}
template <int N, class Op, class U, class A, class B, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<typename BinaryPlan<Op, U, A, B>::value_type, N> load_lanes(
    const BinaryPlan<Op, U, A, B>& p, I i) {
  const auto a = load_lanes<N>(p.a, i);
  const auto b = load_lanes<N>(p.b, i);
  Lanes<typename BinaryPlan<Op, U, A, B>::value_type, N> r;
  METAGRAD_UNROLL_
  for (int k = 0; k < N; ++k) r.v[k] = p.op(static_cast<U>(a.v[k]), static_cast<U>(b.v[k]));
  return r;
}
template <int N, class Op, class U, class A, class B, class C, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<typename TernaryPlan<Op, U, A, B, C>::value_type, N> load_lanes(
    const TernaryPlan<Op, U, A, B, C>& p, I i) {
  const auto a = load_lanes<N>(p.a, i);
  const auto b = load_lanes<N>(p.b, i);
  const auto c = load_lanes<N>(p.c, i);
  Lanes<typename TernaryPlan<Op, U, A, B, C>::value_type, N> r;
  METAGRAD_UNROLL_
  for (int k = 0; k < N; ++k) r.v[k] = p.op(a.v[k], static_cast<U>(b.v[k]), static_cast<U>(c.v[k]));
  return r;
}
template <int N, class T, class C, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<T, N> load_lanes(const ConvertPlan<T, C>& p, I i) {
  const auto x = load_lanes<N>(p.c, i);
  Lanes<T, N> r;
  METAGRAD_UNROLL_
  for (int k = 0; k < N; ++k) r.v[k] = static_cast<T>(x.v[k]);
  return r;
}
// Flat reads of these pass straight to the child (they are flat only when row-major order is unchanged).
template <int N, class C, int R, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<typename C::value_type, N> load_lanes(const ReshapePlan<C, R>& p, I i) {
  return load_lanes<N>(p.c, i);
}
template <int N, class C, int R, class I>
METAGRAD_HD METAGRAD_INLINE Lanes<typename C::value_type, N> load_lanes(const AxisMapPlan<C, R>& p, I i) {
  return load_lanes<N>(p.c, i);
}

}  // namespace cuda
METAGRAD_NAMESPACE_END
