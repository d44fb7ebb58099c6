// metagrad/ops/unary_math.hpp — scalar functors of the mathematical functions: exponentials and
// logarithms, powers and roots, trigonometric and hyperbolic functions, erf. Float versions are the
// branch-free, vectorisable approximations of core/math.hpp; integer inputs compute in float.
// Include <metagrad/expr.hpp> instead.
#pragma once

#include <cmath>

#include "../core/config.hpp"
#include "../core/math.hpp"
#include "traits.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace ops {

METAGRAD_FLOAT_UNARY_OP_(Exp, "exp", math::exp(x), g* y)
METAGRAD_FLOAT_UNARY_OP_(Exp2, "exp2", math::exp2(x), g* y * 0.6931471805599453)
METAGRAD_FLOAT_UNARY_OP_(Expm1, "expm1", math::expm1(x), g*(y + 1))
METAGRAD_FLOAT_UNARY_OP_(Log, "log", math::log(x), g / x)
METAGRAD_FLOAT_UNARY_OP_(Log2, "log2", math::log2(x), g / (x * 0.6931471805599453))
METAGRAD_FLOAT_UNARY_OP_(Log1p, "log1p", math::log1p(x), g / (x + 1))
// sqrt is one instruction; it vectorises once errno is off (the CMake target passes -fno-math-errno).
METAGRAD_FLOAT_UNARY_OP_(Sqrt, "sqrt", std::sqrt(x), g / (y * 2))
METAGRAD_FLOAT_UNARY_OP_(Rsqrt, "rsqrt", F(1) / std::sqrt(x), g*(-0.5) * y * y * y)
METAGRAD_FLOAT_UNARY_OP_(Sin, "sin", math::sin(x), g* cos(x))
METAGRAD_FLOAT_UNARY_OP_(Cos, "cos", math::cos(x), -(g* sin(x)))
METAGRAD_FLOAT_UNARY_OP_(Tan, "tan", math::tan(x), g*(square(y) + 1))
METAGRAD_FLOAT_UNARY_OP_(Asin, "asin", math::asin(x), g* rsqrt(1 - square(x)))
METAGRAD_FLOAT_UNARY_OP_(Acos, "acos", math::acos(x), -(g* rsqrt(1 - square(x))))
METAGRAD_FLOAT_UNARY_OP_(Atan, "atan", math::atan(x), g / (square(x) + 1))
METAGRAD_FLOAT_UNARY_OP_(Sinh, "sinh", math::sinh(x), g* cosh(x))
METAGRAD_FLOAT_UNARY_OP_(Cosh, "cosh", math::cosh(x), g* sinh(x))
METAGRAD_FLOAT_UNARY_OP_(Tanh, "tanh", math::tanh(x), g*(1 - square(y)))
METAGRAD_FLOAT_UNARY_OP_(Erf, "erf", math::erf(x), g * 1.1283791670955126 * exp(-square(x)))

/// x raised to a fixed exponent (the common pow(x, 2.0) etc.); small integer exponents multiply.
struct PowScalar {
  static constexpr const char* name = "pow";
  double p;
  template <class T>
  METAGRAD_HD METAGRAD_INLINE float_of_t<T> operator()(T a) const {
    using F = float_of_t<T>;
    const F x = static_cast<F>(a);
    // pow(-inf, 0.5) is +inf and pow(-0, 0.5) is +0 (C pow), where sqrt gives NaN and -0.
    const F root = x == -(F(1) / F(0)) ? F(1) / F(0) : std::sqrt(x) + F(0);
    return p == 2.0 ? x * x : (p == 1.0 ? x : (p == 0.5 ? root : math::pow(x, static_cast<F>(p))));
  }
  /// d/dx x^p = p x^(p-1); the exponent of p = 0 stays 0 so that the derivative is 0, not 0 * x^-1.
  template <class G, class X, class Y>
  auto grad(const G& g, const X& x, const Y&) const {
    return g * (pow(x, p == 0.0 ? 0.0 : p - 1.0) * p);
  }
};

}  // namespace ops
METAGRAD_NAMESPACE_END
