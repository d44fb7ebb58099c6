// metagrad/expr/concat.hpp — joining and reshaping tensors by index arithmetic, as elementwise nodes that
// fuse with their neighbours: concat(axis, a, b, ...), stack(axis, a, b, ...), pad(x, widths, value) (constant
// mode) and flatten<start>(x). Each element is read from one operand at a remapped index; nothing is copied.
// Shapes are read when the node is evaluated, so all of them work on Inputs bound later and to other batch
// sizes. Their gradients are windows of the incoming gradient (CropLikeExpr) and a reshape back
// (ReshapeAsExpr), shaped by the operands at evaluation. Include <metagrad/expr.hpp> instead.
#pragma once

#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "functions.hpp"
#include "leaf.hpp"
#include "node.hpp"
#include "plan.hpp"
#include "view.hpp"

METAGRAD_NAMESPACE_BEGIN

// --- plans -----------------------------------------------------------------------------------------------

/// a and b joined along `axis`: indices below `split` read a, the others b shifted back by `split`.
template <class A, class B>
struct ConcatPlan {
  using value_type = typename A::value_type;
  static constexpr int rank = A::rank;
  A a;
  B b;
  int axis;
  index_t split;
  Array<index_t, rank> shape_a, shape_b;
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type at(const Array<I, rank>& idx) const {
    if (idx[axis] < static_cast<I>(split)) return a.at(idx);
    Array<I, rank> j = idx;
    j[axis] -= static_cast<I>(split);
    return b.at(j);
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type flat(I) const {
    return value_type(0);  // never used: is_flat() is false
  }
  bool is_flat() const { return false; }
  template <class F>
  void visit_leaves(F&& f, bool, const Array<index_t, rank>&) const {
    a.visit_leaves(f, true, shape_a);
    b.visit_leaves(f, true, shape_b);
  }
};

/// The child surrounded by a constant: element idx is child[idx - before] where that is inside the child.
template <class C>
struct PadPlan {
  using value_type = typename C::value_type;
  static constexpr int rank = C::rank;
  C c;
  Array<index_t, rank> before, child_shape;
  value_type value;
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type at(const Array<I, rank>& idx) const {
    Array<I, rank> ci{};
    bool inside = true;
    for (int d = 0; d < rank; ++d) {
      const I j = idx[d] - static_cast<I>(before[d]);
      inside &= j >= 0 && j < static_cast<I>(child_shape[d]);
      ci[d] = inside ? j : I(0);
    }
    return inside ? c.at(ci) : value;
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE value_type flat(I) const {
    return value_type(0);  // never used: is_flat() is false
  }
  bool is_flat() const { return false; }
  template <class F>
  void visit_leaves(F&& f, bool, const Array<index_t, rank>&) const {
    c.visit_leaves(f, true, child_shape);
  }
};

namespace detail {
// The plan of `e` (of shape `from`) read with the row-major extents `to` (same element count): memory stays a
// leaf plan (a non-contiguous tensor is copied into `copy` once, as torch.reshape does), so a flattened
// activation still goes to a GEMM as stored; a computed expression unravels indices (ReshapePlan).
template <class E, int RF, int RO, class T>
auto reshaped_plan(const E& e, const Shape<RF>& from, const Shape<RO>& to, Tensor<T, RF>& copy) {
  auto cp = lower_expr(e, from);
  using CP = decltype(cp);
  if constexpr (is_leaf_plan_v<CP>) {
    const T* ptr = cp.ptr;
    if (!is_contiguous(from, Strides<RF>(cp.strides))) {
      const Device dev = detail::expr_device(e, "reshape").value_or(Device::cpu());
      detail::prepare_destination(copy, from, dev);
      run_fill(dev, copy.data(), copy.strides(), from, cp);
      ptr = copy.data();
    }
    return LeafPlan<T, RO>{ptr, contiguous_strides(to), true};
  } else {
    return ReshapePlan<CP, RO>{cp, contiguous_strides(to), from};
  }
}
}  // namespace detail

// --- gradient nodes --------------------------------------------------------------------------------------

/// A window of g with the shape of x (read for its shape only): along axis d it starts at start[d], or, where
/// from_end[d], at g's extent minus x's (the last elements). The adjoint of one operand of concat or pad.
template <class G, class X>
class CropLikeExpr : public ExprBase<CropLikeExpr<G, X>> {
 public:
  using value_type = typename G::value_type;
  static constexpr int rank = X::rank;
  static_assert(G::rank == rank);

