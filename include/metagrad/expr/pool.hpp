// metagrad/expr/pool.hpp — 2-D pooling over the last two axes of NCHW tensors as boundary nodes, with
// PyTorch's semantics: max_pool2d (stride, padding, dilation, ceil_mode), avg_pool2d (stride, padding,
// ceil_mode, count_include_pad) and adaptive_avg_pool2d. A pool reads its operand through the operand's
// lowered plan, so relu(conv2d(x, w) + b) feeding a pool is computed inside the pooling loop and needs no
// buffer of its own. Gradients: max pooling's is a boundary node that recomputes each window's argmax from
// the operand and sends the window's adjoint to it (ties: the first maximum in row-major window order, as
// PyTorch); the average pools spread each adjoint over its window, divided by the window's count (and that
// node is differentiable again: its adjoint is the average pool of the adjoint). The loops are the
// backend's (run_pool2d and friends, found by argument-dependent lookup: the CPU's loops, or on a CUDA device
// cuDNN and metagrad's kernels). Include <metagrad/expr.hpp>.
#pragma once

#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "conv.hpp"
#include "leaf.hpp"
#include "node.hpp"
#include "plan.hpp"

METAGRAD_NAMESPACE_BEGIN

enum class PoolKind { max, avg, adaptive_avg };

/// The parameters of one pooling (fields that do not apply to a kind are unused: dilation for the average
/// pools, everything but `output` for the adaptive one).
struct Pool2dParams {
  PoolKind kind = PoolKind::max;
  Size2 kernel = 1, stride = 1, padding = 0, dilation = 1;
  Size2 output = 1;  ///< adaptive_avg_pool2d's output extents
  bool ceil_mode = false;
  bool count_include_pad = true;
  bool operator==(const Pool2dParams&) const = default;
};

/// One pooling for a backend: input [n, c, h, w] -> output [n, c, oh, ow].
struct Pool2dGeometry {
  index_t n = 0, c = 0, h = 0, w = 0, oh = 0, ow = 0;
  Pool2dParams p;
  Shape<4> input_shape() const { return Shape<4>{n, c, h, w}; }
  Shape<4> output_shape() const { return Shape<4>{n, c, oh, ow}; }
};

/// A pooling pass for a backend; `out` is contiguous memory of `device` and overlaps nothing the pass
/// reads. The backend answers run_pool2d(call, x_plan) (out = the pooled x), run_max_pool2d_backward(call,
/// g_plan, x_plan) and run_avg_pool2d_backward(call, g_plan) (out = dx, shaped like x, overwritten);
/// backend/dispatch.hpp sends each to the CPU loops or, for a CUDA device, to cuDNN and metagrad's kernels.
template <class T>
struct Pool2dCall {
  Pool2dGeometry geom;
  T* out;
  Device device = Device::cpu();
};

