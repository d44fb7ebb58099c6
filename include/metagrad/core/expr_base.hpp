// metagrad/core/expr_base.hpp — the CRTP base every expression (Tensor included) derives from. It marks
// a type as a metagrad expression and gives it the view member functions (reshape, permute, t, slice,
// ...), which forward to the view nodes of <metagrad/expr.hpp>. Include <metagrad/core.hpp> instead.
#pragma once

#include <limits>
#include <type_traits>
#include <utility>

#include "config.hpp"
#include "dtype.hpp"
#include "shape.hpp"

METAGRAD_NAMESPACE_BEGIN

template <dtype T, int Rank>
class Tensor;

namespace detail {
// Defined in expr/view.hpp. Member calls below name it with a dependent argument, so it is only needed
// where a view is actually made, and core/ stays below expr/ in the layering.
template <class Derived>
struct expr_ops;
}  // namespace detail

/// One axis of a slice: elements start, start+step, ... up to (not including) stop. Negative start/stop
/// count from the end and are clamped as in Python; step may be negative but not zero.
struct Slice {
  /// An omitted start or stop: the end of the axis in the direction of the step.
  static constexpr index_t none = std::numeric_limits<index_t>::min();
  index_t start = none;
  index_t stop = none;
  index_t step = 1;
};

/// Base of every expression node. Derived must define value_type, rank and shape().
template <class Derived>
class ExprBase {
 public:
  static constexpr bool is_metagrad_expression = true;

  const Derived& derived() const& { return static_cast<const Derived&>(*this); }
  Derived&& derived() && { return static_cast<Derived&&>(*this); }

#define METAGRAD_VIEW_MEMBER_(name)                                                            \
  template <class... A>                                                                        \
  auto name(A&&... a) const& {                                                                 \
    return detail::expr_ops<Derived>::name(derived(), std::forward<A>(a)...);                  \
  }                                                                                            \
  template <class... A>                                                                        \
  auto name(A&&... a)&& {                                                                      \
    return detail::expr_ops<Derived>::name(std::move(*this).derived(), std::forward<A>(a)...); \
  }
  /// x.permute({1, 0, 2}): axes reordered; output axis i is input axis perm[i].
  METAGRAD_VIEW_MEMBER_(permute)
  /// x.transpose(a, b): axes a and b swapped.
  METAGRAD_VIEW_MEMBER_(transpose)
  /// x.t(): transpose of a rank-2 expression.
  METAGRAD_VIEW_MEMBER_(t)
  /// x.slice(axis, start, stop, step) or x.slice({Slice{...}, ...}) with one Slice per axis.
  METAGRAD_VIEW_MEMBER_(slice)
  /// x.select(axis, i): the sub-tensor at index i along axis (rank - 1).
  METAGRAD_VIEW_MEMBER_(select)
  /// x.squeeze(axis): removes an axis of extent 1.
  METAGRAD_VIEW_MEMBER_(squeeze)
  /// x.unsqueeze(axis): inserts an axis of extent 1 before `axis` (axis == rank appends).
  METAGRAD_VIEW_MEMBER_(unsqueeze)
  /// x.expand(shape) / x.broadcast_to(shape): NumPy broadcast to a larger shape, without copying.
  METAGRAD_VIEW_MEMBER_(expand)
  METAGRAD_VIEW_MEMBER_(broadcast_to)
#undef METAGRAD_VIEW_MEMBER_

  // Braced-list forms of the members above: a forwarding pack cannot deduce x.permute({1, 0, 2}).
#define METAGRAD_VIEW_LIST_MEMBER_(name, Elem)                                \
  template <int N>                                                            \
  auto name(const Elem(&list)[N]) const& {                                    \
    return detail::expr_ops<Derived>::name(derived(), list);                  \
  }                                                                           \
  template <int N>                                                            \
  auto name(const Elem(&list)[N])&& {                                         \
    return detail::expr_ops<Derived>::name(std::move(*this).derived(), list); \
  }
  METAGRAD_VIEW_LIST_MEMBER_(permute, int)
  METAGRAD_VIEW_LIST_MEMBER_(slice, Slice)
  METAGRAD_VIEW_LIST_MEMBER_(expand, index_t)
  METAGRAD_VIEW_LIST_MEMBER_(broadcast_to, index_t)
#undef METAGRAD_VIEW_LIST_MEMBER_

  /// x.reshape({2, -1}): same elements in row-major order, new extents; one extent may be -1.
  template <int N>
  auto reshape(const index_t (&dims)[N]) const& {
    return detail::expr_ops<Derived>::reshape(derived(), Shape<N>(Array<index_t, N>(to_array(dims))));
  }
  template <int N>
  auto reshape(const index_t (&dims)[N]) && {
    return detail::expr_ops<Derived>::reshape(std::move(*this).derived(), Shape<N>(Array<index_t, N>(to_array(dims))));
  }
  template <int N>
  auto reshape(const Shape<N>& s) const& {
    return detail::expr_ops<Derived>::reshape(derived(), s);
  }
  template <int N>
  auto reshape(const Shape<N>& s) && {
    return detail::expr_ops<Derived>::reshape(std::move(*this).derived(), s);
  }
  /// Evaluates the expression into a new tensor (one fused pass).
  auto eval() const { return Tensor<typename Derived::value_type, Derived::rank>(derived()); }
  /// Evaluates a one-element expression and returns its value: sum(x).item().
  /// @throws shape_error when the expression has more than one element.
  auto item() const { return eval().item(); }

  /// x.flatten(): rank-1 view of all elements.
  auto flatten() const& { return reshape({index_t{-1}}); }
  auto flatten() && { return std::move(*this).reshape({index_t{-1}}); }

 private:
  template <int N>
  static constexpr Array<index_t, N> to_array(const index_t (&d)[N]) {
    Array<index_t, N> a{};
    for (int i = 0; i < N; ++i) a[i] = d[i];
    return a;
  }
};

/// True for every metagrad expression type (tensors, leaves, nodes), after removing cv-ref.
template <class E>
concept expression = requires {
  std::remove_cvref_t<E>::is_metagrad_expression;
};

template <class E>
using expr_value_t = typename std::remove_cvref_t<E>::value_type;

template <class E>
inline constexpr int expr_rank_v = std::remove_cvref_t<E>::rank;

METAGRAD_NAMESPACE_END
