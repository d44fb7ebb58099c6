// metagrad/expr/functions.hpp — the elementwise front-ends users call: arithmetic and comparison
// operators, where, cast, and the mathematical and activation functions. They only build nodes; nothing
// is computed until the expression is assigned or evaluated. Include <metagrad/expr.hpp> instead.
#pragma once

#include <utility>

#include "../ops/activation.hpp"
#include "../ops/arithmetic.hpp"
#include "../ops/compare.hpp"
#include "../ops/rounding.hpp"
#include "../ops/unary_math.hpp"
#include "elementwise.hpp"

METAGRAD_NAMESPACE_BEGIN

// --- operators ----------------------------------------------------------------------------------

#define METAGRAD_BINARY_OPERATOR_(sym, Op)                                   \
  template <operand A, operand B>                                            \
  requires(expression<A> || expression<B>) auto operator sym(A&& a, B&& b) { \
    return make_binary(ops::Op{}, std::forward<A>(a), std::forward<B>(b));   \
  }
METAGRAD_BINARY_OPERATOR_(+, Add)
METAGRAD_BINARY_OPERATOR_(-, Sub)
METAGRAD_BINARY_OPERATOR_(*, Mul)
METAGRAD_BINARY_OPERATOR_(/, Div)
METAGRAD_BINARY_OPERATOR_(==, Equal)
METAGRAD_BINARY_OPERATOR_(!=, NotEqual)
METAGRAD_BINARY_OPERATOR_(<, Less)
METAGRAD_BINARY_OPERATOR_(<=, LessEqual)
METAGRAD_BINARY_OPERATOR_(>, Greater)
METAGRAD_BINARY_OPERATOR_(>=, GreaterEqual)
METAGRAD_BINARY_OPERATOR_(&&, LogicalAnd)
METAGRAD_BINARY_OPERATOR_(||, LogicalOr)
#undef METAGRAD_BINARY_OPERATOR_

template <expression A>
auto operator-(A&& a) {
  return make_unary(ops::Neg{}, std::forward<A>(a));
}
template <expression A>
auto operator+(A&& a) {
  return std::forward<A>(a);
}
template <expression A>
auto operator!(A&& a) {
  return make_unary(ops::LogicalNot{}, std::forward<A>(a));
}

// --- named binary functions ---------------------------------------------------------------------

#define METAGRAD_BINARY_FUNCTION_(name, Op)                                \
  template <operand A, operand B>                                          \
  requires(expression<A> || expression<B>) auto name(A&& a, B&& b) {       \
    return make_binary(ops::Op{}, std::forward<A>(a), std::forward<B>(b)); \
  }
/// Elementwise minimum / maximum, NaN-propagating (torch.minimum / torch.maximum).
METAGRAD_BINARY_FUNCTION_(minimum, Minimum)
METAGRAD_BINARY_FUNCTION_(maximum, Maximum)
/// C fmod: remainder with the sign of the dividend.
METAGRAD_BINARY_FUNCTION_(fmod, Fmod)
/// atan2(y, x) in (-pi, pi].
METAGRAD_BINARY_FUNCTION_(atan2, Atan2)
METAGRAD_BINARY_FUNCTION_(logical_and, LogicalAnd)
METAGRAD_BINARY_FUNCTION_(logical_or, LogicalOr)
METAGRAD_BINARY_FUNCTION_(logical_xor, LogicalXor)
#undef METAGRAD_BINARY_FUNCTION_

/// a to the power b elementwise (b may be an expression or a scalar).
template <operand A, operand B>
requires(expression<A> || expression<B>) auto pow(A&& a, B&& b) {
  if constexpr (expression<A> && std::is_arithmetic_v<std::remove_cvref_t<B>>)
    return make_unary(ops::PowScalar{static_cast<double>(b)}, std::forward<A>(a));
  else
    return make_binary(ops::Pow{}, std::forward<A>(a), std::forward<B>(b));
}

// --- unary functions ----------------------------------------------------------------------------

#define METAGRAD_UNARY_FUNCTION_(name, Op)            \
  template <expression A>                             \
  auto name(A&& a) {                                  \
    return make_unary(ops::Op{}, std::forward<A>(a)); \
  }
