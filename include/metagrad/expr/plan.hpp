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
  /// Row access (see row_plan): the plan moved to the row holding idx (its last index ignored), and
  /// element j of that row, one multiply per leaf instead of a dot product over every axis.
  template <class I>
  METAGRAD_HD METAGRAD_INLINE LeafPlan shifted(const Array<I, R>& idx) const {
    Array<I, R> o = idx;
    if constexpr (R > 0) o[R - 1] = 0;
    return {ptr + detail::dot_index(o, strides), strides, flat_ok};
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE T row(I j) const {
    if constexpr (R > 0)
      return ptr[j * static_cast<I>(strides[R - 1])];
    else
      return ptr[0];
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
  template <class I>
  METAGRAD_HD METAGRAD_INLINE ScalarPlan shifted(const Array<I, R>&) const {
    return *this;
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE T row(I) const {
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
  template <class I>
  requires requires(const C& x, const Array<I, rank>& i) { x.shifted(i); }
  METAGRAD_HD METAGRAD_INLINE auto shifted(const Array<I, rank>& idx) const {
    using S = decltype(c.shifted(idx));
    return UnaryPlan<Op, S>{op, c.shifted(idx)};
  }
  template <class I>
  requires requires(const C& x, I j) { x.row(j); }
  METAGRAD_HD METAGRAD_INLINE value_type row(I j) const { return op(c.row(j)); }
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
  template <class I>
  requires requires(const A& x, const B& y, const Array<I, rank>& i) {
    x.shifted(i);
    y.shifted(i);
  }
  METAGRAD_HD METAGRAD_INLINE auto shifted(const Array<I, rank>& idx) const {
    using SA = decltype(a.shifted(idx));
    using SB = decltype(b.shifted(idx));
    return BinaryPlan<Op, U, SA, SB>{op, a.shifted(idx), b.shifted(idx)};
  }
  template <class I>
  requires requires(const A& x, const B& y, I j) {
    x.row(j);
    y.row(j);
  }
  METAGRAD_HD METAGRAD_INLINE value_type row(I j) const {
    return op(static_cast<U>(a.row(j)), static_cast<U>(b.row(j)));
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
  template <class I>
  requires requires(const A& x, const B& y, const C& z, const Array<I, rank>& i) {
    x.shifted(i);
    y.shifted(i);
    z.shifted(i);
  }
  METAGRAD_HD METAGRAD_INLINE auto shifted(const Array<I, rank>& idx) const {
    using SA = decltype(a.shifted(idx));
    using SB = decltype(b.shifted(idx));
    using SC = decltype(c.shifted(idx));
    return TernaryPlan<Op, U, SA, SB, SC>{op, a.shifted(idx), b.shifted(idx), c.shifted(idx)};
  }
  template <class I>
  requires requires(const A& x, const B& y, const C& z, I j) {
    x.row(j);
    y.row(j);
    z.row(j);
  }
  METAGRAD_HD METAGRAD_INLINE value_type row(I j) const {
    return op(a.row(j), static_cast<U>(b.row(j)), static_cast<U>(c.row(j)));
  }
  bool is_flat() const { return a.is_flat() && b.is_flat() && c.is_flat(); }
  template <class F>
  void visit_leaves(F&& f, bool remapped, const Array<index_t, rank>& shape) const {
    a.visit_leaves(f, remapped, shape);
    b.visit_leaves(f, remapped, shape);
    c.visit_leaves(f, remapped, shape);
  }
};

/// Plans whose rows can be walked with one multiply per leaf and element: p.shifted(idx) moves the plan to
/// the row holding idx, .row(j) reads element j of it. Leaves, scalars and the elementwise op plans over
/// them qualify; drivers fall back to at(idx) for the others (views, random draws, ...).
template <class P, class I>
concept row_plan = requires(const P& p, const Array<I, P::rank>& idx, I j) {
  p.shifted(idx).row(j);
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

/// The child's elements converted to T.
template <class T, class C>
struct ConvertPlan {
  using value_type = T;
  static constexpr int rank = C::rank;
  C c;
  template <class I>
  METAGRAD_HD METAGRAD_INLINE T at(const Array<I, rank>& idx) const {
    return static_cast<T>(c.at(idx));
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE T flat(I i) const {
    return static_cast<T>(c.flat(i));
  }
  bool is_flat() const { return c.is_flat(); }
  template <class F>
  void visit_leaves(F&& f, bool remapped, const Array<index_t, rank>& shape) const {
    c.visit_leaves(f, remapped, shape);
  }
};

/// A child of the target's shape scattered into a zero background: element idx is the child's element
/// (idx - start) / step where that is a whole in-range index on every axis, else 0 (the adjoint of slice).
template <class C>
struct UnslicePlan {
  using value_type = typename C::value_type;
  static constexpr int rank = C::rank;
  C c;
  Array<index_t, rank> start, step, count;
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type at(const Array<I, rank>& idx) const {
    Array<I, rank> ci{};
    bool inside = true;
    for (int d = 0; d < rank; ++d) {
      const I off = idx[d] - static_cast<I>(start[d]);
      const I st = static_cast<I>(step[d]);
      const I q = off / st;
      inside &= q * st == off && q >= 0 && q < static_cast<I>(count[d]);
      ci[d] = inside ? q : I(0);
    }
    return inside ? c.at(ci) : value_type(0);
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type flat(I) const {
    return value_type(0);  // never used: is_flat() is false
  }
  bool is_flat() const { return false; }
  template <class F>
  void visit_leaves(F&& f, bool, const Array<index_t, rank>&) const {
    c.visit_leaves(f, true, count);
  }
};

/// A run-time choice between a fused child (`g`, read in place) and a materialised tensor (`cache`): the
/// adjoint of an operand that may or may not have been broadcast (an extent-1 axis is only known at run
/// time). Drivers never run this form when every choice is "fused": with_static_plan() strips it to its
/// child first, so the common case keeps its vectorised flat loop.
template <class G, class T, int R>
struct SumToPlan {
  using value_type = T;
  static constexpr int rank = R;
  G g;
  LeafPlan<T, R> cache;
  bool use_cache;
  template <class I>
  METAGRAD_HD METAGRAD_INLINE T at(const Array<I, R>& idx) const {
    return use_cache ? cache.at(idx) : static_cast<T>(g.at(idx));
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE T flat(I i) const {
    return use_cache ? cache.flat(i) : static_cast<T>(g.flat(i));
  }
  bool is_flat() const { return use_cache ? cache.is_flat() : g.is_flat(); }
  template <class F>
  void visit_leaves(F&& f, bool remapped, const Array<index_t, R>& shape) const {
    if (use_cache)
      cache.visit_leaves(f, remapped, shape);
    else
      g.visit_leaves(f, remapped, shape);
  }
};

/// Plans whose value does not depend on the index (constants and functions of constants): lowering folds
/// them to a ScalarPlan, so that a broadcast constant (the adjoint 1 of a sum, say) keeps a loop flat.
template <class P>
inline constexpr bool is_constant_plan_v = false;
template <class T, int R>
inline constexpr bool is_constant_plan_v<ScalarPlan<T, R>> = true;
template <class Op, class C>
inline constexpr bool is_constant_plan_v<UnaryPlan<Op, C>> = is_constant_plan_v<C>;
template <class Op, class U, class A, class B>
inline constexpr bool is_constant_plan_v<BinaryPlan<Op, U, A, B>> = is_constant_plan_v<A>&& is_constant_plan_v<B>;
template <class C, int R>
inline constexpr bool is_constant_plan_v<AxisMapPlan<C, R>> = is_constant_plan_v<C>;
template <class T, class C>
inline constexpr bool is_constant_plan_v<ConvertPlan<T, C>> = is_constant_plan_v<C>;

// --- run-time choices -----------------------------------------------------------------------------

template <class P>
inline constexpr bool has_choice_v = false;
template <class G, class T, int R>
inline constexpr bool has_choice_v<SumToPlan<G, T, R>> = true;
template <class Op, class C>
inline constexpr bool has_choice_v<UnaryPlan<Op, C>> = has_choice_v<C>;
template <class Op, class U, class A, class B>
inline constexpr bool has_choice_v<BinaryPlan<Op, U, A, B>> = has_choice_v<A> || has_choice_v<B>;
template <class Op, class U, class A, class B, class C>
inline constexpr bool has_choice_v<TernaryPlan<Op, U, A, B, C>> = has_choice_v<A> || has_choice_v<B> || has_choice_v<C>;
template <class C, int R>
inline constexpr bool has_choice_v<AxisMapPlan<C, R>> = has_choice_v<C>;
template <class C>
inline constexpr bool has_choice_v<SlicePlan<C>> = has_choice_v<C>;
template <class C, int R>
inline constexpr bool has_choice_v<ReshapePlan<C, R>> = has_choice_v<C>;
template <class T, class C>
inline constexpr bool has_choice_v<ConvertPlan<T, C>> = has_choice_v<C>;
template <class C>
inline constexpr bool has_choice_v<UnslicePlan<C>> = has_choice_v<C>;

namespace detail {
// True when every run-time choice in the plan takes its fused child.
template <class P>
bool all_fused(const P& p) {
  if constexpr (!has_choice_v<P>)
    return true;
  else if constexpr (requires { p.use_cache; })
    return !p.use_cache && all_fused(p.g);
  else if constexpr (requires {
                       p.b;
                       p.c;
                     })
    return all_fused(p.a) && all_fused(p.b) && all_fused(p.c);
  else if constexpr (requires { p.b; })
    return all_fused(p.a) && all_fused(p.b);
  else
    return all_fused(p.c);
}

template <class P>
auto strip_choices(const P& p);

template <class Op, class C>
auto rebuild_plan(const UnaryPlan<Op, C>& p) {
  auto c = strip_choices(p.c);
  return UnaryPlan<Op, decltype(c)>{p.op, c};
}
template <class Op, class U, class A, class B>
auto rebuild_plan(const BinaryPlan<Op, U, A, B>& p) {
  auto a = strip_choices(p.a);
  auto b = strip_choices(p.b);
  return BinaryPlan<Op, U, decltype(a), decltype(b)>{p.op, a, b};
}
template <class Op, class U, class A, class B, class C>
auto rebuild_plan(const TernaryPlan<Op, U, A, B, C>& p) {
  auto a = strip_choices(p.a);
  auto b = strip_choices(p.b);
  auto c = strip_choices(p.c);
  return TernaryPlan<Op, U, decltype(a), decltype(b), decltype(c)>{p.op, a, b, c};
}
template <class C, int R>
auto rebuild_plan(const AxisMapPlan<C, R>& p) {
  auto c = strip_choices(p.c);
  return AxisMapPlan<decltype(c), R>{c, p.map, p.child_shape, p.order_kept};
}
template <class C>
auto rebuild_plan(const SlicePlan<C>& p) {
  auto c = strip_choices(p.c);
  return SlicePlan<decltype(c)>{c, p.start, p.step, p.child_shape};
}
template <class C, int R>
auto rebuild_plan(const ReshapePlan<C, R>& p) {
  auto c = strip_choices(p.c);
  return ReshapePlan<decltype(c), R>{c, p.out_strides, p.child_shape};
}
template <class T, class C>
auto rebuild_plan(const ConvertPlan<T, C>& p) {
  auto c = strip_choices(p.c);
  return ConvertPlan<T, decltype(c)>{c};
}
template <class C>
auto rebuild_plan(const UnslicePlan<C>& p) {
  auto c = strip_choices(p.c);
  return UnslicePlan<decltype(c)>{c, p.start, p.step, p.count};
}
// The plan with every choice replaced by its fused child. @pre all_fused(p).
template <class P>
auto strip_choices(const P& p) {
  if constexpr (!has_choice_v<P>) {
    return p;
  } else if constexpr (requires { p.use_cache; }) {
    auto g = strip_choices(p.g);
    if constexpr (std::is_same_v<typename decltype(g)::value_type, typename P::value_type>)
      return g;
    else
      return ConvertPlan<typename P::value_type, decltype(g)>{g};
  } else {
    return rebuild_plan(p);
  }
}
}  // namespace detail

/// Calls f with the plan itself, or, when it has run-time choices that all take their fused child, with
/// the plan stripped of them (a different type, without the branches). Every driver runs plans through it.
template <class P, class F>
decltype(auto) with_static_plan(const P& p, F&& f) {
  if constexpr (has_choice_v<P>) {
    if (detail::all_fused(p)) return f(detail::strip_choices(p));
  }
  return f(p);
}

METAGRAD_NAMESPACE_END