  CropLikeExpr(G g, X x, Array<index_t, rank> start, Array<bool, rank> from_end, const char* op)
      : g_(std::move(g)), x_(std::move(x)), start_(start), from_end_(from_end), op_(op) {}
  Shape<rank> shape() const { return x_.shape(); }
  const G& operand() const { return g_; }
  const X& like() const { return x_; }
  auto children() const { return detail::refs(g_); }
  bool same_params(const CropLikeExpr& o) const {
    return detail::bits_equal(start_, o.start_) && detail::bits_equal(from_end_, o.from_end_);
  }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    const auto gs = g_.shape();
    const auto xs = x_.shape();
    Array<index_t, rank> start{}, step{};
    for (int d = 0; d < rank; ++d) {
      start[d] = from_end_[d] ? gs[d] - xs[d] : start_[d];
      step[d] = 1;
      if (start[d] < 0 || start[d] + xs[d] > gs[d])
        throw shape_error(std::string(op_) + " (gradient): a window of shape " + to_string(xs) +
                          " does not fit the gradient of shape " + to_string(gs));
    }
    auto cp = lower_expr(g_, gs);
    if constexpr (is_leaf_plan_v<decltype(cp)>) {
      const index_t off = xs.numel() ? detail::dot_index(start, cp.strides) : 0;
      LeafPlan<value_type, rank> leaf{cp.ptr + off, cp.strides, is_contiguous(xs, Strides<rank>(cp.strides))};
      return broadcast_plan(leaf, xs, target);
    } else {
      return broadcast_plan(SlicePlan<decltype(cp)>{cp, start, step, gs}, xs, target);
    }
  }

 private:
  G g_;
  X x_;
  Array<index_t, rank> start_;
  Array<bool, rank> from_end_;
  const char* op_;
};

/// a's elements in row-major order with the shape of x (read for its shape only): the adjoint of flatten,
/// and its own adjoint's form.
template <class A, class X>
class ReshapeAsExpr : public ExprBase<ReshapeAsExpr<A, X>> {
 public:
  using value_type = typename A::value_type;
  static constexpr int rank = X::rank;
  using self_differentiating_tag = void;

  ReshapeAsExpr(A a, X x) : a_(std::move(a)), x_(std::move(x)) {}
  Shape<rank> shape() const { return x_.shape(); }
  const A& operand() const { return a_; }
  const X& like() const { return x_; }
  auto children() const { return detail::refs(a_); }
  bool same_params(const ReshapeAsExpr&) const { return true; }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    const auto as = a_.shape();
    const auto xs = x_.shape();
    if (as.numel() != xs.numel())
      throw shape_error("flatten (gradient): cannot view " + to_string(as) + " as " + to_string(xs));
    return broadcast_plan(detail::reshaped_plan(a_, as, xs, copy_.get()), xs, target);
  }

  template <class G>
  auto backward(std::integral_constant<int, 0>, const G& g) const {
    return ReshapeAsExpr<G, A>(g, a_);
  }

 private:
  A a_;
  X x_;
  detail::Lazy<Tensor<value_type, A::rank>> copy_;
};

// --- forward nodes ---------------------------------------------------------------------------------------

/// a and b joined along `axis` (two operands; longer lists nest). Every other extent must agree.
template <class A, class B>
class ConcatExpr : public ExprBase<ConcatExpr<A, B>> {
  using AE = std::remove_cvref_t<A>;
  using BE = std::remove_cvref_t<B>;

 public:
  using value_type = typename AE::value_type;
  static constexpr int rank = AE::rank;
  using self_differentiating_tag = void;
  static_assert(AE::rank == BE::rank, "metagrad: concat needs operands of the same rank (unsqueeze or reshape first)");
  static_assert(std::is_same_v<value_type, typename BE::value_type>,
                "metagrad: concat needs operands of the same dtype; convert one with cast<T>()");
  static_assert(rank >= 1, "metagrad: concat needs operands of rank 1 or more");

  /// @pre axis already normalised.
  ConcatExpr(A a, B b, int axis, const char* op)
      : a_(std::forward<A>(a)), b_(std::forward<B>(b)), axis_(axis), op_(op) {}

