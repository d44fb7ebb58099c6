// metagrad/expr/conv.hpp — 2-D convolution (PyTorch's conv2d: cross-correlation of NCHW input with
// [C_out, C_in / groups, kH, kW] weights, with stride, zero padding, dilation and groups) as a boundary node,
// and the two boundary nodes its gradient is made of: backward-data (the adjoint of the input, a transposed
// convolution) and backward-weight (the adjoint of the weights, a correlation of input and output adjoint).
// Operands are handed to the backend as contiguous NCHW buffers: a contiguous tensor in place, anything
// else (a computed expression, a view) evaluated once into a buffer the node keeps. The backend answers
// run_conv2d(Conv2dCall), found by argument-dependent lookup (oneDNN or im2col + GEMM on the CPU, cuDNN on
// CUDA; backend/dispatch.hpp picks by the call's device), so this layer names no backend. Buffers live on
// the operands' device. The node here has no bias; conv2d(x, w, b) and relu of it (expr/conv_bias.hpp) are
// one node with the bias and activation in the convolution's epilogue. Include <metagrad/expr.hpp> instead.
#pragma once

#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../core/device.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/storage.hpp"
#include "../core/tensor.hpp"
#include "leaf.hpp"
#include "node.hpp"
#include "plan.hpp"

METAGRAD_NAMESPACE_BEGIN

/// One extent per spatial axis (height, width); a single number sets both: `Size2 s = 2;`, `Size2 s{2, 1};`.
struct Size2 {
  index_t h = 0, w = 0;
  constexpr Size2() = default;
  constexpr Size2(index_t both) : h(both), w(both) {}  // NOLINT(google-explicit-constructor): `.stride = 2`
  constexpr Size2(index_t height, index_t width) : h(height), w(width) {}
  constexpr bool operator==(const Size2&) const = default;
};

/// Options of conv2d, as PyTorch's: `conv2d(x, w, {.stride = 2, .padding = {2, 1}})`. `padding` is implicit
/// zero padding on both sides of each axis; `dilation` spaces the kernel taps; `groups` splits the channels
/// into independent convolutions (groups == C_in == C_out is a depthwise convolution).
struct Conv2dOptions {
  // Two-argument initialisers: with `= 1` (the converting constructor) GCC 12's SLP vectoriser at
  // -O2 -march=native (AVX-512) built Conv2dOptions{} with padding.h = 1.
  Size2 stride{1, 1};
  Size2 padding{0, 0};
  Size2 dilation{1, 1};
  index_t groups = 1;
};

/// Everything a backend needs to know about one convolution, in elements (all run-time values).
struct Conv2dGeometry {
  index_t n = 0, c_in = 0, h = 0, w = 0;  ///< input [n, c_in, h, w]
  index_t c_out = 0, kh = 0, kw = 0;      ///< weight [c_out, c_in / groups, kh, kw]
  index_t oh = 0, ow = 0;                 ///< output [n, c_out, oh, ow]
  Size2 stride = 1, padding = 0, dilation = 1;
  index_t groups = 1;

  index_t c_in_per_group() const { return c_in / groups; }
  index_t c_out_per_group() const { return c_out / groups; }
  Shape<4> input_shape() const { return Shape<4>{n, c_in, h, w}; }
  Shape<4> weight_shape() const { return Shape<4>{c_out, c_in / groups, kh, kw}; }
  Shape<4> output_shape() const { return Shape<4>{n, c_out, oh, ow}; }
  bool operator==(const Conv2dGeometry&) const = default;
};

/// Which of the three convolution computations a Conv2dCall asks for.
enum class ConvPass { forward, backward_data, backward_weight };

/// The activation a fused convolution applies after its bias (expr/conv_bias.hpp): y = act(conv + b).
/// Only these two, because they are what cuDNN's fused cudnnConvolutionBiasActivationForward and oneDNN's
/// eltwise post-op both run in the convolution's epilogue.
enum class Activation : unsigned char { identity, relu };

