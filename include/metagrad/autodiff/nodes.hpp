// metagrad/autodiff/nodes.hpp — the expression nodes that gradients are made of besides the ordinary ones:
// stop_gradient, a value broadcast to the shape of another expression, an adjoint summed back to the
// shape of a broadcast operand (sum_to), the adjoint of a slice (scatter into zeros), a reshape to the shape
// of another expression, and the element count of a reduction. Their shapes are read from the forward
// expression when evaluated, never when built, so gradients of graphs whose Inputs are not bound yet can be
// formed. Include <metagrad/autodiff.hpp> instead.
#pragma once

#include <tuple>
#include <type_traits>
#include <utility>

#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "../expr/node.hpp"
#include "../expr/plan.hpp"
#include "../expr/reduce.hpp"

METAGRAD_NAMESPACE_BEGIN

/// The operand's value, with no gradient flowing through it.
template <class A>
class StopGradientExpr : public ExprBase<StopGradientExpr<A>> {
  using AE = std::remove_cvref_t<A>;

 public:
  using value_type = typename AE::value_type;
  static constexpr int rank = AE::rank;
  explicit StopGradientExpr(A a) : a_(std::forward<A>(a)) {}
  Shape<rank> shape() const { return a_.shape(); }
  const AE& operand() const { return a_; }
  auto children() const { return detail::refs(a_); }
  bool same_params(const StopGradientExpr&) const { return true; }
  template <int RT>
  auto lower(const Shape<RT>& target) const {
    return lower_expr(a_, target);
  }

 private:
  A a_;
};

/// stop_gradient(e): e's value, treated as a constant by grad().
template <expression A>
auto stop_gradient(A&& a) {
  return StopGradientExpr<closure_t<A&&>>(std::forward<A>(a));
}

/// `a` broadcast to the shape of `x` (which is only asked for its shape). @pre a broadcasts to x's shape.
template <class A, class X>
class BroadcastLikeExpr : public ExprBase<BroadcastLikeExpr<A, X>> {
 public:
  using value_type = typename A::value_type;
  static constexpr int rank = X::rank;
  BroadcastLikeExpr(A a, X x) : a_(std::move(a)), x_(std::move(x)) {}
  Shape<rank> shape() const { return x_.shape(); }
  const A& operand() const { return a_; }
  const X& like() const { return x_; }
  auto children() const { return detail::refs(a_); }
  bool same_params(const BroadcastLikeExpr&) const { return true; }
  template <int RT>
  auto lower(const Shape<RT>& target) const {
    return lower_expr(a_, target);
  }

 private:
  A a_;
  X x_;
};

namespace detail {
// g's shape right-aligned into a rank-RT target (the rank SumToPlan's unused branch is built at).
template <int R, int RT>
Shape<RT> shape_like(const Shape<R>& s, const Shape<RT>& target) {
  Shape<RT> out = target;
  for (int d = 0; d < R; ++d) out[d + (RT - R)] = s[d];
  return out;
}
}  // namespace detail

/// The sum of `g` over the axes on which `x` was broadcast to g's shape: the leading axes g has beyond
/// x's rank, and every axis where x has extent 1 and g does not. The result has x's shape and dtype.
/// When g and x have the same rank this is known only at run time; when the shapes turn out equal the node
/// is free (it lowers to a run-time choice that the drivers strip, see SumToPlan), else it is a boundary
/// that materialises the sum once.
template <class G, class X>
class SumToExpr : public ExprBase<SumToExpr<G, X>>, public BoundaryBase<typename X::value_type, X::rank> {
  static constexpr int RG = G::rank;

 public:
  using value_type = typename X::value_type;
  static constexpr int rank = X::rank;
  static_assert(RG >= rank, "metagrad: sum_to cannot raise the rank");
  /// False when the node may turn out to be its operand itself at run time (equal ranks): it then reads
  /// its operand's boundaries wherever it is read, which the planner's lifetimes account for.
  static constexpr bool always_materialised = RG > rank;

