// metagrad/expr/loss.hpp — loss functions as expressions: cross_entropy (fused log-softmax and negative
// log-likelihood, with label smoothing and ignore_index as PyTorch defines them), nll_loss,
// binary_cross_entropy_with_logits and mse_loss, each with a mean, sum or per-element (none) reduction.
// The class of each row is picked inside a fused reduction by comparing axis_index(logits, 1) with the label,
// so no gather node is needed and the gradient comes from autodiff. Include <metagrad/expr.hpp> instead.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "functions.hpp"
#include "index.hpp"
#include "leaf.hpp"
#include "node.hpp"
#include "reduce.hpp"
#include "view.hpp"

METAGRAD_NAMESPACE_BEGIN

/// How a loss combines its per-element values. The choice changes the result's rank (none keeps the
/// per-element shape), so it is a template argument: cross_entropy<Reduction::sum>(logits, labels).
enum class Reduction { mean, sum, none };

/// Options of cross_entropy (PyTorch's defaults).
struct CrossEntropyOptions {
  /// Weight e moved from the target class to a uniform distribution over the C classes: the loss of a row
  /// becomes (1 - e) (lse - x_y) + e (lse - mean_c x_c). @pre 0 <= e <= 1.
  double label_smoothing = 0.0;
  /// Rows whose label equals this contribute nothing, and the mean divides by the number of other rows.
  std::optional<std::int64_t> ignore_index;
};

/// Class labels checked against the logits they index when evaluated: every label must lie in [0, C) (or
/// equal the ignored value), and there must be one per row. Reading the labels on the host is cheap next to
/// the N x C pass over the logits; the values pass through unchanged. Labels on a CUDA device are not
/// checked (a label out of range then matches no class: its row's picked logit is 0, never undefined
/// behaviour).
template <class L, class X>
class CheckedLabelsExpr : public ExprBase<CheckedLabelsExpr<L, X>> {
 public:
  using value_type = typename L::value_type;
  static constexpr int rank = L::rank;
  static_assert(rank == 1 && X::rank == 2);

  CheckedLabelsExpr(L labels, X logits, const char* op, value_type ignore, bool has_ignore)
      : labels_(std::move(labels)), logits_(std::move(logits)), op_(op), ignore_(ignore), has_ignore_(has_ignore) {}
  Shape<1> shape() const { return labels_.shape(); }
  const L& operand() const { return labels_; }
  const X& like() const { return logits_; }
  auto children() const { return detail::refs(labels_); }
  bool same_params(const CheckedLabelsExpr& o) const {
    return op_ == o.op_ && ignore_ == o.ignore_ && has_ignore_ == o.has_ignore_;
  }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    const auto ls = labels_.shape();
    const auto xs = logits_.shape();
    if (ls[0] != xs[0])
      throw shape_error(std::string(op_) + ": logits of shape " + to_string(xs) + " and labels of shape " +
                        to_string(ls) + " disagree on the number of rows");
    auto p = lower_expr(labels_, ls);
    bool on_host = true;
    if constexpr (requires { labels_.value().device(); }) on_host = labels_.value().device().is_cpu();
    if (on_host) {
      for (index_t i = 0; i < ls[0]; ++i) {
        const value_type v = p.at(Array<index_t, 1>{{i}});
        if ((v < 0 || v >= xs[1]) && !(has_ignore_ && v == ignore_))
          throw error(std::string(op_) + ": label " + std::to_string(v) + " of row " + std::to_string(i) +
                      " is out of range for " + std::to_string(xs[1]) + " classes (logits of shape " + to_string(xs) +
                      ")");
      }
    }
    return broadcast_plan(p, ls, target);
  }

 private:
  L labels_;
  X logits_;
  const char* op_;
  value_type ignore_;
  bool has_ignore_;
};

namespace detail {

template <Reduction R, class E, class Valid>
auto reduce_rows(E&& rows, Valid&& valid) {
  // where(), not a product with the mask: an ignored row may hold inf or NaN (its label picks nothing).
  using T = expr_value_t<E>;
  auto kept = where(valid, std::forward<E>(rows), T(0));
  if constexpr (R == Reduction::none)
    return kept;
  else if constexpr (R == Reduction::sum)
    return sum(std::move(kept));
  else
    return sum(std::move(kept)) / sum(cast<T>(valid));
}

template <class A, class L>
void check_class_loss_types(const char* op) {
  (void)op;
  static_assert(floating_dtype<expr_value_t<A>>,
                "metagrad: the logits / log-probabilities of a classification loss "
                "need a float or double dtype");
  static_assert(expr_rank_v<A> == 2, "metagrad: a classification loss takes logits of shape [N, C]");
  static_assert(integer_dtype<expr_value_t<L>>, "metagrad: class labels need an int32 or int64 dtype");
  static_assert(expr_rank_v<L> == 1, "metagrad: a classification loss takes labels of shape [N]");
}

// The labels checked against x, and the per-row "label is not ignored" mask.
template <class X, class L>
auto checked_labels(const X& x, L&& labels, const char* op, const std::optional<std::int64_t>& ignore_index) {
  using LV = expr_value_t<L>;
  using LE = std::remove_cvref_t<decltype(operand_value<closure_t<L&&>>(labels))>;
  // Without an ignore_index, no label is ignored: the sentinel is a value the range check rejects anyway.
  LV ignore = std::numeric_limits<LV>::min();
  if (ignore_index) {
    if (*ignore_index < std::numeric_limits<LV>::min() || *ignore_index > std::numeric_limits<LV>::max())
      throw error(std::string(op) + ": ignore_index " + std::to_string(*ignore_index) +
                  " does not fit the labels' dtype");
    ignore = static_cast<LV>(*ignore_index);
  }
  CheckedLabelsExpr<LE, X> checked(operand_value<closure_t<L&&>>(labels), x, op, ignore, ignore_index.has_value());
  auto valid = checked != ignore;
  return std::make_pair(checked, valid);
}

}  // namespace detail

