// metagrad/ops/arithmetic.hpp — scalar functors of arithmetic: + - * / (true division), negation,
// fmod, minimum and maximum (NaN-propagating), pow and atan2. Each is METAGRAD_HD and runs unchanged in
// CPU loops and CUDA kernels. Include <metagrad/expr.hpp> instead.
#pragma once

#include <cmath>

#include "../core/config.hpp"
#include "../core/math.hpp"
#include "traits.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace ops {

#define METAGRAD_NO_BOOL_ARITH_(T, what)                                                         \
  static_assert(!is_bool_v<T>, "metagrad: " what                                                 \
                               " is not defined on bool expressions; convert with cast<int>(e) " \
                               "or use logical_and / logical_or")

struct Add {
  static constexpr const char* name = "add";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE T operator()(T a, T b) const {
    METAGRAD_NO_BOOL_ARITH_(T, "+");
    return wrapping<T>::add(a, b);
  }
  template <class G, class A, class B, class Y>
  auto grad_lhs(const G& g, const A&, const B&, const Y&) const {
    return g;
  }
  template <class G, class A, class B, class Y>
  auto grad_rhs(const G& g, const A&, const B&, const Y&) const {
    return g;
  }
};

struct Sub {
  static constexpr const char* name = "sub";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE T operator()(T a, T b) const {
    METAGRAD_NO_BOOL_ARITH_(T, "-");
    return wrapping<T>::sub(a, b);
  }
  template <class G, class A, class B, class Y>
  auto grad_lhs(const G& g, const A&, const B&, const Y&) const {
    return g;
  }
  template <class G, class A, class B, class Y>
  auto grad_rhs(const G& g, const A&, const B&, const Y&) const {
    return -g;
  }
};

struct Mul {
  static constexpr const char* name = "mul";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE T operator()(T a, T b) const {
    METAGRAD_NO_BOOL_ARITH_(T, "*");
    return wrapping<T>::mul(a, b);
  }
  template <class G, class A, class B, class Y>
  auto grad_lhs(const G& g, const A&, const B& b, const Y&) const {
    return g * b;
  }
  template <class G, class A, class B, class Y>
  auto grad_rhs(const G& g, const A& a, const B&, const Y&) const {
    return g * a;
  }
};

/// True division: integers divide as floats (7 / 2 == 3.5), as in NumPy and torch.
struct Div {
  static constexpr const char* name = "div";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE float_of_t<T> operator()(T a, T b) const {
    METAGRAD_NO_BOOL_ARITH_(T, "/");
    using F = float_of_t<T>;
    return static_cast<F>(a) / static_cast<F>(b);
  }
  template <class G, class A, class B, class Y>
  auto grad_lhs(const G& g, const A&, const B& b, const Y&) const {
    return g / b;
  }
  template <class G, class A, class B, class Y>
  auto grad_rhs(const G& g, const A&, const B& b, const Y& y) const {
    return -(g * y / b);
  }
};

struct Neg {
  static constexpr const char* name = "neg";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE T operator()(T a) const {
    METAGRAD_NO_BOOL_ARITH_(T, "unary -");
    return std::is_floating_point_v<T> ? static_cast<T>(-a) : wrapping<T>::neg(a);
  }
  template <class G, class X, class Y>
  auto grad(const G& g, const X&, const Y&) const {
    return -g;
  }
};

/// C fmod: the remainder has the sign of the dividend. Integer fmod by zero gives 0 (NumPy's value)
/// instead of undefined behaviour.
struct Fmod {
  static constexpr const char* name = "fmod";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE T operator()(T a, T b) const {
    METAGRAD_NO_BOOL_ARITH_(T, "fmod");
    if constexpr (std::is_floating_point_v<T>) {
      return std::fmod(a, b);
    } else {
      // a % -1 is 0, but INT_MIN % -1 overflows (and traps on x86): answer it without dividing.
      return b == 0 || b == T(-1) ? T(0) : static_cast<T>(a % b);
    }
  }
  /// fmod(a, b) = a - trunc(a / b) * b, and trunc is piecewise constant.
  template <class G, class A, class B, class Y>
  auto grad_lhs(const G& g, const A&, const B&, const Y&) const {
    return g;
  }
  template <class G, class A, class B, class Y>
  auto grad_rhs(const G& g, const A& a, const B& b, const Y&) const {
    return -(g * trunc(a / b));
  }
};

/// Elementwise minimum; NaN if either operand is NaN (torch.minimum).
struct Minimum {
  static constexpr const char* name = "minimum";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return a != a ? a : (b != b ? b : (b < a ? b : a));
    } else {
      return b < a ? b : a;
    }
  }
  /// Ties split the adjoint evenly between the operands (as the max/min reductions do).
  template <class G, class A, class B, class Y>
  auto grad_lhs(const G& g, const A& a, const B& b, const Y&) const {
    return where(a < b, g, where(a == b, g * 0.5, 0));
  }
  template <class G, class A, class B, class Y>
  auto grad_rhs(const G& g, const A& a, const B& b, const Y&) const {
    return where(b < a, g, where(a == b, g * 0.5, 0));
  }
};

/// Elementwise maximum; NaN if either operand is NaN (torch.maximum).
struct Maximum {
  static constexpr const char* name = "maximum";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return a != a ? a : (b != b ? b : (a < b ? b : a));
    } else {
      return a < b ? b : a;
    }
  }
  /// Ties split the adjoint evenly between the operands.
  template <class G, class A, class B, class Y>
  auto grad_lhs(const G& g, const A& a, const B& b, const Y&) const {
    return where(a > b, g, where(a == b, g * 0.5, 0));
  }
  template <class G, class A, class B, class Y>
  auto grad_rhs(const G& g, const A& a, const B& b, const Y&) const {
    return where(b > a, g, where(a == b, g * 0.5, 0));
  }
};

/// a to the power b, computed in the floating type of T (std::pow semantics for special values).
struct Pow {
  static constexpr const char* name = "pow";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE float_of_t<T> operator()(T a, T b) const {
    using F = float_of_t<T>;
    return math::pow(static_cast<F>(a), static_cast<F>(b));
  }
  template <class G, class A, class B, class Y>
  auto grad_lhs(const G& g, const A& a, const B& b, const Y&) const {
    return g * b * pow(a, b - 1);
  }
  template <class G, class A, class B, class Y>
  auto grad_rhs(const G& g, const A& a, const B&, const Y& y) const {
    return g * y * log(a);
  }
};

/// atan2(y, x): the angle of (x, y) in (-pi, pi].
struct Atan2 {
  static constexpr const char* name = "atan2";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE float_of_t<T> operator()(T y, T x) const {
    using F = float_of_t<T>;
    return math::atan2(static_cast<F>(y), static_cast<F>(x));
  }
  template <class G, class A, class B, class Y>
  auto grad_lhs(const G& g, const A& y, const B& x, const Y&) const {
    return g * x / (square(x) + square(y));
  }
  template <class G, class A, class B, class Y>
  auto grad_rhs(const G& g, const A& y, const B& x, const Y&) const {
    return -(g * y / (square(x) + square(y)));
  }
};

#undef METAGRAD_NO_BOOL_ARITH_

}  // namespace ops
METAGRAD_NAMESPACE_END