/// One convolution for a backend, answered by run_conv2d(call) (found by argument-dependent lookup). Every
/// pointer is to a contiguous NCHW (or [c_out, c_in / groups, kh, kw]) buffer; `out` overlaps none of the
/// inputs and is overwritten (never accumulated into); every buffer is memory of `device` (the CPU, or a
/// CUDA device, whose answer is cuDNN's in a file compiled by nvcc).
///   forward:          out = y  [n, c_out, oh, ow]         from x, w (then + bias[c], then activation)
///   backward_data:    out = dx [n, c_in, h, w]            from dy, w
///   backward_weight:  out = dw [c_out, c_in / g, kh, kw]  from dy, x
/// `bias` ([c_out], or null for none) and `activation` belong to the forward pass only; a backend rejects
/// them on the backward passes rather than ignore them.
template <class T>
struct Conv2dCall {
  ConvPass pass;
  Conv2dGeometry geom;
  const T* x;
  const T* w;
  const T* dy;
  T* out;
  Device device = Device::cpu();
  const T* bias = nullptr;
  Activation activation = Activation::identity;
};

namespace detail {

/// Output extent of one axis, as PyTorch: floor((in + 2 pad - dil (k - 1) - 1) / stride) + 1, or 0 when the
/// padded input is smaller than the dilated kernel.
inline index_t conv_out_extent(index_t in, index_t k, index_t stride, index_t pad, index_t dil) {
  const index_t span = in + 2 * pad - dil * (k - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

inline std::string size2_text(const Size2& s) { return "(" + std::to_string(s.h) + ", " + std::to_string(s.w) + ")"; }

/// @throws metagrad::error naming `op` for a stride or dilation below 1, a negative padding or groups below 1.
inline void check_conv_options(const Conv2dOptions& o, const char* op) {
  if (o.stride.h < 1 || o.stride.w < 1)
    throw error(std::string(op) + ": stride " + size2_text(o.stride) + " must be >= 1");
  if (o.dilation.h < 1 || o.dilation.w < 1)
    throw error(std::string(op) + ": dilation " + size2_text(o.dilation) + " must be >= 1");
  if (o.padding.h < 0 || o.padding.w < 0)
    throw error(std::string(op) + ": padding " + size2_text(o.padding) + " must be >= 0");
  if (o.groups < 1) throw error(std::string(op) + ": groups = " + std::to_string(o.groups) + " must be >= 1");
}

/// The geometry of conv2d(x, w, o) from the operands' shapes.
/// @throws shape_error naming `op` and both shapes when the channels do not match the weight and groups, the
///         kernel is empty, or the output would be empty.
inline Conv2dGeometry conv2d_geometry(const Shape<4>& xs, const Shape<4>& ws, const Conv2dOptions& o, const char* op) {
  auto shapes = [&] { return "input " + to_string(xs) + " and weight " + to_string(ws); };
  if (ws[0] % o.groups != 0)
    throw shape_error(std::string(op) + ": " + shapes() + ": the " + std::to_string(ws[0]) +
                      " output channels are not divisible by groups = " + std::to_string(o.groups));
  if (xs[1] != ws[1] * o.groups)
    throw shape_error(std::string(op) + ": " + shapes() + ": the input has " + std::to_string(xs[1]) +
                      " channels, the weight expects " + std::to_string(ws[1]) + " x groups (" +
                      std::to_string(o.groups) + ") = " + std::to_string(ws[1] * o.groups));
  if (ws[2] < 1 || ws[3] < 1) throw shape_error(std::string(op) + ": " + shapes() + ": the kernel is empty");
  Conv2dGeometry g;
  g.n = xs[0];
  g.c_in = xs[1];
  g.h = xs[2];
  g.w = xs[3];
  g.c_out = ws[0];
  g.kh = ws[2];
  g.kw = ws[3];
  g.stride = o.stride;
  g.padding = o.padding;
  g.dilation = o.dilation;
  g.groups = o.groups;
  g.oh = conv_out_extent(g.h, g.kh, o.stride.h, o.padding.h, o.dilation.h);
  g.ow = conv_out_extent(g.w, g.kw, o.stride.w, o.padding.w, o.dilation.w);
  if (g.oh < 1 || g.ow < 1)
    throw shape_error(std::string(op) + ": " + shapes() + " with padding " + size2_text(o.padding) + ", dilation " +
                      size2_text(o.dilation) + " and stride " + size2_text(o.stride) +
                      ": the padded input is smaller than the dilated kernel, the output would be empty");
  return g;
}

/// A buffer a node keeps between evaluations, on the device of the node's operands. A copy of the node
/// starts without one, so copies never write into each other's memory.
template <class T, int R>
struct Scratch {
  Scratch() = default;
  Scratch(const Scratch&) {}
  Scratch& operator=(const Scratch&) { return *this; }
  Tensor<T, R>& sized(const Shape<R>& s, Device device = Device::cpu()) const {
    auto& t = t_.get();
    if (!t.defined() || !(t.shape() == s) || t.device() != device) t.allocate(s, device);
    return t;
  }
  Lazy<Tensor<T, R>> t_;
};

/// The values of expression e (of shape s, read on `device`) as a contiguous row-major buffer there: a
/// contiguous leaf's own memory, else `buf` filled by one fused pass (run_fill, the backend's hook).
template <class T, class E, int R>
const T* contiguous_values(const E& e, const Shape<R>& s, const Scratch<T, R>& buf, Device device) {
  const auto p = lower_expr(e, s);
  if constexpr (is_leaf_plan_v<std::remove_cvref_t<decltype(p)>>) {
    if (p.is_flat()) return p.ptr;
  }
  auto& t = buf.sized(s, device);
  if (s.numel() > 0) run_fill(device, t.data(), t.strides(), s, p);
  return t.data();
}

/// The device a boundary node computes on: its operands' (the CPU when it reads no tensor).
/// @throws device_error naming `op` when the operands are on different devices, or when dst already holds
///         memory of another device (a result is never moved between devices behind the caller's back).
template <class Node, class T, int R>
Device boundary_device(const Node& node, const Tensor<T, R>& dst, const char* op) {
  const Device dev = operands_device(node, op).value_or(Device::cpu());
  if (dst.defined() && dst.device() != dev)
    throw device_error(std::string(op) + ": the operands are on " + dev.str() + " but the destination is on " +
                       dst.device().str());
  return dev;
}

/// Whether [a, a + na) and [b, b + nb) share memory.
template <class T>
bool ranges_overlap(const T* a, index_t na, const T* b, index_t nb) {
  return na > 0 && nb > 0 && a < b + nb && b < a + na;
}

/// Runs `call` (on call.device) with call.out pointing into dst (allocated there to `os` when its shape
/// differs) when dst is contiguous and overlaps none of the inputs, else into `tmp` and copies.
template <class T, class Inputs>
void run_conv_into(Tensor<T, 4>& dst, const Shape<4>& os, Conv2dCall<T> call, const Inputs& inputs,
                   const Scratch<T, 4>& tmp) {
  if (!dst.defined() || !(dst.shape() == os)) dst.allocate(os, call.device);
  if (os.numel() == 0) return;
  bool direct = dst.is_contiguous();
  for (const auto& [p, n] : inputs) direct = direct && !ranges_overlap<T>(dst.data(), os.numel(), p, n);
  call.out = direct ? dst.data() : tmp.sized(os, call.device).data();
  const Conv2dGeometry& g = call.geom;
  if (g.n == 0 || g.c_in == 0 || g.c_out == 0) {
    // Nothing to sum over, or nothing to sum: the result is zero (no backend call with empty extents).
    if (call.device.is_cpu()) {
      for (index_t i = 0; i < os.numel(); ++i) call.out[i] = T(0);
    } else {
      device_hooks_for(call.device, "conv2d")
          .fill_zero(call.out, static_cast<std::size_t>(os.numel()) * sizeof(T), call.device);
    }
  } else {
    run_conv2d(call);
  }
  if (!direct) dst.assign(tmp.t_.get());
}

template <class T, std::size_t N>
struct Spans {
  struct Span {
    const T* p;
    index_t n;
  };
  Span s[N];
  const Span* begin() const { return s; }
  const Span* end() const { return s + N; }
};

/// Runs f(out) with out = dst's memory (dst allocated on `device` to `shape` unless it has both) when dst is
/// contiguous and overlaps none of `inputs`, else a temporary on `device` that is then copied into dst.
template <class T, int R, std::size_t N, class F>
void run_into_destination(Tensor<T, R>& dst, const Shape<R>& shape, Device device, const Spans<T, N>& inputs,
                          const Scratch<T, R>& tmp, F&& f) {
  prepare_destination(dst, shape, device);
  if (shape.numel() == 0) return;
  bool direct = dst.is_contiguous();
  for (const auto& [p, n] : inputs) direct = direct && !ranges_overlap<T>(dst.data(), shape.numel(), p, n);
  f(direct ? dst.data() : tmp.sized(shape, device).data());
  if (!direct) dst.assign(tmp.t_.get());
}

}  // namespace detail

/// The value of expression g in a buffer of its own: the output adjoint of a convolution, read by both its
/// backward-data and its backward-weight node, is evaluated once (a Program merges the two equal nodes).
template <class G>
class BufferExpr : public ExprBase<BufferExpr<G>>,
                   public BoundaryBase<typename std::remove_cvref_t<G>::value_type, std::remove_cvref_t<G>::rank> {
  using GE = std::remove_cvref_t<G>;

 public:
  using value_type = typename GE::value_type;
  static constexpr int rank = GE::rank;
  static constexpr const char* step_name = "buffer";
  using self_differentiating_tag = void;

  explicit BufferExpr(G g) : g_(std::forward<G>(g)) {}
  const GE& operand() const { return g_; }
  auto children() const { return detail::refs(g_); }
  Shape<rank> shape() const { return g_.shape(); }

  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == rank);
    const auto s = g_.shape();
    const Device dev = detail::operands_device(*this, "buffer").value_or(Device::cpu());
    detail::prepare_destination(dst, s, dev);
    if (s.numel() == 0) return;
    const auto p = lower_expr(g_, s);
    bool alias = false;
    const auto r = offset_range(s, dst.strides());
    const char* lo = reinterpret_cast<const char*>(dst.data() + r.lo);
    const char* hi = reinterpret_cast<const char*>(dst.data() + r.hi + 1);
    p.visit_leaves([&](const void*, const void* l, const void* h, const auto&,
                       bool) { alias |= !(static_cast<const char*>(h) <= lo || static_cast<const char*>(l) >= hi); },
                   false, s);
    if (alias) {
      Tensor<value_type, rank> t;
      t.allocate(s, dev);
      run_fill(dev, t.data(), t.strides(), s, p);
      dst.assign(t);
    } else {
      run_fill(dev, dst.data(), dst.strides(), s, p);
    }
  }

