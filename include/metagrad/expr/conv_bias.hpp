// metagrad/expr/conv_bias.hpp — 2-D convolution, bias and activation as ONE boundary node:
// y = act(conv2d(x, w) + b[c]), written by a single backend call (cuDNN's fused
// cudnnConvolutionBiasActivationForward on CUDA where it applies, oneDNN's convolution with its bias argument
// and a ReLU post-op, or im2col + GEMM with the bias and activation in the loop that writes y), with the
// cuDNN convolution followed by a bias/activation pass as the unfused fallback. conv2d(x, w, b, o) builds it
// with the identity activation and relu() of that node (nn::Conv2d followed by nn::relu() included) gives
// the same node with ReLU, so a layer stack gets the fusion without asking for it. Its derivative lives here
// too: the output adjoint masked by the activation is evaluated once (reading y, not recomputing it) and
// feeds the bias gradient (a sum over N, H, W) and conv.hpp's backward-data and backward-weight nodes.
// Include <metagrad/expr.hpp> instead.
#pragma once

#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../core/device.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "../ops/activation.hpp"
#include "conv.hpp"
#include "functions.hpp"
#include "leaf.hpp"
#include "node.hpp"
#include "plan.hpp"
#include "reduce.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace detail {

inline const char* activation_name(Activation a) { return a == Activation::relu ? "relu" : "identity"; }

/// The geometry of conv2d(x, w, b, o), with b checked against the output channels.
/// @throws shape_error naming `op` and the three shapes when b does not hold one value per output channel,
///         and conv2d_geometry's errors.
inline Conv2dGeometry conv2d_bias_geometry(const Shape<4>& xs, const Shape<4>& ws, const Shape<1>& bs,
                                           const Conv2dOptions& o, const char* op) {
  if (bs[0] != ws[0])
    throw shape_error(std::string(op) + ": input " + to_string(xs) + ", weight " + to_string(ws) + " and bias " +
                      to_string(bs) + ": the bias has " + std::to_string(bs[0]) +
                      " elements, expected one per output channel (" + std::to_string(ws[0]) + ")");
  return conv2d_geometry(xs, ws, o, op);
}

}  // namespace detail