namespace detail {

inline const char* pool_name(PoolKind k) {
  return k == PoolKind::max ? "max_pool2d" : k == PoolKind::avg ? "avg_pool2d" : "adaptive_avg_pool2d";
}

/// Output extent of one axis, as PyTorch's pooling_output_shape: with ceil_mode the last window may start in
/// the right padding only if it starts inside the input or the left padding.
inline index_t pool_out_extent(index_t in, index_t k, index_t pad, index_t stride, index_t dil, bool ceil_mode) {
  const index_t span = in + 2 * pad - dil * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  if (span < 0) return 0;
  index_t out = span / stride + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

/// @throws metagrad::error naming the pool for a kernel, stride or dilation below 1, a negative padding or
///         one of more than half the kernel, or an adaptive output extent below 1.
inline void check_pool_params(const Pool2dParams& p) {
  const std::string op = pool_name(p.kind);
  if (p.kind == PoolKind::adaptive_avg) {
    if (p.output.h < 1 || p.output.w < 1)
      throw error(op + ": output size " + size2_text(p.output) + " must be >= 1 on both axes");
    return;
  }
  if (p.kernel.h < 1 || p.kernel.w < 1) throw error(op + ": kernel size " + size2_text(p.kernel) + " must be >= 1");
  if (p.stride.h < 1 || p.stride.w < 1) throw error(op + ": stride " + size2_text(p.stride) + " must be >= 1");
  if (p.dilation.h < 1 || p.dilation.w < 1) throw error(op + ": dilation " + size2_text(p.dilation) + " must be >= 1");
  if (p.padding.h < 0 || p.padding.w < 0 || p.padding.h > p.kernel.h / 2 || p.padding.w > p.kernel.w / 2)
    throw error(op + ": padding " + size2_text(p.padding) + " must be between 0 and half the kernel size " +
                size2_text(p.kernel));
}

/// @throws shape_error naming the pool and the input shape when the output would be empty (or, adaptive, the
///         input has no rows or columns to average).
inline Pool2dGeometry pool2d_geometry(const Shape<4>& xs, const Pool2dParams& p) {
  Pool2dGeometry g;
  g.n = xs[0];
  g.c = xs[1];
  g.h = xs[2];
  g.w = xs[3];
  g.p = p;
  const std::string op = pool_name(p.kind);
  if (p.kind == PoolKind::adaptive_avg) {
    if (g.h < 1 || g.w < 1)
      throw shape_error(op + ": input " + to_string(xs) + " has no elements to average over its last two axes");
    g.oh = p.output.h;
    g.ow = p.output.w;
    return g;
  }
  const index_t dh = p.kind == PoolKind::max ? p.dilation.h : 1, dw = p.kind == PoolKind::max ? p.dilation.w : 1;
  g.oh = pool_out_extent(g.h, p.kernel.h, p.padding.h, p.stride.h, dh, p.ceil_mode);
  g.ow = pool_out_extent(g.w, p.kernel.w, p.padding.w, p.stride.w, dw, p.ceil_mode);
  if (g.oh < 1 || g.ow < 1)
    throw shape_error(op + ": input " + to_string(xs) + " with kernel " + size2_text(p.kernel) + ", padding " +
                      size2_text(p.padding) + (p.kind == PoolKind::max ? ", dilation " + size2_text(p.dilation) : "") +
                      " and stride " + size2_text(p.stride) + ": the output would be empty");
  if (p.kind == PoolKind::max) {
    // With dilation, a window's taps can all fall in the padding (width 1, kernel 2, padding 1, dilation 2):
    // its maximum would have no position to send a gradient to. Refused rather than defined arbitrarily.
    auto empty_window = [](index_t out, index_t in, index_t k, index_t s, index_t pad, index_t d) {
      for (index_t o = 0; o < out; ++o) {
        bool any = false;
        for (index_t j = 0; j < k && !any; ++j) {
          const index_t i = o * s - pad + j * d;
          any = i >= 0 && i < in;
        }
        if (!any) return true;
      }
      return false;
    };
    if ((dh > 1 && empty_window(g.oh, g.h, p.kernel.h, p.stride.h, p.padding.h, dh)) ||
        (dw > 1 && empty_window(g.ow, g.w, p.kernel.w, p.stride.w, p.padding.w, dw)))
      throw shape_error(op + ": input " + to_string(xs) + " with kernel " + size2_text(p.kernel) + ", padding " +
                        size2_text(p.padding) + ", dilation " + size2_text(p.dilation) + " and stride " +
                        size2_text(p.stride) + ": a window covers only padding (no input element)");
  }
  return g;
}

/// Whether the leaves of `plan` (read at `shape`) touch the memory of dst.
template <class Plan, int R, class T>
bool plan_reads(const Plan& plan, const Shape<R>& shape, const Tensor<T, 4>& dst) {
  const auto os = dst.shape();
  if (os.numel() == 0 || shape.numel() == 0) return false;
  const auto r = offset_range(os, dst.strides());
  const char* lo = reinterpret_cast<const char*>(dst.data() + r.lo);
  const char* hi = reinterpret_cast<const char*>(dst.data() + r.hi + 1);
  bool hit = false;
  plan.visit_leaves([&](const void*, const void* l, const void* h, const auto&,
                        bool) { hit |= !(static_cast<const char*>(h) <= lo || static_cast<const char*>(l) >= hi); },
                    false, shape);
  return hit;
}

/// Runs f(out) with out = dst's memory (allocated on `device` to `os` when its shape differs) when dst is
/// contiguous and `reads(dst)` is false, else a temporary on `device` that is copied into dst afterwards.
template <class T, class Reads, class F>
void pool_into(Tensor<T, 4>& dst, const Shape<4>& os, Device device, Reads&& reads, const Scratch<T, 4>& tmp, F&& f) {
  if (!dst.defined() || !(dst.shape() == os)) dst.allocate(os, device);
  if (os.numel() == 0) return;
  const bool direct = dst.is_contiguous() && !reads(dst);
  f(direct ? dst.data() : tmp.sized(os, device).data());
  if (!direct) dst.assign(tmp.t_.get());
}

template <class Node>
struct PoolNotDifferentiable : std::false_type {};

}  // namespace detail

/// dx of a max pooling: each output adjoint goes to its window's (first) maximum in x, shaped like x. Not
/// differentiable itself.
template <class G, class X>
class MaxPool2dBackwardExpr : public ExprBase<MaxPool2dBackwardExpr<G, X>>,
                              public BoundaryBase<typename X::value_type, 4> {
 public:
  using value_type = typename X::value_type;
  static constexpr int rank = 4;
  static constexpr const char* step_name = "max_pool2d (backward)";
  using self_differentiating_tag = void;

  MaxPool2dBackwardExpr(G g, X x, const Pool2dParams& p) : g_(g), x_(x), p_(p) {}
  auto children() const { return detail::refs(g_, x_); }
  bool same_params(const MaxPool2dBackwardExpr& o) const { return p_ == o.p_; }
  Shape<4> shape() const { return x_.shape(); }

  /// @throws shape_error naming max_pool2d when g does not have the pooled shape.
  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == 4);
    const Device dev = detail::boundary_device(*this, dst, "max_pool2d (backward)");
    const auto xs = x_.shape();
    const auto geom = detail::pool2d_geometry(xs, p_);
    const auto gs = g_.shape();
    if (!(gs == geom.output_shape()))
      throw shape_error("max_pool2d (backward): the output adjoint has shape " + to_string(gs) + ", expected " +
                        to_string(geom.output_shape()));
    const auto gp = lower_expr(g_, gs);
    const auto xp = lower_expr(x_, xs);
    detail::pool_into(
        dst, xs, dev,
        [&](const Tensor<value_type, 4>& d) { return detail::plan_reads(gp, gs, d) || detail::plan_reads(xp, xs, d); },
        out_,
        [&](value_type* out) {
          run_max_pool2d_backward(Pool2dCall<value_type>{geom, out, dev}, gp, xp);
        });
  }

  template <int I, class H>
  auto backward(std::integral_constant<int, I>, const H&) const {
    static_assert(detail::PoolNotDifferentiable<H>::value,
                  "metagrad: max_pool2d has no second derivative: its backward node is not differentiable");
    return 0;
  }

 private:
  G g_;
  X x_;
  Pool2dParams p_;
  detail::Scratch<value_type, 4> out_;
};

