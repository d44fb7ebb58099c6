// metagrad/expr/index.hpp — expressions made of positions and extents rather than of stored values:
// axis_index(x, axis), each element's index along one axis of x (an "iota" shaped like x), and
// axis_count<T>(x, axes), the number of elements a reduction of x over those axes combines, as a scalar. Both
// read x only for its shape, when they are evaluated, so they work on Inputs that are bound later and on
// other batch sizes each run; neither has a gradient. They let losses pick one class per row
// (axis_index(logits, 1) == labels) inside a fused reduction, with no gather node, and scale statistics by
// counts known only at run time. Include <metagrad/expr.hpp> instead.
#pragma once

#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../core/shape.hpp"
#include "leaf.hpp"
#include "node.hpp"
#include "plan.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace detail {
/// An operand of a composite front-end (softmax, the losses, the normalisations), in the form each of its
/// uses must take: a named tensor by reference to the caller's object (closure semantics, node.hpp), any
/// other operand as a fresh copy, so the composite never refers to the front-end's own parameter. `A` is the
/// front-end's forwarding type.
template <class A, class X>
decltype(auto) reuse(const X& x) {
  if constexpr (std::is_reference_v<closure_t<A&&>>)
    return (x);
  else
    return std::remove_cvref_t<X>(x);
}
}  // namespace detail

/// Plan of axis_index: element idx is idx[axis] (0 when the node's own axis was broadcast). Row-major flat
/// reads recover the index from the flat position, so the plan never forces a strided loop.
template <int R>
struct AxisIndexPlan {
  using value_type = std::int64_t;
  static constexpr int rank = R;
  int axis;        // target axis, or -1: the index is always 0
  index_t stride;  // contiguous stride of the target at `axis`
  index_t extent;  // target extent at `axis`

  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type at(const Array<I, R>& idx) const {
    return axis >= 0 ? static_cast<value_type>(idx[axis]) : value_type(0);
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type flat(I i) const {
    return axis >= 0 ? static_cast<value_type>((i / static_cast<I>(stride)) % static_cast<I>(extent)) : value_type(0);
  }
  bool is_flat() const { return true; }
  template <class F>
  void visit_leaves(F&&, bool, const Array<index_t, R>&) const {}
};

/// The index of each element of x along `axis`, as int64, shaped like x (x is read for its shape only).
template <class X>
class AxisIndexExpr : public ExprBase<AxisIndexExpr<X>> {
 public:
  using value_type = std::int64_t;
  static constexpr int rank = X::rank;
  static_assert(rank >= 1, "metagrad: axis_index needs an expression of rank 1 or more");

  /// @pre axis already normalised (see axis_index()).
  AxisIndexExpr(X x, int axis) : x_(std::move(x)), axis_(axis) {}
  Shape<rank> shape() const { return x_.shape(); }
  int axis() const { return axis_; }
  const X& like() const { return x_; }
  auto children() const { return detail::Pack<>{}; }
  bool same_params(const AxisIndexExpr& o) const { return axis_ == o.axis_; }

  template <int RT>
  AxisIndexPlan<RT> lower(const Shape<RT>& target) const {
    const auto own = x_.shape();
    const int t = axis_ + (RT - rank);
    if (own[axis_] == 1) return {-1, 1, 1};  // broadcast along the axis: every index is 0
    return {t, contiguous_strides(target)[t], target[t]};
  }

 private:
  X x_;
  int axis_;
};

/// The number of elements x has over a set of axes (the count a reduction over them combines), as a
/// rank-0 expression of dtype T, read from x's shape when evaluated.
template <class T, class X>
class AxisCountExpr : public ExprBase<AxisCountExpr<T, X>> {
 public:
  using value_type = T;
  static constexpr int rank = 0;

  AxisCountExpr(X x, Array<bool, X::rank> mask) : x_(std::move(x)), mask_(mask) {}
  Shape<0> shape() const { return {}; }
  const X& like() const { return x_; }
  auto children() const { return detail::Pack<>{}; }
  bool same_params(const AxisCountExpr& o) const { return detail::bits_equal(mask_, o.mask_); }

  /// The count, computed from x's current shape.
  T value() const {
    const auto s = x_.shape();
    index_t n = 1;
    for (int d = 0; d < X::rank; ++d)
      if (mask_[d]) n *= s[d];
    return static_cast<T>(n);
  }
  template <int RT>
  ScalarPlan<T, RT> lower(const Shape<RT>&) const {
    return {value()};
  }

 private:
  X x_;
  Array<bool, X::rank> mask_;
};

/// axis_index(x, axis): element [i0, ..., in] is i_axis (int64), shaped like x. Negative axes count from
/// the end. x's values are never read. @throws index_error when axis is out of range.
template <expression X>
auto axis_index(X&& x, int axis) {
  using XE = std::remove_cvref_t<decltype(detail::operand_value<closure_t<X&&>>(x))>;
  constexpr int R = expr_rank_v<X>;
  axis = normalize_axis(axis, R, "axis_index");
  return AxisIndexExpr<XE>(detail::operand_value<closure_t<X&&>>(x), axis);
}

/// axis_count<T>(x, {a, b}): the product of x's extents over the listed axes, as a scalar of dtype T.
/// @throws index_error when an axis is out of range.
template <dtype T, expression X, int K>
auto axis_count(X&& x, const int (&axes)[K]) {
  using XE = std::remove_cvref_t<decltype(detail::operand_value<closure_t<X&&>>(x))>;
  constexpr int R = expr_rank_v<X>;
  Array<bool, R> mask{};
  for (int i = 0; i < K; ++i) mask[normalize_axis(axes[i], R, "axis_count")] = true;
  return AxisCountExpr<T, XE>(detail::operand_value<closure_t<X&&>>(x), mask);
}

METAGRAD_NAMESPACE_END