/// y = act(conv2d(x, w, options) + b[c]) in one boundary node: see conv2d(x, w, b, options).
/// `Act` is part of the type (so relu() can pick the fused node at compile time and a Program merges only
/// equal activations); the operands are stored with closure semantics like every node.
template <class X, class W, class B, Activation Act = Activation::identity>
class Conv2dBiasExpr : public ExprBase<Conv2dBiasExpr<X, W, B, Act>>,
                       public BoundaryBase<typename std::remove_cvref_t<X>::value_type, 4> {
  using XE = std::remove_cvref_t<X>;
  using WE = std::remove_cvref_t<W>;
  using BE = std::remove_cvref_t<B>;

 public:
  using value_type = typename XE::value_type;
  static constexpr int rank = 4;
  static constexpr const char* step_name = Act == Activation::relu ? "conv2d + bias + relu" : "conv2d + bias";
  static constexpr Activation activation = Act;
  using self_differentiating_tag = void;
  static_assert(XE::rank == 4,
                "metagrad: conv2d needs an input of rank 4 (N, C, H, W); add a batch axis with unsqueeze");
  static_assert(WE::rank == 4, "metagrad: conv2d needs a weight of rank 4 (C_out, C_in / groups, kH, kW)");
  static_assert(BE::rank == 1, "metagrad: conv2d needs a bias of rank 1 (C_out); reshape it to [C_out]");
  static_assert(std::is_same_v<value_type, typename WE::value_type> &&
                    std::is_same_v<value_type, typename BE::value_type>,
                "metagrad: conv2d needs input, weight and bias of the same dtype; convert with cast<T>()");
  static_assert(std::is_same_v<value_type, float> || std::is_same_v<value_type, double>,
                "metagrad: conv2d is defined for float and double");

  /// @throws metagrad::error for a stride or dilation below 1, a negative padding or groups below 1.
  Conv2dBiasExpr(X x, W w, B b, Conv2dOptions o)
      : x_(std::forward<X>(x)), w_(std::forward<W>(w)), b_(std::forward<B>(b)), opts_(o) {
    detail::check_conv_options(o, "conv2d");
  }

  const XE& input() const { return x_; }
  const WE& weight() const { return w_; }
  const BE& bias() const { return b_; }
  const Conv2dOptions& options() const { return opts_; }
  auto children() const { return detail::refs(x_, w_, b_); }
  bool same_params(const Conv2dBiasExpr& o) const { return detail::bits_equal(opts_, o.opts_); }

  /// The same convolution and bias followed by activation A (the operands copied, or moved from an rvalue).
  template <Activation A>
  Conv2dBiasExpr<X, W, B, A> with_activation() const& {
    return Conv2dBiasExpr<X, W, B, A>(x_, w_, b_, opts_);
  }
  template <Activation A>
  Conv2dBiasExpr<X, W, B, A> with_activation() && {
    return Conv2dBiasExpr<X, W, B, A>(std::forward<X>(x_), std::forward<W>(w_), std::forward<B>(b_), opts_);
  }

  /// @throws shape_error naming conv2d and the shapes (see conv2d(x, w, b, options)).
  Conv2dGeometry geometry() const {
    return detail::conv2d_bias_geometry(x_.shape(), w_.shape(), b_.shape(), opts_, "conv2d with bias");
  }
  Shape<4> shape() const { return geometry().output_shape(); }

  /// dst = act(conv2d(x, w) + b); dst is (re)allocated when its shape differs.
  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == 4);
    const Device dev = detail::boundary_device(*this, dst, "conv2d with bias");
    const auto geom = geometry();
    const Shape<4> os = geom.output_shape();
    const Shape<1> bs{{geom.c_out}};
    const value_type* bp = detail::contiguous_values<value_type>(b_, bs, bbuf_, dev);
    if (geom.c_in == 0 && os.numel() > 0) return fill_bias_only(dst, os, bp, dev);
    const value_type* xp = detail::contiguous_values<value_type>(x_, geom.input_shape(), xbuf_, dev);
    const value_type* wp = detail::contiguous_values<value_type>(w_, geom.weight_shape(), wbuf_, dev);
    const detail::Spans<value_type, 3> in{
        {{xp, geom.input_shape().numel()}, {wp, geom.weight_shape().numel()}, {bp, geom.c_out}}};
    Conv2dCall<value_type> call{ConvPass::forward, geom, xp, wp, nullptr, nullptr, dev};
    call.bias = bp;
    call.activation = Act;
    detail::run_conv_into(dst, os, call, in, out_);
  }

  /// dx = conv2d_backward_data(gz, w), shaped like x (gz: the adjoint of conv2d(x, w) + b, see grad_of_sum).
  template <class G>
  auto backward(std::integral_constant<int, 0>, const G& g) const {
    auto gz = grad_of_sum(g);
    auto wv = detail::operand_value<W>(w_);
    auto xv = detail::operand_value<X>(x_);
    return Conv2dBackwardDataExpr<decltype(gz), decltype(wv), decltype(xv)>(gz, wv, xv, opts_);
  }
  /// dw = conv2d_backward_weight(gz, x), shaped like w.
  template <class G>
  auto backward(std::integral_constant<int, 1>, const G& g) const {
    auto gz = grad_of_sum(g);
    auto xv = detail::operand_value<X>(x_);
    auto wv = detail::operand_value<W>(w_);
    return Conv2dBackwardWeightExpr<decltype(gz), decltype(xv), decltype(wv)>(gz, xv, wv, opts_);
  }
  /// db = gz summed over the batch and both spatial axes, shaped like b.
  template <class G>
  auto backward(std::integral_constant<int, 2>, const G& g) const {
    return sum(grad_of_sum(g), {0, 2, 3});
  }

 private:
  /// The adjoint of z = conv2d(x, w) + b given the adjoint g of y = act(z), as one boundary node: all three
  /// gradients read it, and each builds the same type, so a Program evaluates it once into one buffer.
  /// ReLU's mask reads y itself (y > 0 exactly where z > 0), a copy of this node that a Program merges with
  /// the forward one, so the backward pass reads the forward result instead of recomputing the convolution.
  /// The mask is where(y > 0, g, 0), the rule of the unfused relu, so both give the same numbers.
  template <class G>
  auto grad_of_sum(const G& g) const {
    if constexpr (Act == Activation::relu) {
      auto masked = where(*this > 0, g, 0);
      return BufferExpr<decltype(masked)>(std::move(masked));
    } else {
      return detail::buffered(g);
    }
  }

  /// act(b[c]) everywhere: the convolution sums over no input channel (a weight of shape [C_out, 0, kH, kW]).
  /// One fused pass over a broadcast read of b, never a backend call with an empty extent.
  template <int RD>
  void fill_bias_only(Tensor<value_type, RD>& dst, const Shape<4>& os, const value_type* bp, Device dev) const {
    detail::prepare_destination(dst, os, dev);
    const Shape<4> b4{{1, os[1], 1, 1}};
    const auto leaf = detail::lower_leaf(bp, b4, contiguous_strides(b4), os);
    const bool direct = dst.is_contiguous() && !detail::ranges_overlap<value_type>(dst.data(), os.numel(), bp, os[1]);
    Tensor<value_type, 4>& t = direct ? dst : out_.sized(os, dev);
    if constexpr (Act == Activation::relu)
      run_fill(dev, t.data(), t.strides(), os, UnaryPlan<ops::Relu, decltype(leaf)>{ops::Relu{}, leaf});
    else
      run_fill(dev, t.data(), t.strides(), os, leaf);
    if (!direct) dst.assign(t);
  }

  X x_;
  W w_;
  B b_;
  Conv2dOptions opts_;
  detail::Scratch<value_type, 4> xbuf_, wbuf_, out_;
  detail::Scratch<value_type, 1> bbuf_;
};