template <PoolKind K, class X>
class Pool2dExpr;

/// dx of an average pooling: each output adjoint spread over its window, divided by the window's count,
/// shaped like x (the operand `like`, whose values are not read). Linear in g, so differentiable: its adjoint
/// is the average pooling of the adjoint.
template <PoolKind K, class G, class X>
class AvgPool2dBackwardExpr : public ExprBase<AvgPool2dBackwardExpr<K, G, X>>,
                              public BoundaryBase<typename std::remove_cvref_t<G>::value_type, 4> {
 public:
  using value_type = typename std::remove_cvref_t<G>::value_type;
  static constexpr int rank = 4;
  static constexpr const char* step_name =
      K == PoolKind::avg ? "avg_pool2d (backward)" : "adaptive_avg_pool2d (backward)";
  using self_differentiating_tag = void;

  AvgPool2dBackwardExpr(G g, X like, const Pool2dParams& p) : g_(g), like_(like), p_(p) {}
  auto children() const { return detail::refs(g_); }
  const X& like() const { return like_; }
  bool same_params(const AvgPool2dBackwardExpr& o) const { return p_ == o.p_; }
  Shape<4> shape() const { return like_.shape(); }

  /// @throws shape_error naming the pool when g does not have the pooled shape.
  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == 4);
    const Device dev = detail::boundary_device(*this, dst, "average pooling (backward)");
    const auto xs = like_.shape();
    const auto geom = detail::pool2d_geometry(xs, p_);
    const auto gs = g_.shape();
    if (!(gs == geom.output_shape()))
      throw shape_error(std::string(detail::pool_name(p_.kind)) + " (backward): the output adjoint has shape " +
                        to_string(gs) + ", expected " + to_string(geom.output_shape()));
    const auto gp = lower_expr(g_, gs);
    detail::pool_into(
        dst, xs, dev, [&](const Tensor<value_type, 4>& d) { return detail::plan_reads(gp, gs, d); }, out_,
        [&](value_type* out) {
          run_avg_pool2d_backward(Pool2dCall<value_type>{geom, out, dev}, gp);
        });
  }

  template <class H>
  auto backward(std::integral_constant<int, 0>, const H& h) const {
    return Pool2dExpr<K, H>(h, p_);
  }

 private:
  G g_;
  X like_;
  Pool2dParams p_;
  detail::Scratch<value_type, 4> out_;
};

