// metagrad/expr/batch_norm.hpp — batch normalisation in training form as one boundary node with several
// outputs, and its backward pass as another. BatchNormExpr writes y, the batch mean, 1 / sqrt(var + eps) and
// the unbiased batch variance into one packed buffer with one backend call (cuDNN's
// cudnnBatchNormalizationForwardTraining on CUDA, a per-channel sweep on the CPU); BatchNormPartExpr reads one
// of them as a view, so batch_norm() and the running-statistic updates of nn::BatchNorm are parts of the same
// node and a Program computes it once. The backward node writes dx, dgamma and dbeta the same way
// (cudnnBatchNormalizationBackward, reading the saved statistics), and its parts are differentiable again
// through the formula they compute (composition()). Include <metagrad/expr.hpp> instead.
#pragma once

#include <string>
#include <type_traits>
#include <utility>

#include "../core/device.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "../ops/reduction.hpp"
#include "conv.hpp"
#include "functions.hpp"
#include "leaf.hpp"
#include "node.hpp"
#include "reduce.hpp"
#include "view.hpp"

METAGRAD_NAMESPACE_BEGIN

/// Batch-norm input [N, C, d1, ...] read as contiguous [n, c, inner]: each channel normalises n * inner values.
struct BatchNormGeometry {
  index_t n = 0, c = 0, inner = 1;
  METAGRAD_HD index_t count() const { return n * inner; }  ///< values per channel
  METAGRAD_HD index_t numel() const { return n * c * inner; }
  bool operator==(const BatchNormGeometry&) const = default;
};

/// One batch-norm pass for a backend; every pointer is contiguous memory of `device`.
/// Forward: out = [y (numel), mean (c), invstd (c), unbiased var (c), mean (c) again] from x, gamma and beta,
/// where invstd = 1 / sqrt(biased var + eps) (the second mean is where cuDNN's running-mean output goes). Backward: out
/// = [dx (numel), dgamma (c), dbeta (c)] from x, gamma, the output adjoint dy and the forward's saved mean and invstd.
/// out overlaps nothing the pass reads. backend/dispatch.hpp sends run_batch_norm / run_batch_norm_backward to the CPU
/// loops or, on a CUDA device, to cuDNN (or metagrad's kernels where cuDNN cannot take the call).
template <class T>
struct BatchNormCall {
  BatchNormGeometry geom;
  double eps = 1e-5;
  const T* x = nullptr;
  const T* gamma = nullptr;
  const T* beta = nullptr;    ///< forward only
  const T* dy = nullptr;      ///< backward only
  const T* mean = nullptr;    ///< backward only
  const T* invstd = nullptr;  ///< backward only
  T* out = nullptr;
  Device device = Device::cpu();
};

namespace detail {

/// @throws shape_error naming `op` and the three shapes when gamma or beta does not hold one value per channel;
///         metagrad::error when eps is negative or NaN.
template <int R>
BatchNormGeometry batch_norm_geometry(const Shape<R>& xs, const Shape<1>& gs, const Shape<1>& bs, double eps,
                                      const char* op) {
  BatchNormGeometry g{xs[0], xs[1], 1};
  for (int d = 2; d < R; ++d) g.inner *= xs[d];
  if (gs[0] != g.c || bs[0] != g.c)
    throw shape_error(std::string(op) + ": input " + to_string(xs) + ", gamma " + to_string(gs) + " and beta " +
                      to_string(bs) + ": gamma and beta need one value per channel (axis 1: " + std::to_string(g.c) +
                      ")");
  if (!(eps >= 0)) throw error(std::string(op) + ": eps = " + std::to_string(eps) + " must be >= 0");
  return g;
}

// Where each output starts in a packed buffer.
inline index_t batch_norm_part_offset(const BatchNormGeometry& g, int part) {
  return part == 0 ? 0 : g.numel() + (part - 1) * g.c;
}

// Output `part` (of shape s) of packed node `node`, read in place at `target`.
template <class Node, int R, int RT>
auto lower_part(const Node& node, int part, const Shape<R>& s, const Shape<RT>& target) {
  const auto& v = node.materialise(node);
  return lower_leaf(v.data() + batch_norm_part_offset(node.geometry(), part), s, contiguous_strides(s), target);
}

/// The axes batch statistics reduce over: every axis of [N, C, d1, ...] but the channel axis 1.
template <int R>
Array<int, R - 1> batch_axes() {
  Array<int, R - 1> a{};
  a[0] = 0;
  for (int d = 2; d < R; ++d) a[d - 1] = d;
  return a;
}

// A sum or mean over every axis of [N, C, ...] but 1, kept as [C].
template <class Red, class E>
auto reduce_batch(E&& e) {
  constexpr int R = std::remove_cvref_t<E>::rank;
  return ReduceExpr<Red, closure_t<E&&>, R - 1, false>(Red{}, std::forward<E>(e), batch_axes<R>());
}

// A [C] expression read along axis 1 of a rank-R expression.
template <int R, class E>
auto along_channels(E&& e) {
  if constexpr (R == 2) {
    return std::forward<E>(e);
  } else {
    using M = AxisMapExpr<closure_t<E&&>, R - 1>;
    Array<int, R - 1> from{};
    for (int d = 0; d < R - 1; ++d) from[d] = d == 0 ? 0 : -1;
    return M(std::forward<E>(e), from, typename M::unchecked_t{});
  }
}

/// The adjoint of a batch-norm node's y output, on its way from the y part to the node (never evaluated).
template <class G>
struct BatchNormOutAdjoint {
  using value_type = typename G::value_type;
  static constexpr int rank = G::rank;
  G g;
};
/// Adjoints reaching the node along several paths (y read more than once) add up.
template <class G1, class G2>
auto operator+(const BatchNormOutAdjoint<G1>& a, const BatchNormOutAdjoint<G2>& b) {
  auto s = a.g + b.g;
  return BatchNormOutAdjoint<decltype(s)>{std::move(s)};
}

}  // namespace detail

