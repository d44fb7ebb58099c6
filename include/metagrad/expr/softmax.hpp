// metagrad/expr/softmax.hpp — softmax(x, axis) and log_softmax(x, axis) as compositions of existing nodes:
// x - logsumexp(x, axis, keepdims) and its exponential. The log-sum-exp reduction subtracts the running
// maximum as it goes (ops::LogSumExpReducer), so logits of any magnitude give finite results, and it is a
// boundary: materialised once per evaluation, read by the fused elementwise pass that makes the output.
// The gradient comes from autodiff and is exact (d lse / dx = softmax). Include <metagrad/expr.hpp> instead.
#pragma once

#include <type_traits>
#include <utility>

#include "../core/dtype.hpp"
#include "functions.hpp"
#include "index.hpp"
#include "reduce.hpp"

METAGRAD_NAMESPACE_BEGIN

// Why one log-sum-exp reduction rather than a max and a sum of exp(x - max): one pass over x instead of two,
// one materialised [.., 1, ..] buffer instead of two, no per-element log in log_softmax, and the gradient of
// the reduction is exp(x - lse), the softmax itself, with no stop_gradient needed.

/// log(softmax(x)) along `axis`, computed as x - logsumexp(x, axis) (stable for logits of any size).
/// @pre x has a floating dtype (compile-time check). @throws index_error when axis is out of range.
template <expression A>
auto log_softmax(A&& x, int axis = -1) {
  static_assert(floating_dtype<expr_value_t<A>>, "metagrad: log_softmax needs a float or double expression");
  static_assert(expr_rank_v<A> >= 1, "metagrad: log_softmax needs an expression of rank 1 or more");
  const int axes[1] = {axis};
  return detail::reuse<A>(x) - logsumexp(detail::reuse<A>(x), axes, keepdims);
}

/// exp(x) / sum(exp(x)) along `axis`, computed as exp(x - logsumexp(x, axis)): every exponent is <= 0, so
/// large logits never overflow. An axis of +inf logits gives NaN, as in PyTorch.
/// @pre x has a floating dtype (compile-time check). @throws index_error when axis is out of range.
template <expression A>
auto softmax(A&& x, int axis = -1) {
  static_assert(floating_dtype<expr_value_t<A>>, "metagrad: softmax needs a float or double expression");
  return exp(log_softmax(std::forward<A>(x), axis));
}

METAGRAD_NAMESPACE_END
