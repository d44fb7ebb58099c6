// metagrad/expr/plan.hpp — the lowered kernel form of an expression (DESIGN.md, "Kernel form"): small,
// trivially copyable structs of raw pointers, strides, scalars and child plans whose element access is
// METAGRAD_HD. A CPU loop or a CUDA kernel (by value) runs a plan; leaf tags never appear in a plan's
// type, so graphs of the same structure share one kernel. Include <metagrad/expr.hpp> instead.
//
// Every plan P of target rank R provides
//   using value_type;                     the element type it yields
//   P::rank == R
//   template <class I> T at(const Array<I, R>& idx) const   element at a multi-index (I = int32/int64)
//   template <class I> T flat(I i) const  element i in row-major order, valid when is_flat()
//   bool is_flat() const                  host side: every leaf is contiguous and of the target's shape
//   template <class F> void visit_leaves(F&& f, bool remapped) const
//                                         host side: f(ptr, byte_begin, byte_end, strides, remapped)
#pragma once

#include <type_traits>

#include "../core/config.hpp"
#include "../core/shape.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace detail {
template <class I, int R>
METAGRAD_HD METAGRAD_INLINE I dot_index(const Array<I, R>& idx, const Array<index_t, R>& strides) {
  I off = 0;
  for (int d = 0; d < R; ++d) off += idx[d] * static_cast<I>(strides[d]);
  return off;
}
}  // namespace detail

/// A tensor read through strides (0 on broadcast axes).
template <class T, int R>
struct LeafPlan {
  using value_type = T;
  static constexpr int rank = R;
  const T* ptr;
  Array<index_t, R> strides;
  bool flat_ok;

