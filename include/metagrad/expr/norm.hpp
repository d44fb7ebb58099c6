// metagrad/expr/norm.hpp — normalisation: batch_norm over the batch and spatial axes of [N, C, ...] input
// (training form with gamma and beta: the boundary node of expr/batch_norm.hpp and its statistics; training form
// without them, and evaluation form with running statistics: compositions of reductions and elementwise nodes),
// batch statistics as reductions (batch_mean, batch_var), and layer_norm over the trailing axes. The
// compositions' gradients come from autodiff through the mean and variance reductions. Include
// <metagrad/expr.hpp> instead.
#pragma once

#include <type_traits>
#include <utility>

#include "../core/dtype.hpp"
#include "../core/shape.hpp"
#include "../ops/reduction.hpp"
#include "batch_norm.hpp"
#include "functions.hpp"
#include "index.hpp"
#include "reduce.hpp"
#include "view.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace detail {

// The last K axes of a rank-R expression.
template <int R, int K>
Array<int, K> trailing_axes() {
  Array<int, K> a{};
  for (int i = 0; i < K; ++i) a[i] = R - K + i;
  return a;
}

// A per-channel [C] expression read as [C, 1, ...] (rank R - 1), so that it broadcasts along axis 1 of a
// rank-R input; rank-2 input [N, C] takes it as it is.
template <int R, class E>
auto per_channel(E&& e) {
  static_assert(expr_rank_v<E> == 1, "metagrad: batch_norm statistics and affine parameters have shape [C]");
  return along_channels<R>(std::forward<E>(e));
}

template <class A>
void check_batch_norm_input() {
  static_assert(floating_dtype<expr_value_t<A>>, "metagrad: batch_norm needs a float or double input");
  static_assert(expr_rank_v<A> >= 2, "metagrad: batch_norm takes input of shape [N, C] or [N, C, d1, ...]");
}

// The biased batch variance [C] (the one normalisation uses).
template <class A>
auto batch_var_biased(A&& x) {
  constexpr int R = expr_rank_v<A>;
  return ReduceExpr<ops::VarReducer, closure_t<A&&>, R - 1, false>(ops::VarReducer{0}, std::forward<A>(x),
                                                                   batch_axes<R>());
}

}  // namespace detail

/// The per-channel mean of [N, C, ...] input over every axis but 1: shape [C]. The same expression (one
/// reduction in a compiled program) that batch_norm normalises with.
template <expression A>
auto batch_mean(A&& x) {
  detail::check_batch_norm_input<A>();
  constexpr int R = expr_rank_v<A>;
  return ReduceExpr<ops::MeanReducer, closure_t<A&&>, R - 1, false>(ops::MeanReducer{}, std::forward<A>(x),
                                                                    detail::batch_axes<R>());
}

/// The per-channel variance of [N, C, ...] input over every axis but 1: shape [C]; unbiased (divided by n - 1,
/// what running_var tracks in PyTorch) or biased (divided by n, what normalisation uses). Both are the biased
/// reduction batch_norm computes, rescaled by n / (n - 1) elementwise, so a training step that updates the
/// running statistics reduces x once for them.
template <expression A>
auto batch_var(A&& x, bool unbiased = true) {
  detail::check_batch_norm_input<A>();
  using T = expr_value_t<A>;
  constexpr int R = expr_rank_v<A>;
  auto n = AxisCountExpr<T, std::remove_cvref_t<decltype(detail::operand_value<closure_t<A&&>>(x))>>(
      detail::operand_value<closure_t<A&&>>(x), [] {
        Array<bool, R> m{};
        for (int d = 0; d < R; ++d) m[d] = d != 1;
        return m;
      }());
  auto ddof = ScalarExpr<T>(unbiased ? T(1) : T(0));
  return detail::batch_var_biased(std::forward<A>(x)) * (n / (n - ddof));
}

/// Batch normalisation in training form: each channel of x [N, C, ...] normalised with the batch's own mean
/// and biased variance, (x - mean) / sqrt(var + eps), then scaled by gamma [C] and shifted by beta [C].
/// One boundary node (expr/batch_norm.hpp): a single backend call (cuDNN's batch norm on CUDA) computes y and
/// the batch statistics, and the gradient is one backward call for x, gamma and beta. batch_norm_stats() gives
/// the statistics of the same node, for running averages.
/// @pre floating x of rank >= 2, gamma and beta of rank 1 (compile-time checks). @throws shape_error (when
/// evaluated) if gamma or beta does not hold one value per channel; metagrad::error if eps < 0.
template <expression A, expression G, expression B>
auto batch_norm(A&& x, G&& gamma, B&& beta, double eps = 1e-5) {
  detail::check_batch_norm_input<A>();
  using BN = BatchNormExpr<closure_t<A&&>, closure_t<G&&>, closure_t<B&&>>;
  return BatchNormPartExpr<0, BN>(BN(std::forward<A>(x), std::forward<G>(gamma), std::forward<B>(beta), eps));
}

