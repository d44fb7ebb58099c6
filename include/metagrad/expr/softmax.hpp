// metagrad/expr/softmax.hpp — softmax(x, axis) and log_softmax(x, axis) as boundary nodes, with their
// backward pass as a boundary node too. A softmax is a short row of work that reads its input twice and writes
// it once: as one node the backend does it in a single sweep over each row while the row is in cache (the CPU's
// loops in backend/cpu/softmax.hpp), or in one library call (cuDNN's cudnnSoftmaxForward / Backward on CUDA,
// backend/cuda/softmax.hpp). As a composition of a max reduction, a sum reduction and a fused pass it read x from
// memory three times and computed every exponential twice.
//
// Numerics, on every backend: z = x - max(x) along the axis, y = exp(z) / sum(exp(z)), log y = z - log(sum(exp(z))).
// Every exponent is <= 0, so logits of any size stay finite; x - max is exact when the logits are close, and
// log(sum) is small, so log_softmax keeps full relative precision where x - logsumexp(x) (rounded to the logits'
// magnitude) loses it in float at logits of 1000. An axis holding +inf, NaN or only -inf gives NaN, as PyTorch.
//
// Gradients (the backward node, one backend pass): softmax dx = y (g - sum(g y)); log_softmax dx = g - exp(y)
// sum(g). The backward node is differentiable again, by rules made of ordinary expressions (second derivatives).
// Include <metagrad/expr.hpp> instead.
#pragma once

#include <string>
#include <type_traits>
#include <utility>

#include "../core/config.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "conv.hpp"
#include "elementwise.hpp"
#include "functions.hpp"
#include "node.hpp"
#include "reduce.hpp"

METAGRAD_NAMESPACE_BEGIN

/// A softmax over one axis of a contiguous row-major tensor, seen as [outer, n, inner]: the axis has extent
/// n and stride inner (cuDNN's NCHW "channel" mode with N = outer, C = n, H = inner, W = 1).
struct SoftmaxGeometry {
  index_t outer = 0, n = 0, inner = 0;
  index_t numel() const { return outer * n * inner; }
  bool operator==(const SoftmaxGeometry&) const = default;
};

/// One softmax pass for a backend. Forward: out = softmax(x) (or log_softmax when `log`). Backward: out = dx
/// given y (the forward result: softmax, or log_softmax when `log`) and g (its adjoint). Every pointer is
/// contiguous memory of `device` in the geometry's layout; out overlaps nothing the pass reads.
/// backend/dispatch.hpp sends run_softmax / run_softmax_backward to the CPU loops or, on a CUDA device, to
/// cuDNN (or metagrad's kernel where cuDNN cannot take the call).
template <class T>
struct SoftmaxCall {
  SoftmaxGeometry geom;
  bool log = false;
  const T* x = nullptr;  ///< forward: the input; backward: y
  const T* g = nullptr;  ///< backward only: the adjoint of y
  T* out = nullptr;
  Device device = Device::cpu();
};

namespace detail {

inline const char* softmax_name(bool log) { return log ? "log_softmax" : "softmax"; }

/// @throws shape_error naming the op, the axis and the shape when the axis is empty (the maximum of nothing).
template <int R>
SoftmaxGeometry softmax_geometry(const Shape<R>& s, int axis, bool log, const char* pass = "") {
  SoftmaxGeometry g{1, s[axis], 1};
  for (int d = 0; d < axis; ++d) g.outer *= s[d];
  for (int d = axis + 1; d < R; ++d) g.inner *= s[d];
  if (g.n == 0)
    throw shape_error(std::string(softmax_name(log)) + pass + ": axis " + std::to_string(axis) + " of shape " +
                      to_string(s) + " is empty (a softmax needs at least one element to normalise over)");
  return g;
}

template <class Node>
struct SoftmaxNotDifferentiable : std::false_type {};

}  // namespace detail

template <bool Log, class X>
class SoftmaxExpr;

