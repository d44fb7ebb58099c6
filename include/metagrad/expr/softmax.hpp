// metagrad/expr/softmax.hpp — softmax(x, axis) and log_softmax(x, axis) as compositions of existing nodes:
// z = x - max(x, axis) with the maximum held constant for differentiation, s = sum(exp(z), axis), then
// exp(z) / s and z - log(s). Both reductions are boundaries, materialised once per evaluation and read by the
// fused elementwise pass that makes the output; the gradient comes from autodiff and is exact (softmax is
// invariant to the shift). Include <metagrad/expr.hpp> instead.
#pragma once

#include <type_traits>
#include <utility>

#include "../core/config.hpp"
#include "../core/dtype.hpp"
#include "elementwise.hpp"
#include "functions.hpp"
#include "index.hpp"
#include "reduce.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace detail {
/// The identity, with no derivative rule: autodiff treats it as piecewise constant and sends nothing through
/// it, which is stop_gradient (autodiff/nodes.hpp, a layer above) for the one use here, the shift of a
/// softmax, whose output does not depend on it.
struct ShiftConstant {
  static constexpr const char* name = "softmax_shift";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE T operator()(T a) const {
    return a;
  }
};

// x - max(x, axis), the maximum kept with the reduced axis (extent 1) and held constant.
template <class A>
auto softmax_shifted(A&& x, int axis) {
  const int axes[1] = {axis};
  return detail::reuse<A>(x) - make_unary(ShiftConstant{}, max(detail::reuse<A>(x), axes, keepdims));
}
}  // namespace detail

// Why a maximum and a sum rather than one log-sum-exp reduction: x - m is exact when the logits are close,
// and log(s) is small, so z - log(s) keeps full relative precision where x - lse (lse rounded to the
// magnitude of the logits) loses it in float at logits of 1000. An axis of +inf or of only -inf gives NaN,
// as in PyTorch; an empty axis throws (the maximum of nothing).

/// log(softmax(x)) along `axis`, as z - log(sum(exp(z))) with z = x - max(x) (stable for logits of any
/// size). @pre x has a floating dtype (compile-time check).
/// @throws index_error when axis is out of range; shape_error (when evaluated) when the axis is empty.
template <expression A>
auto log_softmax(A&& x, int axis = -1) {
  static_assert(floating_dtype<expr_value_t<A>>, "metagrad: log_softmax needs a float or double expression");
  static_assert(expr_rank_v<A> >= 1, "metagrad: log_softmax needs an expression of rank 1 or more");
  auto z = detail::softmax_shifted(std::forward<A>(x), axis);
  const int axes[1] = {axis};
  auto s = sum(exp(z), axes, keepdims);
  return std::move(z) - log(std::move(s));
}

/// exp(x) / sum(exp(x)) along `axis`, as exp(z) / sum(exp(z)) with z = x - max(x): every exponent is <= 0,
/// so large logits never overflow. @pre x has a floating dtype (compile-time check).
/// @throws index_error when axis is out of range; shape_error (when evaluated) when the axis is empty.
template <expression A>
auto softmax(A&& x, int axis = -1) {
  static_assert(floating_dtype<expr_value_t<A>>, "metagrad: softmax needs a float or double expression");
  static_assert(expr_rank_v<A> >= 1, "metagrad: softmax needs an expression of rank 1 or more");
  auto e = exp(detail::softmax_shifted(std::forward<A>(x), axis));
  const int axes[1] = {axis};
  auto s = sum(e, axes, keepdims);
  return std::move(e) / std::move(s);
}

METAGRAD_NAMESPACE_END