  template <class H>
  auto backward(std::integral_constant<int, 0>, const H& h) const {
    return h;
  }

 private:
  G g_;
};

namespace detail {
/// g as an operand that is already in memory: leaves and boundary nodes as they are, anything else in a
/// BufferExpr (so is a sum_to, which is fused into each of its readers when it is not a real reduction).
template <class G>
auto buffered(const G& g) {
  if constexpr (is_tensor_v<G> || (boundary_expression<G> && !requires { g.materialised(); }) ||
                requires { g.identity(); })
    return g;
  else
    return BufferExpr<G>(g);
}

template <class Node>
struct NotDifferentiable : std::false_type {};
}  // namespace detail

/// dx of y = conv2d(x, w): the transposed convolution of the output adjoint g with w, shaped like x.
/// Not differentiable itself (grad through it is a compile error).
template <class G, class W, class X>
class Conv2dBackwardDataExpr : public ExprBase<Conv2dBackwardDataExpr<G, W, X>>,
                               public BoundaryBase<typename W::value_type, 4> {
 public:
  using value_type = typename W::value_type;
  static constexpr int rank = 4;
  static constexpr const char* step_name = "conv2d (backward data)";
  using self_differentiating_tag = void;

  Conv2dBackwardDataExpr(G g, W w, X like, const Conv2dOptions& o) : g_(g), w_(w), like_(like), opts_(o) {}
  auto children() const { return detail::refs(g_, w_); }
  const X& like() const { return like_; }
  bool same_params(const Conv2dBackwardDataExpr& o) const { return detail::bits_equal(opts_, o.opts_); }
  Shape<4> shape() const { return like_.shape(); }

  /// @throws shape_error naming conv2d when g does not have the forward output's shape.
  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == 4);
    const Device dev = detail::boundary_device(*this, dst, "conv2d (backward data)");
    const auto geom = detail::conv2d_geometry(like_.shape(), w_.shape(), opts_, "conv2d (backward data)");
    const auto gs = g_.shape();
    if (!(gs == geom.output_shape()))
      throw shape_error("conv2d (backward data): the output adjoint has shape " + to_string(gs) + ", expected " +
                        to_string(geom.output_shape()));
    const value_type* gp = detail::contiguous_values<value_type>(g_, gs, gbuf_, dev);
    const value_type* wp = detail::contiguous_values<value_type>(w_, geom.weight_shape(), wbuf_, dev);
    const detail::Spans<value_type, 2> in{{{gp, gs.numel()}, {wp, geom.weight_shape().numel()}}};
    detail::run_conv_into(dst, geom.input_shape(),
                          Conv2dCall<value_type>{ConvPass::backward_data, geom, nullptr, wp, gp, nullptr, dev}, in,
                          out_);
  }

  template <int I, class H>
  auto backward(std::integral_constant<int, I>, const H&) const {
    static_assert(detail::NotDifferentiable<H>::value,
                  "metagrad: conv2d has no second derivative: its backward-data node is not differentiable");
    return 0;
  }

 private:
  G g_;
  W w_;
  X like_;
  Conv2dOptions opts_;
  detail::Scratch<value_type, 4> gbuf_, wbuf_, out_;
};