/// dx of softmax (Log = false) or log_softmax (Log = true) along `axis`, from the output adjoint g and the
/// forward node y (a copy of it, which a Program merges with the forward node, so the pass reads the stored
/// result). Differentiable in g and y.
template <bool Log, class G, class Y>
class SoftmaxBackwardExpr : public ExprBase<SoftmaxBackwardExpr<Log, G, Y>>,
                            public BoundaryBase<typename Y::value_type, Y::rank> {
 public:
  using value_type = typename Y::value_type;
  static constexpr int rank = Y::rank;
  static constexpr const char* step_name = Log ? "log_softmax (backward)" : "softmax (backward)";
  using self_differentiating_tag = void;
  static_assert(std::is_same_v<value_type, expr_value_t<G>>, "metagrad: softmax backward: adjoint of another dtype");

  SoftmaxBackwardExpr(G g, Y y, int axis) : g_(std::move(g)), y_(std::move(y)), axis_(axis) {}
  auto children() const { return detail::refs(g_, y_); }
  bool same_params(const SoftmaxBackwardExpr& o) const { return axis_ == o.axis_; }
  int axis() const { return axis_; }
  Shape<rank> shape() const { return y_.shape(); }

  /// dst = dx; dst is (re)allocated when its shape differs.
  /// @throws shape_error naming the op when g does not have y's shape.
  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == rank);
    const char* op = step_name;
    const Device dev = detail::boundary_device(*this, dst, op);
    const auto ys = y_.shape();
    const auto gs = g_.shape();
    if (!(gs == ys))
      throw shape_error(std::string(op) + ": the output adjoint has shape " + to_string(gs) + ", expected " +
                        to_string(ys));
    const auto geom = detail::softmax_geometry(ys, axis_, Log, " (backward)");
    const value_type* yp = detail::contiguous_values<value_type>(y_, ys, ybuf_, dev);
    const value_type* gp = detail::contiguous_values<value_type>(g_, gs, gbuf_, dev);
    const detail::Spans<value_type, 2> in{{{yp, ys.numel()}, {gp, gs.numel()}}};
    detail::run_into_destination(dst, ys, dev, in, out_, [&](value_type* out) {
      run_softmax_backward(SoftmaxCall<value_type>{geom, Log, yp, gp, out, dev});
    });
  }

  /// Adjoint of g. softmax: d(dx_i)/d(g_k) = y_i (delta_ik - y_k), symmetric, so it is the backward pass again:
  /// y (h - sum(h y)). log_softmax: h - sum(h exp(y)) (the sum broadcast along the axis).
  template <class H>
  auto backward(std::integral_constant<int, 0>, const H& h) const {
    if constexpr (Log)
      return detail::copy_operand<H>(h) - sum_axis(detail::copy_operand<H>(h) * exp(detail::copy_operand<Y>(y_)));
    else
      return SoftmaxBackwardExpr<false, H, Y>(h, y_, axis_);
  }
  /// Adjoint of y. softmax: h (g - sum(g y)) - g sum(h y); log_softmax: -h exp(y) sum(g).
  template <class H>
  auto backward(std::integral_constant<int, 1>, const H& h) const {
    if constexpr (Log) {
      return -(detail::copy_operand<H>(h) * exp(detail::copy_operand<Y>(y_)) * sum_axis(detail::copy_operand<G>(g_)));
    } else {
      auto gy = sum_axis(detail::copy_operand<G>(g_) * detail::copy_operand<Y>(y_));
      auto hy = sum_axis(detail::copy_operand<H>(h) * detail::copy_operand<Y>(y_));
      return detail::copy_operand<H>(h) * (detail::copy_operand<G>(g_) - std::move(gy)) -
             detail::copy_operand<G>(g_) * std::move(hy);
    }
  }

 private:
  template <class E>
  auto sum_axis(E&& e) const {
    const int axes[1] = {axis_};
    return sum(std::forward<E>(e), axes, keepdims);
  }

  G g_;
  Y y_;
  int axis_;
  detail::Scratch<value_type, rank> ybuf_, gbuf_, out_;
};