  SumToExpr(G g, X x) : g_(std::move(g)), x_(std::move(x)) {}
  Shape<rank> shape() const { return x_.shape(); }
  const G& operand() const { return g_; }
  const X& like() const { return x_; }
  auto children() const { return detail::refs(g_); }
  bool same_params(const SumToExpr&) const { return true; }

  /// Whether this evaluation needs the reduction (false: the node is g itself).
  bool materialised() const {
    if constexpr (RG > rank)
      return true;
    else
      return !(g_.shape() == x_.shape());
  }

  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == rank);
    const auto gs = g_.shape();
    const auto xs = x_.shape();
    const Device dev = detail::operands_device(*this, "sum_to").value_or(Device::cpu());
    detail::prepare_destination(dst, xs, dev);
    Array<bool, RG> mask{};
    Strides<RG> ost{};
    for (int d = 0; d < RG; ++d) {
      const int c = d - (RG - rank);
      mask[d] = c < 0 || (xs[c] == 1 && gs[d] != 1);
      ost[d] = c < 0 ? 0 : dst.strides()[c];
    }
    run_reduction(dev, ops::SumReducer{}, lower_expr(g_, gs), gs, mask, dst.data(), ost);
  }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    if constexpr (RG > rank) {
      const auto& v = this->materialise(*this);
      return broadcast_plan(lower_expr(v, v.shape()), v.shape(), target);
    } else {
      using GP = plan_t<G, RT>;
      if (!materialised()) return SumToPlan<GP, value_type, RT>{lower_expr(g_, target), {}, false};
      const auto& v = this->materialise(*this);
      // g is lowered only to fill the plan's unused branch; its shape is g's own.
      return SumToPlan<GP, value_type, RT>{lower_expr(g_, detail::shape_like(g_.shape(), target)),
                                           broadcast_plan(lower_expr(v, v.shape()), v.shape(), target), true};
    }
  }

 private:
  G g_;
  X x_;
};

/// The adjoint of a slice: g (of the slice's shape) scattered into zeros of x's shape.
template <class G, class X>
class UnsliceExpr : public ExprBase<UnsliceExpr<G, X>> {
 public:
  using value_type = typename G::value_type;
  static constexpr int rank = X::rank;
  UnsliceExpr(G g, X x, Array<index_t, rank> start, Array<index_t, rank> step, Shape<rank> count)
      : g_(std::move(g)), x_(std::move(x)), start_(start), step_(step), count_(count) {}
  Shape<rank> shape() const { return x_.shape(); }
  const G& operand() const { return g_; }
  const X& like() const { return x_; }
  const Array<index_t, rank>& starts() const { return start_; }
  const Array<index_t, rank>& steps() const { return step_; }
  const Shape<rank>& counts() const { return count_; }
  auto children() const { return detail::refs(g_); }
  bool same_params(const UnsliceExpr& o) const {
    return detail::bits_equal(start_, o.start_) && detail::bits_equal(step_, o.step_) &&
           detail::bits_equal(count_, o.count_);
  }
  template <int RT>
  auto lower(const Shape<RT>& target) const {
    const auto xs = x_.shape();
    UnslicePlan<plan_t<G, rank>> p{lower_expr(g_, count_), start_, step_, count_};
    return broadcast_plan(p, xs, target);
  }

 private:
  G g_;
  X x_;
  Array<index_t, rank> start_, step_;
  Shape<rank> count_;
};

/// g's elements in row-major order with the extents of x (the adjoint of a reshape).
template <class G, class X>
class ReshapeLikeExpr : public ExprBase<ReshapeLikeExpr<G, X>> {
  static constexpr int RG = G::rank;