template <int K, class BNB>
class BatchNormGradPartExpr;
template <class GY, class BN>
class BatchNormBackwardExpr;

/// Batch normalisation of x [N, C, ...] with the batch's statistics, scaled by gamma [C] and shifted by beta [C],
/// as one packed boundary node (see the file comment); read it through BatchNormPartExpr, never directly.
template <class X, class G, class B>
class BatchNormExpr : public ExprBase<BatchNormExpr<X, G, B>>,
                      public BoundaryBase<typename std::remove_cvref_t<X>::value_type, 1> {
  using XE = std::remove_cvref_t<X>;
  using GE = std::remove_cvref_t<G>;
  using BE = std::remove_cvref_t<B>;

 public:
  using value_type = typename XE::value_type;
  static constexpr int rank = 1;
  static constexpr int x_rank = XE::rank;
  using x_closure = X;
  using gamma_closure = G;
  static constexpr const char* step_name = "batch_norm";
  using self_differentiating_tag = void;
  static_assert(std::is_same_v<value_type, float> || std::is_same_v<value_type, double>,
                "metagrad: batch_norm needs a float or double input");
  static_assert(x_rank >= 2, "metagrad: batch_norm takes input of shape [N, C] or [N, C, d1, ...]");
  static_assert(GE::rank == 1 && BE::rank == 1, "metagrad: batch_norm's gamma and beta have shape [C]");
  static_assert(std::is_same_v<value_type, typename GE::value_type> &&
                    std::is_same_v<value_type, typename BE::value_type>,
                "metagrad: batch_norm's gamma and beta need the input's dtype");

  BatchNormExpr(X x, G g, B b, double eps)
      : x_(std::forward<X>(x)), g_(std::forward<G>(g)), b_(std::forward<B>(b)), eps_(eps) {}

  const XE& x() const { return x_; }
  const GE& gamma() const { return g_; }
  double eps() const { return eps_; }
  auto children() const { return detail::refs(x_, g_, b_); }
  bool same_params(const BatchNormExpr& o) const { return detail::bits_equal(eps_, o.eps_); }

  /// @throws shape_error / metagrad::error as batch_norm_geometry.
  BatchNormGeometry geometry() const {
    return detail::batch_norm_geometry(x_.shape(), g_.shape(), b_.shape(), eps_, step_name);
  }
  Shape<1> shape() const {
    const auto g = geometry();
    return Shape<1>{{g.numel() + 4 * g.c}};
  }

  /// dst = the packed outputs; dst is (re)allocated when its shape differs.
  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == 1);
    const Device dev = detail::boundary_device(*this, dst, step_name);
    const auto geom = geometry();
    const auto xs = x_.shape();
    const value_type* xp = detail::contiguous_values<value_type>(x_, xs, xbuf_, dev);
    const value_type* gp = detail::contiguous_values<value_type>(g_, g_.shape(), gbuf_, dev);
    const value_type* bp = detail::contiguous_values<value_type>(b_, b_.shape(), bbuf_, dev);
    const detail::Spans<value_type, 3> in{{{xp, geom.numel()}, {gp, geom.c}, {bp, geom.c}}};
    detail::run_into_destination(dst, shape(), dev, in, out_, [&](value_type* out) {
      BatchNormCall<value_type> call{geom, eps_, xp, gp, bp};
      call.out = out;
      call.device = dev;
      run_batch_norm(call);
    });
  }

  /// Adjoints of x (0), gamma (1) and beta (2): the parts of one backward node, from the y part's adjoint.
  template <int I, class GY>
  auto backward(std::integral_constant<int, I>, const detail::BatchNormOutAdjoint<GY>& h) const {
    using BNB = BatchNormBackwardExpr<GY, BatchNormExpr>;
    return BatchNormGradPartExpr<I, BNB>(BNB(h.g, *this));
  }

 private:
  X x_;
  G g_;
  B b_;
  double eps_;
  detail::Scratch<value_type, x_rank> xbuf_;
  detail::Scratch<value_type, 1> gbuf_, bbuf_, out_;
};