/// A 2-D pooling of x of kind K (see max_pool2d, avg_pool2d, adaptive_avg_pool2d).
template <PoolKind K, class X>
class Pool2dExpr : public ExprBase<Pool2dExpr<K, X>>,
                   public BoundaryBase<typename std::remove_cvref_t<X>::value_type, 4> {
  using XE = std::remove_cvref_t<X>;

 public:
  using value_type = typename XE::value_type;
  static constexpr int rank = 4;
  static constexpr const char* step_name = K == PoolKind::max   ? "max_pool2d"
                                           : K == PoolKind::avg ? "avg_pool2d"
                                                                : "adaptive_avg_pool2d";
  static constexpr PoolKind kind = K;
  using self_differentiating_tag = void;
  static_assert(XE::rank == 4,
                "metagrad: 2-D pooling needs an input of rank 4 (N, C, H, W); add a batch axis with unsqueeze");
  static_assert(std::is_same_v<value_type, float> || std::is_same_v<value_type, double>,
                "metagrad: 2-D pooling is defined for float and double");

  /// @throws metagrad::error for invalid parameters (see the front-ends).
  Pool2dExpr(X x, Pool2dParams p) : x_(std::forward<X>(x)), p_((p.kind = K, p)) { detail::check_pool_params(p_); }

  const XE& operand() const { return x_; }
  const Pool2dParams& params() const { return p_; }
  auto children() const { return detail::refs(x_); }
  bool same_params(const Pool2dExpr& o) const { return p_ == o.p_; }

  /// @throws shape_error naming the pool and the input shape when the output would be empty.
  Pool2dGeometry geometry() const { return detail::pool2d_geometry(x_.shape(), p_); }
  Shape<4> shape() const { return geometry().output_shape(); }

  /// dst = the pooled x; dst is (re)allocated when its shape differs.
  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == 4);
    const Device dev = detail::boundary_device(*this, dst, detail::pool_name(K));
    const auto xs = x_.shape();
    const auto geom = detail::pool2d_geometry(xs, p_);
    const auto xp = lower_expr(x_, xs);
    detail::pool_into(
        dst, geom.output_shape(), dev, [&](const Tensor<value_type, 4>& d) { return detail::plan_reads(xp, xs, d); },
        out_,
        [&](value_type* out) {
          run_pool2d(Pool2dCall<value_type>{geom, out, dev}, xp);
        });
  }

  template <class G>
  auto backward(std::integral_constant<int, 0>, const G& g) const {
    auto xv = detail::operand_value<X>(x_);
    if constexpr (K == PoolKind::max)
      return MaxPool2dBackwardExpr<G, decltype(xv)>(g, xv, p_);
    else
      return AvgPool2dBackwardExpr<K, G, decltype(xv)>(g, xv, p_);
  }

 private:
  X x_;
  Pool2dParams p_;
  detail::Scratch<value_type, 4> out_;
};