 public:
  using value_type = typename G::value_type;
  static constexpr int rank = X::rank;
  ReshapeLikeExpr(G g, X x) : g_(std::move(g)), x_(std::move(x)) {}
  ReshapeLikeExpr(const ReshapeLikeExpr& o) : g_(o.g_), x_(o.x_) {}
  Shape<rank> shape() const { return x_.shape(); }
  const G& operand() const { return g_; }
  const X& like() const { return x_; }
  auto children() const { return detail::refs(g_); }
  bool same_params(const ReshapeLikeExpr&) const { return true; }
  template <int RT>
  auto lower(const Shape<RT>& target) const {
    const auto gs = g_.shape();
    const auto xs = x_.shape();
    if (gs.numel() != xs.numel())
      throw shape_error("reshape (gradient): cannot view " + to_string(gs) + " as " + to_string(xs));
    auto cp = lower_expr(g_, gs);
    if constexpr (is_leaf_plan_v<decltype(cp)>) {
      const value_type* ptr = cp.ptr;
      if (!is_contiguous(gs, Strides<RG>(cp.strides))) {
        copy_.get() = Tensor<value_type, RG>(g_);
        ptr = copy_.get().data();
      }
      return broadcast_plan(LeafPlan<value_type, rank>{ptr, contiguous_strides(xs), true}, xs, target);
    } else {
      return broadcast_plan(ReshapePlan<decltype(cp), rank>{cp, contiguous_strides(xs), gs}, xs, target);
    }
  }

 private:
  G g_;
  X x_;
  detail::Lazy<Tensor<value_type, RG>> copy_;
};

/// The number of elements a reduction of x over `mask` combines into each output, as a scalar of dtype T.
template <class T, class X>
class ReduceCountExpr : public ExprBase<ReduceCountExpr<T, X>> {
 public:
  using value_type = T;
  static constexpr int rank = 0;
  ReduceCountExpr(X x, Array<bool, X::rank> mask, index_t offset = 0)
      : x_(std::move(x)), mask_(mask), offset_(offset) {}
  Shape<0> shape() const { return {}; }
  auto children() const { return detail::Pack<>{}; }
  bool same_params(const ReduceCountExpr& o) const {
    return detail::bits_equal(mask_, o.mask_) && offset_ == o.offset_;
  }
  /// The count minus the offset (var's ddof).
  T value() const {
    const auto s = x_.shape();
    index_t n = 1;
    for (int d = 0; d < X::rank; ++d)
      if (mask_[d]) n *= s[d];
    return static_cast<T>(n - offset_);
  }
  template <int RT>
  ScalarPlan<T, RT> lower(const Shape<RT>&) const {
    return {value()};
  }

 private:
  X x_;
  Array<bool, X::rank> mask_;
  index_t offset_;
};

/// One of two expressions of the same dtype and rank, chosen once, when it is built. grad() returns one
/// when a subexpression type occurs more than once: the first branch sums the adjoints of equal
/// occurrences before propagating them (one backward pass through the shared part); the second
/// propagates each occurrence separately, which is what is right when occurrences of one type turn out
/// to differ in their run-time parameters (x * 2 beside x * 3). A Program evaluates only the chosen branch.
template <class A, class B>
class SelectExpr : public ExprBase<SelectExpr<A, B>>, public BoundaryBase<typename A::value_type, A::rank> {
 public:
  using value_type = typename A::value_type;
  static constexpr int rank = A::rank;
  static_assert(std::is_same_v<value_type, typename B::value_type> && rank == B::rank);
  SelectExpr(A a, B b, bool take_first) : a_(std::move(a)), b_(std::move(b)), first_(take_first) {}
  Shape<rank> shape() const { return first_ ? a_.shape() : b_.shape(); }
  bool takes_first() const { return first_; }
  const A& first_branch() const { return a_; }
  const B& second_branch() const { return b_; }
  auto children() const { return detail::refs(a_, b_); }
  bool same_params(const SelectExpr& o) const { return first_ == o.first_; }

  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == rank);
    if (first_)
      detail::assigner<Tensor<value_type, RD>>::assign(dst, a_);
    else
      detail::assigner<Tensor<value_type, RD>>::assign(dst, b_);
  }

 private:
  A a_;
  B b_;
  bool first_;
};

METAGRAD_NAMESPACE_END