/// The batch statistics of batch_norm(x, gamma, beta, eps), read from the same node (a Program computes them
/// together): {mean [C], unbiased variance [C]}. They stop the gradient (running averages are not
/// differentiated).
template <expression A, expression G, expression B>
auto batch_norm_stats(A&& x, G&& gamma, B&& beta, double eps = 1e-5) {
  detail::check_batch_norm_input<A>();
  using BN = BatchNormExpr<closure_t<A&&>, closure_t<G&&>, closure_t<B&&>>;
  BN bn(std::forward<A>(x), std::forward<G>(gamma), std::forward<B>(beta), eps);
  return std::make_pair(BatchNormPartExpr<1, BN>(bn), BatchNormPartExpr<3, BN>(bn));
}

/// Batch normalisation in training form without the affine parameters (affine = false).
template <expression A>
auto batch_norm(A&& x, double eps = 1e-5) {
  detail::check_batch_norm_input<A>();
  constexpr int R = expr_rank_v<A>;
  using T = expr_value_t<A>;
  auto mu = detail::per_channel<R>(batch_mean(detail::reuse<A>(x)));
  auto var = detail::per_channel<R>(detail::batch_var_biased(detail::reuse<A>(x)));
  return (detail::reuse<A>(x) - std::move(mu)) * rsqrt(std::move(var) + static_cast<T>(eps));
}

/// Batch normalisation in evaluation form: (x - running_mean) / sqrt(running_var + eps) * gamma + beta, all
/// four [C]. @throws shape_error (when evaluated) if a statistic does not broadcast along the channel axis.
template <expression A, expression M, expression V, expression G, expression B>
auto batch_norm_eval(A&& x, M&& running_mean, V&& running_var, G&& gamma, B&& beta, double eps = 1e-5) {
  detail::check_batch_norm_input<A>();
  constexpr int R = expr_rank_v<A>;
  using T = expr_value_t<A>;
  return (std::forward<A>(x) - detail::per_channel<R>(std::forward<M>(running_mean))) *
             rsqrt(detail::per_channel<R>(std::forward<V>(running_var)) + static_cast<T>(eps)) *
             detail::per_channel<R>(std::forward<G>(gamma)) +
         detail::per_channel<R>(std::forward<B>(beta));
}

/// Batch normalisation in evaluation form without the affine parameters.
template <expression A, expression M, expression V>
auto batch_norm_eval(A&& x, M&& running_mean, V&& running_var, double eps = 1e-5) {
  detail::check_batch_norm_input<A>();
  constexpr int R = expr_rank_v<A>;
  using T = expr_value_t<A>;
  return (std::forward<A>(x) - detail::per_channel<R>(std::forward<M>(running_mean))) *
         rsqrt(detail::per_channel<R>(std::forward<V>(running_var)) + static_cast<T>(eps));
}

/// Layer normalisation over the last K axes, without affine parameters: (x - mean) / sqrt(var + eps) with
/// the biased variance. layer_norm<1>(h) normalises each row of [N, D].
/// @pre floating x with rank >= K >= 1 (compile-time checks).
template <int K, expression A>
auto layer_norm(A&& x, double eps = 1e-5) {
  using T = expr_value_t<A>;
  constexpr int R = expr_rank_v<A>;
  static_assert(floating_dtype<T>, "metagrad: layer_norm needs a float or double input");
  static_assert(K >= 1 && K <= R, "metagrad: layer_norm normalises over 1 to rank trailing axes");
  const auto axes = detail::trailing_axes<R, K>();
  auto mu = ReduceExpr<ops::MeanReducer, closure_t<decltype(detail::reuse<A>(x))&&>, K, true>(
      ops::MeanReducer{}, detail::reuse<A>(x), axes);
  auto var = ReduceExpr<ops::VarReducer, closure_t<decltype(detail::reuse<A>(x))&&>, K, true>(
      ops::VarReducer{0}, detail::reuse<A>(x), axes);
  return (detail::reuse<A>(x) - std::move(mu)) * rsqrt(std::move(var) + static_cast<T>(eps));
}

/// Layer normalisation over the last K axes, K the rank of gamma and beta (the normalised shape), followed
/// by the elementwise affine map: layer_norm(h, gamma, beta) with gamma, beta of shape [D] for h [N, D].
/// @throws shape_error (when evaluated) if gamma or beta do not broadcast to x's trailing axes.
template <expression A, expression G, expression B>
auto layer_norm(A&& x, G&& gamma, B&& beta, double eps = 1e-5) {
  static_assert(expr_rank_v<G> == expr_rank_v<B>, "metagrad: layer_norm's gamma and beta need the same rank");
  return layer_norm<expr_rank_v<G>>(std::forward<A>(x), eps) * std::forward<G>(gamma) + std::forward<B>(beta);
}

METAGRAD_NAMESPACE_END