/// dw of y = conv2d(x, w): the correlation of x with the output adjoint g, summed over the batch, shaped
/// like w. Not differentiable itself (grad through it is a compile error).
template <class G, class X, class W>
class Conv2dBackwardWeightExpr : public ExprBase<Conv2dBackwardWeightExpr<G, X, W>>,
                                 public BoundaryBase<typename X::value_type, 4> {
 public:
  using value_type = typename X::value_type;
  static constexpr int rank = 4;
  static constexpr const char* step_name = "conv2d (backward weight)";
  using self_differentiating_tag = void;

  Conv2dBackwardWeightExpr(G g, X x, W like, const Conv2dOptions& o) : g_(g), x_(x), like_(like), opts_(o) {}
  auto children() const { return detail::refs(g_, x_); }
  const W& like() const { return like_; }
  bool same_params(const Conv2dBackwardWeightExpr& o) const { return detail::bits_equal(opts_, o.opts_); }
  Shape<4> shape() const { return like_.shape(); }

  /// @throws shape_error naming conv2d when g does not have the forward output's shape.
  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == 4);
    const Device dev = detail::boundary_device(*this, dst, "conv2d (backward weight)");
    const auto xs = x_.shape();
    const auto geom = detail::conv2d_geometry(xs, like_.shape(), opts_, "conv2d (backward weight)");
    const auto gs = g_.shape();
    if (!(gs == geom.output_shape()))
      throw shape_error("conv2d (backward weight): the output adjoint has shape " + to_string(gs) + ", expected " +
                        to_string(geom.output_shape()));
    const value_type* gp = detail::contiguous_values<value_type>(g_, gs, gbuf_, dev);
    const value_type* xp = detail::contiguous_values<value_type>(x_, xs, xbuf_, dev);
    const detail::Spans<value_type, 2> in{{{gp, gs.numel()}, {xp, xs.numel()}}};
    detail::run_conv_into(dst, geom.weight_shape(),
                          Conv2dCall<value_type>{ConvPass::backward_weight, geom, xp, nullptr, gp, nullptr, dev}, in,
                          out_);
  }

  template <int I, class H>
  auto backward(std::integral_constant<int, I>, const H&) const {
    static_assert(detail::NotDifferentiable<H>::value,
                  "metagrad: conv2d has no second derivative: its backward-weight node is not differentiable");
    return 0;
  }

 private:
  G g_;
  X x_;
  W like_;
  Conv2dOptions opts_;
  detail::Scratch<value_type, 4> gbuf_, xbuf_, out_;
};