/// 2-D max pooling of x [N, C, H, W], as PyTorch's max_pool2d: y[n, c, i, j] is the maximum of
/// x[n, c, i sh - ph + p dh, j sw - pw + q dw] over the kernel taps (p, q) that fall inside x (padding is never
/// the maximum), NaN if any of them is NaN. OH = floor((H + 2 ph - dh (kH - 1) - 1) / sh) + 1, or rounded up
/// with ceil_mode (dropping a last window that would start in the right padding). Differentiable in x: the
/// adjoint of each output goes to the first maximum of its window in row-major order.
/// @param stride defaults to the kernel size.
/// @throws metagrad::error (at once) for a kernel, stride or dilation below 1, or a padding that is negative or
///         more than half the kernel; shape_error naming max_pool2d and the input shape (when evaluated) if the
///         output would be empty.
template <expression X>
auto max_pool2d(X&& x, Size2 kernel, std::optional<Size2> stride = std::nullopt, Size2 padding = 0, Size2 dilation = 1,
                bool ceil_mode = false) {
  Pool2dParams p;
  p.kernel = kernel;
  p.stride = stride.value_or(kernel);
  p.padding = padding;
  p.dilation = dilation;
  p.ceil_mode = ceil_mode;
  return Pool2dExpr<PoolKind::max, closure_t<X&&>>(std::forward<X>(x), p);
}

/// 2-D average pooling of x [N, C, H, W], as PyTorch's avg_pool2d: y[n, c, i, j] is the sum of x over the
/// window rows [i sh - ph, i sh - ph + kH) and columns likewise, clipped to x, divided by the window's size
/// clipped to the padded input (count_include_pad) or by the number of elements of x it covers. Output
/// extents as max_pool2d's with dilation 1. Differentiable in x (and twice: the gradient is linear).
/// @param stride defaults to the kernel size.
/// @throws as max_pool2d, naming avg_pool2d.
template <expression X>
auto avg_pool2d(X&& x, Size2 kernel, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                bool ceil_mode = false, bool count_include_pad = true) {
  Pool2dParams p;
  p.kernel = kernel;
  p.stride = stride.value_or(kernel);
  p.padding = padding;
  p.ceil_mode = ceil_mode;
  p.count_include_pad = count_include_pad;
  return Pool2dExpr<PoolKind::avg, closure_t<X&&>>(std::forward<X>(x), p);
}

/// 2-D adaptive average pooling of x [N, C, H, W] to [N, C, OH, OW], as PyTorch's adaptive_avg_pool2d: output
/// row i averages input rows [floor(i H / OH), ceil((i + 1) H / OH)), columns likewise.
/// @throws metagrad::error (at once) for an output extent below 1; shape_error naming adaptive_avg_pool2d and
///         the input shape (when evaluated) if H or W is 0.
template <expression X>
auto adaptive_avg_pool2d(X&& x, Size2 output_size) {
  Pool2dParams p;
  p.output = output_size;
  return Pool2dExpr<PoolKind::adaptive_avg, closure_t<X&&>>(std::forward<X>(x), p);
}

METAGRAD_NAMESPACE_END
