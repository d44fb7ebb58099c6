// metagrad/expr/elementwise.hpp — the elementwise expression nodes UnaryExpr, BinaryExpr and
// TernaryExpr. They hold their operands (closure semantics, see node.hpp) and a functor from ops/, and
// never compute: lowering pushes the target shape down to the leaves, so broadcasting costs a stride of
// 0 and the whole tree becomes one fused loop. Include <metagrad/expr.hpp> instead.
#pragma once

#include <algorithm>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../core/dtype.hpp"
#include "../core/shape.hpp"
#include "node.hpp"
#include "plan.hpp"

METAGRAD_NAMESPACE_BEGIN

/// op(a) elementwise. `A` is the closure type of the operand (a value, or a const reference to a leaf).
template <class Op, class A>
class UnaryExpr : public ExprBase<UnaryExpr<Op, A>> {
  using AE = std::remove_cvref_t<A>;

 public:
  using operand_type = AE;
  using value_type = decltype(std::declval<const Op&>()(std::declval<typename AE::value_type>()));
  static_assert(dtype<value_type>, "metagrad: an elementwise op produced a type that is not a tensor dtype");
  static constexpr int rank = AE::rank;

  UnaryExpr(Op op, A a) : op_(op), a_(std::forward<A>(a)) {}

  Shape<rank> shape() const { return a_.shape(); }
  const AE& operand() const { return a_; }
  const Op& op() const { return op_; }
  auto children() const { return detail::refs(a_); }
  bool same_params(const UnaryExpr& o) const { return detail::bits_equal(op_, o.op_); }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    return UnaryPlan<Op, plan_t<AE, RT>>{op_, lower_expr(a_, target)};
  }

 private:
  Op op_;
  A a_;
};

/// op(a, b) elementwise with NumPy broadcasting; both operands convert to promote_t of their dtypes.
template <class Op, class A, class B>
class BinaryExpr : public ExprBase<BinaryExpr<Op, A, B>> {
  using AE = std::remove_cvref_t<A>;
  using BE = std::remove_cvref_t<B>;

 public:
  using compute_type = promote_t<typename AE::value_type, typename BE::value_type>;
  using value_type = decltype(std::declval<const Op&>()(std::declval<compute_type>(), std::declval<compute_type>()));
  static_assert(dtype<value_type>, "metagrad: an elementwise op produced a type that is not a tensor dtype");
  static constexpr int rank = AE::rank > BE::rank ? AE::rank : BE::rank;

  BinaryExpr(Op op, A a, B b) : op_(op), a_(std::forward<A>(a)), b_(std::forward<B>(b)) {}

  /// @throws shape_error naming the op and both shapes when they do not broadcast.
  Shape<rank> shape() const { return broadcast_shapes(a_.shape(), b_.shape(), Op::name); }
  const AE& lhs() const { return a_; }
  const BE& rhs() const { return b_; }
  const Op& op() const { return op_; }
  auto children() const { return detail::refs(a_, b_); }
  bool same_params(const BinaryExpr& o) const { return detail::bits_equal(op_, o.op_); }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    return BinaryPlan<Op, compute_type, plan_t<AE, RT>, plan_t<BE, RT>>{op_, lower_expr(a_, target),
                                                                        lower_expr(b_, target)};
  }

 private:
  Op op_;
  A a_;
  B b_;
};

/// op(a, b, c) elementwise with broadcasting; `a` keeps its type (the condition of where), b and c
/// convert to their promoted type.
template <class Op, class A, class B, class C>
class TernaryExpr : public ExprBase<TernaryExpr<Op, A, B, C>> {
  using AE = std::remove_cvref_t<A>;
  using BE = std::remove_cvref_t<B>;
  using CE = std::remove_cvref_t<C>;

 public:
  using compute_type = promote_t<typename BE::value_type, typename CE::value_type>;
  using value_type = decltype(std::declval<const Op&>()(std::declval<typename AE::value_type>(),
                                                        std::declval<compute_type>(), std::declval<compute_type>()));
  static constexpr int rank = std::max({AE::rank, BE::rank, CE::rank});