/// y = conv2d(x, w, options): see conv2d().
template <class X, class W>
class Conv2dExpr : public ExprBase<Conv2dExpr<X, W>>,
                   public BoundaryBase<typename std::remove_cvref_t<X>::value_type, 4> {
  using XE = std::remove_cvref_t<X>;
  using WE = std::remove_cvref_t<W>;

 public:
  using value_type = typename XE::value_type;
  static constexpr int rank = 4;
  static constexpr const char* step_name = "conv2d";
  using self_differentiating_tag = void;
  static_assert(XE::rank == 4,
                "metagrad: conv2d needs an input of rank 4 (N, C, H, W); add a batch axis with unsqueeze");
  static_assert(WE::rank == 4, "metagrad: conv2d needs a weight of rank 4 (C_out, C_in / groups, kH, kW)");
  static_assert(std::is_same_v<value_type, typename WE::value_type>,
                "metagrad: conv2d needs input and weight of the same dtype; convert one with cast<T>()");
  static_assert(std::is_same_v<value_type, float> || std::is_same_v<value_type, double>,
                "metagrad: conv2d is defined for float and double");

  /// @throws metagrad::error for a stride or dilation below 1, a negative padding or groups below 1.
  Conv2dExpr(X x, W w, Conv2dOptions o) : x_(std::forward<X>(x)), w_(std::forward<W>(w)), opts_(o) {
    detail::check_conv_options(o, "conv2d");
  }

  const XE& input() const { return x_; }
  const WE& weight() const { return w_; }
  const Conv2dOptions& options() const { return opts_; }
  auto children() const { return detail::refs(x_, w_); }
  bool same_params(const Conv2dExpr& o) const { return detail::bits_equal(opts_, o.opts_); }

  /// @throws shape_error naming conv2d and both shapes (see conv2d()).
  Conv2dGeometry geometry() const { return detail::conv2d_geometry(x_.shape(), w_.shape(), opts_, "conv2d"); }
  Shape<4> shape() const { return geometry().output_shape(); }

  /// dst = conv2d(x, w); dst is (re)allocated when its shape differs.
  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == 4);
    const Device dev = detail::boundary_device(*this, dst, "conv2d");
    const auto geom = geometry();
    const value_type* xp = detail::contiguous_values<value_type>(x_, geom.input_shape(), xbuf_, dev);
    const value_type* wp = detail::contiguous_values<value_type>(w_, geom.weight_shape(), wbuf_, dev);
    const detail::Spans<value_type, 2> in{{{xp, geom.input_shape().numel()}, {wp, geom.weight_shape().numel()}}};
    detail::run_conv_into(dst, geom.output_shape(),
                          Conv2dCall<value_type>{ConvPass::forward, geom, xp, wp, nullptr, nullptr, dev}, in, out_);
  }

  /// dx = conv2d_backward_data(g, w), shaped like x.
  template <class G>
  auto backward(std::integral_constant<int, 0>, const G& g) const {
    auto gb = detail::buffered(g);
    auto wv = detail::operand_value<W>(w_);
    auto xv = detail::operand_value<X>(x_);
    return Conv2dBackwardDataExpr<decltype(gb), decltype(wv), decltype(xv)>(gb, wv, xv, opts_);
  }
  /// dw = conv2d_backward_weight(g, x), shaped like w.
  template <class G>
  auto backward(std::integral_constant<int, 1>, const G& g) const {
    auto gb = detail::buffered(g);
    auto xv = detail::operand_value<X>(x_);
    auto wv = detail::operand_value<W>(w_);
    return Conv2dBackwardWeightExpr<decltype(gb), decltype(xv), decltype(wv)>(gb, xv, wv, opts_);
  }

 private:
  X x_;
  W w_;
  Conv2dOptions opts_;
  detail::Scratch<value_type, 4> xbuf_, wbuf_, out_;
};