namespace detail {
template <class E>
inline constexpr bool is_conv_bias_identity_v = false;
template <class X, class W, class B>
inline constexpr bool is_conv_bias_identity_v<Conv2dBiasExpr<X, W, B, Activation::identity>> = true;
}  // namespace detail

/// 2-D convolution with a bias per output channel and an activation, as one boundary node:
/// y[n, o, i, j] = act(conv2d(x, w, options)[n, o, i, j] + b[o]) (PyTorch's conv2d with bias, then the
/// activation). `Act` is a template argument: `conv2d<Activation::relu>(x, w, b, {.padding = 2})`, or
/// `relu(conv2d(x, w, b, o))`, which builds the same node. Differentiable in x, w and b.
/// On CUDA it is cuDNN's fused convolution-bias-activation call where cuDNN supports it and the cuDNN
/// convolution plus a bias/activation pass otherwise; on the CPU, oneDNN with a bias and a post-op or
/// im2col + GEMM with the bias and activation in the loop that writes y.
/// @pre x and w have rank 4, b rank 1, all of one dtype, float or double (compile-time checks).
/// @throws metagrad::error for a stride or dilation below 1, a negative padding or groups below 1 (at once);
///         shape_error naming conv2d and the shapes, when evaluated, for conv2d(x, w)'s shape errors and when b
///         does not have C_out elements.
template <Activation Act = Activation::identity, expression X, expression W, expression B>
auto conv2d(X&& x, W&& w, B&& b, const Conv2dOptions& options) {
  return Conv2dBiasExpr<closure_t<X&&>, closure_t<W&&>, closure_t<B&&>, Act>(std::forward<X>(x), std::forward<W>(w),
                                                                             std::forward<B>(b), options);
}
/// conv2d with a bias and stride 1, no padding, dilation 1, one group (a static default, as conv2d(x, w)).
template <Activation Act = Activation::identity, expression X, expression W, expression B>
auto conv2d(X&& x, W&& w, B&& b) {
  static constexpr Conv2dOptions defaults{};
  return conv2d<Act>(std::forward<X>(x), std::forward<W>(w), std::forward<B>(b), defaults);
}

/// relu of a convolution with bias and no activation yet: the same node with ReLU in its epilogue. It is more
/// constrained than the elementwise relu (expr/functions.hpp), so overload resolution picks it for every
/// value category, also through nn::relu(); relu of a node that already has an activation is the ordinary
/// elementwise relu.
template <expression E>
requires detail::is_conv_bias_identity_v<std::remove_cvref_t<E>>
auto relu(E&& e) { return std::forward<E>(e).template with_activation<Activation::relu>(); }

METAGRAD_NAMESPACE_END