  /// @throws shape_error naming the op and both shapes when they differ on another axis.
  Shape<rank> shape() const {
    const auto as = a_.shape();
    const auto bs = b_.shape();
    for (int d = 0; d < rank; ++d)
      if (d != axis_ && as[d] != bs[d])
        throw shape_error(std::string(op_) + ": shapes " + to_string(as) + " and " + to_string(bs) +
                          " differ on axis " + std::to_string(d) + ", not only on the joined axis " +
                          std::to_string(axis_));
    Shape<rank> s = as;
    s[axis_] += bs[axis_];
    return s;
  }
  const AE& lhs() const { return a_; }
  const BE& rhs() const { return b_; }
  int axis() const { return axis_; }
  auto children() const { return detail::refs(a_, b_); }
  bool same_params(const ConcatExpr& o) const { return axis_ == o.axis_; }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    const auto own = shape();
    const auto as = a_.shape();
    const auto bs = b_.shape();
    using P = ConcatPlan<plan_t<AE, rank>, plan_t<BE, rank>>;
    return broadcast_plan(P{lower_expr(a_, as), lower_expr(b_, bs), axis_, as[axis_], as, bs}, own, target);
  }

  template <class G>
  auto backward(std::integral_constant<int, 0>, const G& g) const {
    return crop<G>(g, detail::operand_value<A>(a_), false);
  }
  template <class G>
  auto backward(std::integral_constant<int, 1>, const G& g) const {
    return crop<G>(g, detail::operand_value<B>(b_), true);
  }

 private:
  template <class G, class X>
  auto crop(const G& g, const X& x, bool at_end) const {
    using XV = std::remove_cvref_t<X>;
    Array<bool, rank> from_end{};
    from_end[axis_] = at_end;
    return CropLikeExpr<G, XV>(g, x, Array<index_t, rank>{}, from_end, op_);
  }
  A a_;
  B b_;
  int axis_;
  const char* op_;
};

/// Widths of constant padding on one axis.
struct PadWidth {
  index_t before = 0;
  index_t after = 0;
};

/// x surrounded by `value`: before[d] elements ahead of and after[d] behind it on each axis d.
template <class A>
class PadExpr : public ExprBase<PadExpr<A>> {
  using AE = std::remove_cvref_t<A>;

 public:
  using value_type = typename AE::value_type;
  static constexpr int rank = AE::rank;
  using self_differentiating_tag = void;

  PadExpr(A a, Array<index_t, rank> before, Array<index_t, rank> after, value_type value)
      : a_(std::forward<A>(a)), before_(before), after_(after), value_(value) {}
  Shape<rank> shape() const {
    auto s = a_.shape();
    for (int d = 0; d < rank; ++d) s[d] += before_[d] + after_[d];
    return s;
  }
  const AE& operand() const { return a_; }
  auto children() const { return detail::refs(a_); }
  bool same_params(const PadExpr& o) const {
    return detail::bits_equal(before_, o.before_) && detail::bits_equal(after_, o.after_) &&
           detail::bits_equal(value_, o.value_);
  }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    const auto cs = a_.shape();
    PadPlan<plan_t<AE, rank>> p{lower_expr(a_, cs), before_, cs, value_};
    return broadcast_plan(p, shape(), target);
  }

  template <class G>
  auto backward(std::integral_constant<int, 0>, const G& g) const {
    using XV = std::remove_cvref_t<decltype(detail::operand_value<A>(a_))>;
    return CropLikeExpr<G, XV>(g, detail::operand_value<A>(a_), before_, Array<bool, rank>{}, "pad");
  }

 private:
  A a_;
  Array<index_t, rank> before_, after_;
  value_type value_;
};

/// x with axes start .. rank-1 merged into one: rank Start + 1, extents read from x when evaluated.
template <class A, int Start>
class FlattenExpr : public ExprBase<FlattenExpr<A, Start>> {
  using AE = std::remove_cvref_t<A>;

 public:
  using value_type = typename AE::value_type;
  static constexpr int rank = Start + 1;
  using self_differentiating_tag = void;
  static_assert(Start >= 0 && Start < AE::rank, "metagrad: flatten's start axis must lie in [0, rank)");