METAGRAD_UNARY_FUNCTION_(exp, Exp)
METAGRAD_UNARY_FUNCTION_(exp2, Exp2)
METAGRAD_UNARY_FUNCTION_(expm1, Expm1)
METAGRAD_UNARY_FUNCTION_(log, Log)
METAGRAD_UNARY_FUNCTION_(log2, Log2)
METAGRAD_UNARY_FUNCTION_(log1p, Log1p)
METAGRAD_UNARY_FUNCTION_(sqrt, Sqrt)
METAGRAD_UNARY_FUNCTION_(rsqrt, Rsqrt)
METAGRAD_UNARY_FUNCTION_(square, Square)
METAGRAD_UNARY_FUNCTION_(abs, Abs)
METAGRAD_UNARY_FUNCTION_(sign, Sign)
METAGRAD_UNARY_FUNCTION_(sin, Sin)
METAGRAD_UNARY_FUNCTION_(cos, Cos)
METAGRAD_UNARY_FUNCTION_(tan, Tan)
METAGRAD_UNARY_FUNCTION_(asin, Asin)
METAGRAD_UNARY_FUNCTION_(acos, Acos)
METAGRAD_UNARY_FUNCTION_(atan, Atan)
METAGRAD_UNARY_FUNCTION_(sinh, Sinh)
METAGRAD_UNARY_FUNCTION_(cosh, Cosh)
METAGRAD_UNARY_FUNCTION_(tanh, Tanh)
METAGRAD_UNARY_FUNCTION_(erf, Erf)
METAGRAD_UNARY_FUNCTION_(sigmoid, Sigmoid)
METAGRAD_UNARY_FUNCTION_(relu, Relu)
METAGRAD_UNARY_FUNCTION_(selu, Selu)
METAGRAD_UNARY_FUNCTION_(softplus, Softplus)
METAGRAD_UNARY_FUNCTION_(silu, Silu)
METAGRAD_UNARY_FUNCTION_(floor, Floor)
METAGRAD_UNARY_FUNCTION_(ceil, Ceil)
METAGRAD_UNARY_FUNCTION_(round, Round)
METAGRAD_UNARY_FUNCTION_(trunc, Trunc)
METAGRAD_UNARY_FUNCTION_(logical_not, LogicalNot)
METAGRAD_UNARY_FUNCTION_(isnan, IsNan)
METAGRAD_UNARY_FUNCTION_(isinf, IsInf)
METAGRAD_UNARY_FUNCTION_(isfinite, IsFinite)
#undef METAGRAD_UNARY_FUNCTION_

/// GELU. `approximate_tanh = false` is the exact erf form, true the tanh approximation (torch's
/// approximate="tanh").
template <expression A>
auto gelu(A&& a, bool approximate_tanh = false) {
  return make_unary(ops::Gelu{approximate_tanh}, std::forward<A>(a));
}
/// x >= 0 ? x : slope * x.
template <expression A>
auto leaky_relu(A&& a, double slope = 0.01) {
  return make_unary(ops::LeakyRelu{slope}, std::forward<A>(a));
}
/// x > 0 ? x : alpha * (exp(x) - 1).
template <expression A>
auto elu(A&& a, double alpha = 1.0) {
  return make_unary(ops::Elu{alpha}, std::forward<A>(a));
}
/// min(max(x, lo), hi) in the expression's dtype; NaN passes through.
template <expression A>
auto clamp(A&& a, double lo, double hi) {
  return make_unary(ops::Clamp{lo, hi}, std::forward<A>(a));
}

/// Converts elementwise to dtype U (float to integer truncates toward zero and saturates; NaN gives 0).
template <dtype U, expression A>
auto cast(A&& a) {
  return make_unary(ops::Cast<U>{}, std::forward<A>(a));
}

/// c ? a : b elementwise with broadcasting. @pre c is a bool expression (compile-time check).
template <expression Cond, operand A, operand B>
auto where(Cond&& c, A&& a, B&& b) {
  static_assert(std::is_same_v<expr_value_t<Cond>, bool>,
                "metagrad: where(c, a, b) needs a bool condition; compare (x > 0) or cast<bool>(c) first");
  static_assert(expression<A> || expression<B>,
                "metagrad: where(c, a, b) needs at least one of a and b to be an expression");
  return make_ternary(ops::Where{}, std::forward<Cond>(c), std::forward<A>(a), std::forward<B>(b));
}

METAGRAD_NAMESPACE_END