/// 2-D convolution of x [N, C_in, H, W] with w [C_out, C_in / groups, kH, kW], as PyTorch's conv2d without
/// bias: y[n, o, i, j] = sum over c, p, q of x[n, g C_in/groups + c, i sh - ph + p dh, j sw - pw + q dw]
/// w[o, c, p, q] (zero outside x), where g = o / (C_out / groups); y has shape [N, C_out, OH, OW] with
/// OH = floor((H + 2 ph - dh (kH - 1) - 1) / sh) + 1 (OW likewise). Differentiable in x and w.
/// @pre x and w have rank 4 and the same dtype, float or double (compile-time checks).
/// @throws metagrad::error for a stride or dilation below 1, a negative padding or groups below 1 (at once);
///         shape_error naming conv2d and both shapes, when evaluated, if C_in != w's second extent x groups,
///         C_out is not divisible by groups, the kernel is empty or the output would be empty.
template <expression X, expression W>
auto conv2d(X&& x, W&& w, const Conv2dOptions& options) {
  return Conv2dExpr<closure_t<X&&>, closure_t<W&&>>(std::forward<X>(x), std::forward<W>(w), options);
}
/// conv2d with stride 1, no padding, dilation 1, one group. The defaults are a static object rather than a
/// `= {}` temporary: GCC 12 at -O2 -march=native (AVX-512) miscompiled the copy of that temporary into the
/// node (padding.h came out as 1), found by the conv tests.
template <expression X, expression W>
auto conv2d(X&& x, W&& w) {
  static constexpr Conv2dOptions defaults{};
  return conv2d(std::forward<X>(x), std::forward<W>(w), defaults);
}

METAGRAD_NAMESPACE_END