/// Output `Part` of a packed batch-norm node BN (BatchNormExpr, or BatchNormBackwardExpr with the Grad parts):
/// 0 = y [N, C, ...], 1 = the batch mean [C], 2 = 1 / sqrt(var + eps) [C], 3 = the unbiased variance [C].
/// A view: it reads the node's buffer in place. Only y is differentiable; the statistics parts feed running
/// averages and stop the gradient.
template <int Part, class BN>
class BatchNormPartExpr : public ExprBase<BatchNormPartExpr<Part, BN>> {
 public:
  using value_type = typename BN::value_type;
  static constexpr int rank = Part == 0 ? BN::x_rank : 1;
  static constexpr bool stops_gradient = Part != 0;
  using self_differentiating_tag = void;
  static_assert(Part >= 0 && Part <= 3, "metagrad: batch_norm has four outputs");

  explicit BatchNormPartExpr(BN bn) : bn_(std::move(bn)) {}
  const BN& node() const { return bn_; }
  auto children() const { return detail::refs(bn_); }
  Shape<rank> shape() const {
    if constexpr (Part == 0)
      return bn_.x().shape();
    else
      return Shape<1>{{bn_.x().shape()[1]}};
  }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    return detail::lower_part(bn_, Part, shape(), target);
  }

  /// The y part passes its adjoint on to the node, which answers for x, gamma and beta.
  template <class GY>
  auto backward(std::integral_constant<int, 0>, const GY& g) const {
    static_assert(Part == 0, "metagrad: batch_norm's statistics are not differentiable");
    return detail::BatchNormOutAdjoint<GY>{g};
  }

 private:
  BN bn_;
};