  TernaryExpr(Op op, A a, B b, C c) : op_(op), a_(std::forward<A>(a)), b_(std::forward<B>(b)), c_(std::forward<C>(c)) {}

  Shape<rank> shape() const {
    return broadcast_shapes(broadcast_shapes(a_.shape(), b_.shape(), Op::name), c_.shape(), Op::name);
  }
  const AE& first() const { return a_; }
  const BE& second() const { return b_; }
  const CE& third() const { return c_; }
  const Op& op() const { return op_; }
  auto children() const { return detail::refs(a_, b_, c_); }
  bool same_params(const TernaryExpr& o) const { return detail::bits_equal(op_, o.op_); }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    return TernaryPlan<Op, compute_type, plan_t<AE, RT>, plan_t<BE, RT>, plan_t<CE, RT>>{
        op_, lower_expr(a_, target), lower_expr(b_, target), lower_expr(c_, target)};
  }

 private:
  Op op_;
  A a_;
  B b_;
  C c_;
};

/// The dtype a plain C++ scalar takes when combined with an expression of dtype T: floating tensors keep
/// their type (x * 2.0 stays float32), integer tensors keep theirs for integer scalars and take the
/// scalar's floating type otherwise; a bool tensor takes the scalar's type.
template <class T, class S>
using scalar_dtype_t = std::conditional_t<
    std::is_floating_point_v<T>, T,
    std::conditional_t<
        std::is_floating_point_v<S>, std::conditional_t<std::is_same_v<S, float>, float, double>,
        std::conditional_t<std::is_same_v<T, bool>,
                           std::conditional_t<std::is_same_v<S, bool>, bool,
                                              std::conditional_t<(sizeof(S) > 4), std::int64_t, std::int32_t>>,
                           T>>>;

/// An operand of a binary front-end: an expression, or a C++ arithmetic scalar.
template <class X>
concept operand = expression<X> || std::is_arithmetic_v<std::remove_cvref_t<X>>;

namespace detail {
// Turns a scalar into ScalarExpr of the dtype it takes beside an expression of dtype T; forwards
// expressions unchanged.
template <class T, class X>
decltype(auto) as_operand(X&& x) {
  if constexpr (expression<X>)
    return std::forward<X>(x);
  else
    return ScalarExpr<scalar_dtype_t<T, std::remove_cvref_t<X>>>(
        static_cast<scalar_dtype_t<T, std::remove_cvref_t<X>>>(x));
}
template <class T, class X>
using operand_closure_t = closure_t<decltype(as_operand<T>(std::declval<X>()))>;

template <class X, class Y>
struct partner_dtype {
  using type = expr_value_t<std::conditional_t<expression<X>, X, Y>>;
};
}  // namespace detail

/// op(e) for an expression e.
template <class Op, expression A>
auto make_unary(Op op, A&& a) {
  return UnaryExpr<Op, closure_t<A&&>>(op, std::forward<A>(a));
}

/// op(a, b) for operands of which at least one is an expression.
template <class Op, operand A, operand B>
requires(expression<A> || expression<B>) auto make_binary(Op op, A&& a, B&& b) {
  using T = typename detail::partner_dtype<A, B>::type;
  using CA = detail::operand_closure_t<T, A&&>;
  using CB = detail::operand_closure_t<T, B&&>;
  return BinaryExpr<Op, CA, CB>(op, detail::as_operand<T>(std::forward<A>(a)),
                                detail::as_operand<T>(std::forward<B>(b)));
}

/// op(a, b, c); scalars among b and c adopt the dtype of the other, or of a.
template <class Op, expression A, operand B, operand C>
auto make_ternary(Op op, A&& a, B&& b, C&& c) {
  using T = typename detail::partner_dtype<B, std::conditional_t<expression<C>, C, A>>::type;
  using CB = detail::operand_closure_t<T, B&&>;
  using CC = detail::operand_closure_t<T, C&&>;
  return TernaryExpr<Op, closure_t<A&&>, CB, CC>(op, std::forward<A>(a), detail::as_operand<T>(std::forward<B>(b)),
                                                 detail::as_operand<T>(std::forward<C>(c)));
}

METAGRAD_NAMESPACE_END