  template <class I>
  METAGRAD_HD METAGRAD_INLINE T at(const Array<I, R>& idx) const {
    return ptr[detail::dot_index(idx, strides)];
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE T flat(I i) const {
    return ptr[i];
  }
  bool is_flat() const { return flat_ok; }
  /// Address range touched for a target of extents `shape` (strides may be negative).
  template <class F>
  void visit_leaves(F&& f, bool remapped, const Array<index_t, R>& shape) const {
    for (int d = 0; d < R; ++d)
      if (shape[d] == 0) return;
    const auto r = offset_range(shape, strides);
    f(static_cast<const void*>(ptr), static_cast<const void*>(ptr + r.lo), static_cast<const void*>(ptr + r.hi + 1),
      strides, remapped);
  }
};

template <class P>
inline constexpr bool is_leaf_plan_v = false;
template <class T, int R>
inline constexpr bool is_leaf_plan_v<LeafPlan<T, R>> = true;

/// A constant.
template <class T, int R>
struct ScalarPlan {
  using value_type = T;
  static constexpr int rank = R;
  T value;
  template <class I>
  METAGRAD_HD METAGRAD_INLINE T at(const Array<I, R>&) const {
    return value;
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE T flat(I) const {
    return value;
  }
  bool is_flat() const { return true; }
  template <class F>
  void visit_leaves(F&&, bool, const Array<index_t, R>&) const {}
};

/// op(child).
template <class Op, class C>
struct UnaryPlan {
  using value_type = decltype(std::declval<const Op&>()(std::declval<typename C::value_type>()));
  static constexpr int rank = C::rank;
  Op op;
  C c;
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type at(const Array<I, rank>& idx) const {
    return op(c.at(idx));
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type flat(I i) const {
    return op(c.flat(i));
  }
  bool is_flat() const { return c.is_flat(); }
  template <class F>
  void visit_leaves(F&& f, bool remapped, const Array<index_t, rank>& shape) const {
    c.visit_leaves(f, remapped, shape);
  }
};

/// op(a, b), both operands converted to the promoted type U first.
template <class Op, class U, class A, class B>
struct BinaryPlan {
  using value_type = decltype(std::declval<const Op&>()(std::declval<U>(), std::declval<U>()));
  static constexpr int rank = A::rank;
  Op op;
  A a;
  B b;
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type at(const Array<I, rank>& idx) const {
    return op(static_cast<U>(a.at(idx)), static_cast<U>(b.at(idx)));
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type flat(I i) const {
    return op(static_cast<U>(a.flat(i)), static_cast<U>(b.flat(i)));
  }
  bool is_flat() const { return a.is_flat() && b.is_flat(); }
  template <class F>
  void visit_leaves(F&& f, bool remapped, const Array<index_t, rank>& shape) const {
    a.visit_leaves(f, remapped, shape);
    b.visit_leaves(f, remapped, shape);
  }
};

/// op(a, b, c) with b and c converted to U (the condition of `where` keeps its bool type).
template <class Op, class U, class A, class B, class C>
struct TernaryPlan {
  using value_type =
      decltype(std::declval<const Op&>()(std::declval<typename A::value_type>(), std::declval<U>(), std::declval<U>()));
  static constexpr int rank = A::rank;
  Op op;
  A a;
  B b;
  C c;
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type at(const Array<I, rank>& idx) const {
    return op(a.at(idx), static_cast<U>(b.at(idx)), static_cast<U>(c.at(idx)));
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type flat(I i) const {
    return op(a.flat(i), static_cast<U>(b.flat(i)), static_cast<U>(c.flat(i)));
  }
  bool is_flat() const { return a.is_flat() && b.is_flat() && c.is_flat(); }
  template <class F>
  void visit_leaves(F&& f, bool remapped, const Array<index_t, rank>& shape) const {
    a.visit_leaves(f, remapped, shape);
    b.visit_leaves(f, remapped, shape);
    c.visit_leaves(f, remapped, shape);
  }
};

/// Reads a rank-RC child plan from rank-R indices: child axis d takes target axis map[d], or index 0 when
/// map[d] < 0. Covers broadcasting (right-aligned, extent-1 axes pinned to 0), permute, squeeze and
/// unsqueeze of non-leaf expressions. `order_kept` says row-major order is unchanged (flat reads pass
/// through).
template <class C, int R>
struct AxisMapPlan {
  using value_type = typename C::value_type;
  static constexpr int rank = R;
  static constexpr int child_rank = C::rank;
  C c;
  Array<int, child_rank> map;
  Array<index_t, child_rank> child_shape;
  bool order_kept;

  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type at(const Array<I, R>& idx) const {
    Array<I, child_rank> ci{};
    for (int d = 0; d < child_rank; ++d) ci[d] = map[d] >= 0 ? idx[map[d]] : I(0);
    return c.at(ci);
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type flat(I i) const {
    return c.flat(i);
  }
  bool is_flat() const { return order_kept && c.is_flat(); }
  template <class F>
  void visit_leaves(F&& f, bool, const Array<index_t, R>&) const {
    c.visit_leaves(f, true, child_shape);
  }
};

/// A strided window of a non-leaf child: child index = start + idx * step, per axis.
template <class C>
struct SlicePlan {
  using value_type = typename C::value_type;
  static constexpr int rank = C::rank;
  C c;
  Array<index_t, rank> start, step, child_shape;
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type at(const Array<I, rank>& idx) const {
    Array<I, rank> ci{};
    for (int d = 0; d < rank; ++d) ci[d] = static_cast<I>(start[d]) + idx[d] * static_cast<I>(step[d]);
    return c.at(ci);
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type flat(I i) const {
    return c.flat(i);
  }
  bool is_flat() const { return false; }
  template <class F>
  void visit_leaves(F&& f, bool, const Array<index_t, rank>&) const {
    c.visit_leaves(f, true, child_shape);
  }
};

/// A non-leaf child of another shape with the same elements in row-major order: the target index is
/// linearised and unravelled into the child's extents. Flat reads pass straight through.
template <class C, int R>
struct ReshapePlan {
  using value_type = typename C::value_type;
  static constexpr int rank = R;
  static constexpr int child_rank = C::rank;
  C c;
  Array<index_t, R> out_strides;  // contiguous strides of the reshaped extents
  Array<index_t, child_rank> child_shape;
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type at(const Array<I, R>& idx) const {
    I lin = detail::dot_index(idx, out_strides);
    Array<I, child_rank> ci{};
    for (int d = child_rank - 1; d >= 0; --d) {
      const I ext = static_cast<I>(child_shape[d]);
      ci[d] = lin % ext;
      lin /= ext;
    }
    return c.at(ci);
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type flat(I i) const {
    return c.flat(i);
  }
  bool is_flat() const { return c.is_flat(); }
  template <class F>
  void visit_leaves(F&& f, bool, const Array<index_t, R>&) const {
    c.visit_leaves(f, true, child_shape);
  }
};

METAGRAD_NAMESPACE_END