/// dx, dgamma and dbeta of batch normalisation, packed [dx (numel), dgamma (c), dbeta (c)], from the adjoint of
/// y and a copy of the forward node (which a Program merges with the forward node, so the saved statistics are
/// read, not recomputed). Read it through BatchNormGradPartExpr.
template <class GY, class BN>
class BatchNormBackwardExpr : public ExprBase<BatchNormBackwardExpr<GY, BN>>,
                              public BoundaryBase<typename BN::value_type, 1> {
 public:
  using value_type = typename BN::value_type;
  static constexpr int rank = 1;
  static constexpr int x_rank = BN::x_rank;
  using forward_type = BN;
  using adjoint_closure = GY;
  static constexpr const char* step_name = "batch_norm (backward)";
  static_assert(std::is_same_v<value_type, typename GY::value_type> && GY::rank == x_rank,
                "metagrad: batch_norm backward: the adjoint needs the input's dtype and rank");

  BatchNormBackwardExpr(GY g, BN bn) : g_(std::move(g)), bn_(std::move(bn)) {}
  const GY& adjoint() const { return g_; }
  const BN& forward() const { return bn_; }
  auto children() const { return detail::refs(g_, bn_); }
  BatchNormGeometry geometry() const { return bn_.geometry(); }
  Shape<1> shape() const {
    const auto g = geometry();
    return Shape<1>{{g.numel() + 2 * g.c}};
  }

  /// dst = [dx, dgamma, dbeta]; dst is (re)allocated when its shape differs.
  /// @throws shape_error naming the op when the adjoint does not have the input's shape.
  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == 1);
    const Device dev = detail::boundary_device(*this, dst, step_name);
    const auto geom = geometry();
    const auto xs = bn_.x().shape();
    const auto gs = g_.shape();
    if (!(gs == xs))
      throw shape_error(std::string(step_name) + ": the output adjoint has shape " + to_string(gs) + ", expected " +
                        to_string(xs));
    const auto& fwd = bn_.materialise(bn_);
    const value_type* xp = detail::contiguous_values<value_type>(bn_.x(), xs, xbuf_, dev);
    const value_type* gp = detail::contiguous_values<value_type>(bn_.gamma(), bn_.gamma().shape(), gbuf_, dev);
    const value_type* dyp = detail::contiguous_values<value_type>(g_, gs, dybuf_, dev);
    const value_type* stats = fwd.data() + geom.numel();
    const detail::Spans<value_type, 4> in{{{xp, geom.numel()}, {gp, geom.c}, {dyp, geom.numel()}, {stats, 2 * geom.c}}};
    detail::run_into_destination(dst, shape(), dev, in, out_, [&](value_type* out) {
      BatchNormCall<value_type> call{geom, bn_.eps(), xp, gp};
      call.dy = dyp;
      call.mean = stats;
      call.invstd = stats + geom.c;
      call.out = out;
      call.device = dev;
      run_batch_norm_backward(call);
    });
  }

 private:
  GY g_;
  BN bn_;
  detail::Scratch<value_type, x_rank> xbuf_, dybuf_;
  detail::Scratch<value_type, 1> gbuf_, out_;
};

/// Output K of a batch-norm backward node: 0 = dx [N, C, ...], 1 = dgamma [C], 2 = dbeta [C]. A view of the
/// node's buffer; differentiable again through the formula it evaluates (composition()).
template <int K, class BNB>
class BatchNormGradPartExpr : public ExprBase<BatchNormGradPartExpr<K, BNB>> {
 public:
  using value_type = typename BNB::value_type;
  static constexpr int rank = K == 0 ? BNB::x_rank : 1;
  static_assert(K >= 0 && K <= 2, "metagrad: batch_norm's backward pass has three outputs");

  explicit BatchNormGradPartExpr(BNB bnb) : bnb_(std::move(bnb)) {}
  auto children() const { return detail::refs(bnb_); }
  Shape<rank> shape() const {
    if constexpr (K == 0)
      return bnb_.forward().x().shape();
    else
      return Shape<1>{{bnb_.forward().x().shape()[1]}};
  }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    return detail::lower_part(bnb_, K, shape(), target);
  }

  /// The value as a composition of metagrad's reductions and elementwise nodes, which grad() differentiates
  /// (second derivatives): with xhat = (x - mean) * invstd,
  ///   dbeta = sum(g), dgamma = sum(g * xhat), dx = gamma * invstd * (g - mean(g) - xhat * mean(g * xhat)),
  /// the sums and means over every axis but 1.
  auto composition() const {
    constexpr int R = BNB::x_rank;
    using T = value_type;
    using BN = typename BNB::forward_type;
    const BN& bn = bnb_.forward();
    auto x = [&] { return detail::copy_operand<typename BN::x_closure>(bn.x()); };
    auto g = [&] { return detail::copy_operand<typename BNB::adjoint_closure>(bnb_.adjoint()); };
    auto invstd = [&] { return rsqrt(detail::reduce_batch<ops::VarReducer>(x()) + static_cast<T>(bn.eps())); };
    auto xhat = [&] {
      return (x() - detail::along_channels<R>(detail::reduce_batch<ops::MeanReducer>(x()))) *
             detail::along_channels<R>(invstd());
    };
    if constexpr (K == 2) {
      return detail::reduce_batch<ops::SumReducer>(g());
    } else if constexpr (K == 1) {
      return detail::reduce_batch<ops::SumReducer>(g() * xhat());
    } else {
      auto gamma = detail::copy_operand<typename BN::gamma_closure>(bn.gamma());
      return detail::along_channels<R>(std::move(gamma) * invstd()) *
             (g() - detail::along_channels<R>(detail::reduce_batch<ops::MeanReducer>(g())) -
              xhat() * detail::along_channels<R>(detail::reduce_batch<ops::MeanReducer>(g() * xhat())));
    }
  }

 private:
  BNB bnb_;
};

METAGRAD_NAMESPACE_END
