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
};

struct Sub {
  static constexpr const char* name = "sub";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE T operator()(T a, T b) const {
    METAGRAD_NO_BOOL_ARITH_(T, "-");
    return wrapping<T>::sub(a, b);
  }
};

struct Mul {
  static constexpr const char* name = "mul";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE T operator()(T a, T b) const {
    METAGRAD_NO_BOOL_ARITH_(T, "*");
    return wrapping<T>::mul(a, b);
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
};

struct Neg {
  static constexpr const char* name = "neg";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE T operator()(T a) const {
    METAGRAD_NO_BOOL_ARITH_(T, "unary -");
    return std::is_floating_point_v<T> ? static_cast<T>(-a) : wrapping<T>::neg(a);
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
};

/// a to the power b, computed in the floating type of T (std::pow semantics for special values).
struct Pow {
  static constexpr const char* name = "pow";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE float_of_t<T> operator()(T a, T b) const {
    using F = float_of_t<T>;
    return math::pow(static_cast<F>(a), static_cast<F>(b));
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
};

#undef METAGRAD_NO_BOOL_ARITH_

}  // namespace ops
METAGRAD_NAMESPACE_END