/// Cross-entropy of logits [N, C] against class labels [N] (int32 or int64): per row
/// logsumexp(x_i) - x_i[y_i], with label smoothing e: (1 - e)(lse_i - x_i[y_i]) + e (lse_i - mean_c x_ic).
/// Reduction::mean (default) averages over the rows not ignored (NaN when all are), sum adds them, none
/// returns the [N] per-row losses (0 for ignored rows).
/// @pre floating logits of rank 2, integer labels of rank 1 (compile-time checks).
/// @throws metagrad::error for e outside [0, 1] or an ignore_index the label dtype cannot hold (at once);
/// shape_error when the row counts differ and metagrad::error naming the row for a label outside [0, C)
/// (when evaluated).
template <Reduction R = Reduction::mean, expression A, expression L>
auto cross_entropy(A&& logits, L&& labels, const CrossEntropyOptions& options = {}) {
  detail::check_class_loss_types<A, L>("cross_entropy");
  using T = expr_value_t<A>;
  const double e = options.label_smoothing;
  if (!(e >= 0.0 && e <= 1.0))
    throw error("cross_entropy: label_smoothing must lie in [0, 1], got " + std::to_string(e));
  const auto& x = logits;
  auto [checked, valid] =
      detail::checked_labels(detail::reuse<A>(x), std::forward<L>(labels), "cross_entropy", options.ignore_index);
  auto target = axis_index(detail::reuse<A>(x), 1) == unsqueeze(checked, 1);
  // The target logit with weight 1 - e, every logit with weight e / C, in one fused reduction. The smoothing
  // term is a where() so that e = 0 never forms 0 * (-inf) from a masked-out logit.
  auto smooth_weight = ScalarExpr<T>(static_cast<T>(e)) / axis_count<T>(detail::reuse<A>(x), {1});
  auto picked = where(target, detail::reuse<A>(x) * static_cast<T>(1.0 - e), T(0)) +
                where(ScalarExpr<bool>(e > 0.0), detail::reuse<A>(x) * smooth_weight, T(0));
  auto rows = logsumexp(detail::reuse<A>(x), 1) - sum(std::move(picked), 1);
  return detail::reduce_rows<R>(std::move(rows), std::move(valid));
}

/// Negative log-likelihood of log-probabilities [N, C] (e.g. log_softmax(logits, 1)) against labels [N]:
/// per row -log_probs[i, y_i], reduced as cross_entropy's (rows labelled ignore_index contribute nothing).
/// @throws as cross_entropy.
template <Reduction R = Reduction::mean, expression A, expression L>
auto nll_loss(A&& log_probs, L&& labels, std::optional<std::int64_t> ignore_index = std::nullopt) {
  detail::check_class_loss_types<A, L>("nll_loss");
  using T = expr_value_t<A>;
  const auto& x = log_probs;
  auto [checked, valid] =
      detail::checked_labels(detail::reuse<A>(x), std::forward<L>(labels), "nll_loss", ignore_index);
  auto target = axis_index(detail::reuse<A>(x), 1) == unsqueeze(checked, 1);
  auto rows = -sum(where(std::move(target), detail::reuse<A>(x), T(0)), 1);
  return detail::reduce_rows<R>(std::move(rows), std::move(valid));
}

namespace detail {
template <Reduction R, class E>
auto reduce_elements(E&& e) {
  if constexpr (R == Reduction::none)
    return std::forward<E>(e);
  else if constexpr (R == Reduction::sum)
    return sum(std::forward<E>(e));
  else
    return mean(std::forward<E>(e));
}
}  // namespace detail

/// Binary cross-entropy of logits x against targets t in [0, 1], elementwise in the stable form
/// max(x, 0) - x t + log1p(exp(-|x|)) (no overflow for any x; the gradient is sigmoid(x) - t, also at x = 0).
/// t broadcasts to x's shape. @pre floating x (compile-time check). @throws shape_error (when evaluated) if
/// the shapes do not broadcast.
template <Reduction R = Reduction::mean, expression A, operand B>
auto binary_cross_entropy_with_logits(A&& x, B&& target) {
  static_assert(floating_dtype<expr_value_t<A>>, "metagrad: binary_cross_entropy_with_logits needs floating logits");
  auto loss = maximum(detail::reuse<A>(x), 0) - detail::reuse<A>(x) * std::forward<B>(target) +
              log1p(exp(-abs(detail::reuse<A>(x))));
  return detail::reduce_elements<R>(std::move(loss));
}

/// Mean squared error: (a - b)^2 elementwise (broadcasting), then reduced.
/// @throws shape_error (when evaluated) if the shapes do not broadcast.
template <Reduction R = Reduction::mean, operand A, operand B>
requires(expression<A> || expression<B>) auto mse_loss(A&& a, B&& b) {
  return detail::reduce_elements<R>(square(std::forward<A>(a) - std::forward<B>(b)));
}

METAGRAD_NAMESPACE_END