  explicit FlattenExpr(A a) : a_(std::forward<A>(a)) {}
  Shape<rank> shape() const {
    const auto cs = a_.shape();
    Shape<rank> s;
    for (int d = 0; d < Start; ++d) s[d] = cs[d];
    index_t n = 1;
    for (int d = Start; d < AE::rank; ++d) n *= cs[d];
    s[Start] = n;
    return s;
  }
  const AE& operand() const { return a_; }
  auto children() const { return detail::refs(a_); }
  bool same_params(const FlattenExpr&) const { return true; }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    const auto own = shape();
    return broadcast_plan(detail::reshaped_plan(a_, a_.shape(), own, copy_.get()), own, target);
  }

  template <class G>
  auto backward(std::integral_constant<int, 0>, const G& g) const {
    using XV = std::remove_cvref_t<decltype(detail::operand_value<A>(a_))>;
    return ReshapeAsExpr<G, XV>(g, detail::operand_value<A>(a_));
  }

 private:
  A a_;
  detail::Lazy<Tensor<value_type, AE::rank>> copy_;
};

// --- front-ends ------------------------------------------------------------------------------------------

namespace detail {
template <class E>
void check_shape_early(const E& e) {
  try {
    (void)e.shape();  // report a mismatch where it is written when the shapes are already known
  } catch (const unbound_error&) {
  }
}
template <class A, class B>
auto concat_two(int axis, A&& a, B&& b, const char* op) {
  return ConcatExpr<closure_t<A&&>, closure_t<B&&>>(std::forward<A>(a), std::forward<B>(b), axis, op);
}
template <class A, class B, class... Rest>
auto concat_all(int axis, const char* op, A&& a, B&& b, Rest&&... rest) {
  auto ab = concat_two(axis, std::forward<A>(a), std::forward<B>(b), op);
  if constexpr (sizeof...(Rest) == 0)
    return ab;
  else
    return concat_all(axis, op, std::move(ab), std::forward<Rest>(rest)...);
}
}  // namespace detail

/// The operands joined along `axis` (negative counts from the end): every other extent must agree.
/// @pre two or more operands of one rank and dtype (compile-time checks).
/// @throws index_error for an axis out of range; shape_error naming concat and the shapes when another extent
/// differs (at once when the shapes are known, else when evaluated).
template <expression A, expression B, expression... Rest>
auto concat(int axis, A&& a, B&& b, Rest&&... rest) {
  axis = normalize_axis(axis, expr_rank_v<A>, "concat");
  auto e = detail::concat_all(axis, "concat", std::forward<A>(a), std::forward<B>(b), std::forward<Rest>(rest)...);
  detail::check_shape_early(e);
  return e;
}

/// The operands, all of one shape, stacked along a new axis at position `axis` (0 .. rank; negative counts
/// from rank + 1). @throws shape_error naming stack and the shapes when they differ.
template <expression A, expression B, expression... Rest>
auto stack(int axis, A&& a, B&& b, Rest&&... rest) {
  axis = normalize_axis(axis, expr_rank_v<A> + 1, "stack");
  auto e = detail::concat_all(axis, "stack", unsqueeze(std::forward<A>(a), axis), unsqueeze(std::forward<B>(b), axis),
                              unsqueeze(std::forward<Rest>(rest), axis)...);
  detail::check_shape_early(e);
  return e;
}

/// Constant padding of the last K axes: widths[i] pads axis rank - K + i, e.g. pad(img, {{1, 1}, {2, 2}})
/// adds a row above and below and two columns on each side of [.., H, W].
/// @throws metagrad::error for a negative width (crop with slice instead).
template <expression A, int K>
auto pad(A&& x, const PadWidth (&widths)[K], double value = 0.0) {
  constexpr int R = expr_rank_v<A>;
  static_assert(K >= 1 && K <= R, "metagrad: pad takes one PadWidth for each of the last K axes, K <= rank");
  Array<index_t, R> before{}, after{};
  for (int i = 0; i < K; ++i) {
    if (widths[i].before < 0 || widths[i].after < 0)
      throw error("pad: negative width {" + std::to_string(widths[i].before) + ", " + std::to_string(widths[i].after) +
                  "} for axis " + std::to_string(R - K + i) + " (use slice to crop)");
    before[R - K + i] = widths[i].before;
    after[R - K + i] = widths[i].after;
  }
  using T = expr_value_t<A>;
  return PadExpr<closure_t<A&&>>(std::forward<A>(x), before, after, static_cast<T>(value));
}

/// x with axes Start .. rank-1 merged: flatten<1>(images) turns [N, C, H, W] into [N, C H W] for any N
/// bound at run time (flatten<0> is a rank-1 view, like x.flatten()).
template <int Start = 1, expression A>
auto flatten(A&& x) {
  return FlattenExpr<closure_t<A&&>, Start>(std::forward<A>(x));
}

METAGRAD_NAMESPACE_END