/// softmax (Log = false) or log_softmax (Log = true) of x along one axis: see softmax(), log_softmax().
template <bool Log, class X>
class SoftmaxExpr : public ExprBase<SoftmaxExpr<Log, X>>,
                    public BoundaryBase<typename std::remove_cvref_t<X>::value_type, std::remove_cvref_t<X>::rank> {
  using XE = std::remove_cvref_t<X>;

 public:
  using value_type = typename XE::value_type;
  static constexpr int rank = XE::rank;
  static constexpr bool is_log = Log;
  static constexpr const char* step_name = Log ? "log_softmax" : "softmax";
  using self_differentiating_tag = void;
  static_assert(std::is_same_v<value_type, float> || std::is_same_v<value_type, double>,
                "metagrad: softmax and log_softmax need a float or double expression");
  static_assert(rank >= 1, "metagrad: softmax and log_softmax need an expression of rank 1 or more");

  /// @throws index_error naming the op when axis is out of range for the rank.
  SoftmaxExpr(X x, int axis) : x_(std::forward<X>(x)), axis_(normalize_axis(axis, rank, detail::softmax_name(Log))) {}

  const XE& operand() const { return x_; }
  int axis() const { return axis_; }
  auto children() const { return detail::refs(x_); }
  bool same_params(const SoftmaxExpr& o) const { return axis_ == o.axis_; }
  Shape<rank> shape() const { return x_.shape(); }

  /// dst = softmax(x) (or log_softmax); dst is (re)allocated when its shape differs.
  /// @throws shape_error naming the op when the axis is empty.
  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == rank);
    const Device dev = detail::boundary_device(*this, dst, detail::softmax_name(Log));
    const auto xs = x_.shape();
    const auto geom = detail::softmax_geometry(xs, axis_, Log);
    const value_type* xp = detail::contiguous_values<value_type>(x_, xs, xbuf_, dev);
    const detail::Spans<value_type, 1> in{{{xp, xs.numel()}}};
    detail::run_into_destination(dst, xs, dev, in, out_, [&](value_type* out) {
      run_softmax(SoftmaxCall<value_type>{geom, Log, xp, nullptr, out, dev});
    });
  }

  /// dx = the backward node over (g, this node's value).
  template <class G>
  auto backward(std::integral_constant<int, 0>, const G& g) const {
    return SoftmaxBackwardExpr<Log, G, SoftmaxExpr>(g, *this, axis_);
  }

 private:
  X x_;
  int axis_;
  detail::Scratch<value_type, rank> xbuf_, out_;
};

/// log(softmax(x)) along `axis`: z - log(sum(exp(z))) with z = x - max(x), in one boundary node (one pass per
/// row on the CPU, cuDNN on CUDA). Differentiable in x (twice).
/// @pre x has a float or double dtype and rank >= 1 (compile-time checks).
/// @throws index_error naming log_softmax when axis is out of range (at once); shape_error (when evaluated)
///         when the axis is empty.
template <expression A>
auto log_softmax(A&& x, int axis = -1) {
  static_assert(floating_dtype<expr_value_t<A>>, "metagrad: log_softmax needs a float or double expression");
  static_assert(expr_rank_v<A> >= 1, "metagrad: log_softmax needs an expression of rank 1 or more");
  return SoftmaxExpr<true, closure_t<A&&>>(std::forward<A>(x), axis);
}

/// exp(x) / sum(exp(x)) along `axis`, as exp(z) / sum(exp(z)) with z = x - max(x): every exponent is <= 0, so
/// large logits never overflow. One boundary node (one pass per row on the CPU, cuDNN on CUDA).
/// Differentiable in x (twice).
/// @pre x has a float or double dtype and rank >= 1 (compile-time checks).
/// @throws index_error naming softmax when axis is out of range (at once); shape_error (when evaluated) when
///         the axis is empty.
template <expression A>
auto softmax(A&& x, int axis = -1) {
  static_assert(floating_dtype<expr_value_t<A>>, "metagrad: softmax needs a float or double expression");
  static_assert(expr_rank_v<A> >= 1, "metagrad: softmax needs an expression of rank 1 or more");
  return SoftmaxExpr<false, closure_t<A&&>>(std::forward<A>(x), axis);
}

METAGRAD_NAMESPACE_END
