// metagrad/ops/rounding.hpp — scalar functors that keep the input's dtype: abs, sign, square, clamp,
// floor, ceil, round (half away from zero), trunc. Include <metagrad/expr.hpp> instead.
#pragma once

#include <cmath>
#include <type_traits>

#include "../core/config.hpp"
#include "traits.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace ops {

struct Abs {
  static constexpr const char* name = "abs";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE T operator()(T a) const {
    if constexpr (std::is_floating_point_v<T>)
      return std::fabs(a);
    else if constexpr (std::is_same_v<T, bool>)
      return a;
    else
      return a < 0 ? wrapping<T>::neg(a) : a;  // abs(INT_MIN) wraps to INT_MIN, as in NumPy
  }
  /// d|x| = sign(x) (0 at 0, the subgradient torch uses).
  template <class G, class X, class Y>
  auto grad(const G& g, const X& x, const Y&) const {
    return g * sign(x);
  }
};

/// -1, 0 or 1 (NaN stays NaN; sign(-0.0) is 0).
struct Sign {
  static constexpr const char* name = "sign";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE T operator()(T a) const {
    if constexpr (std::is_floating_point_v<T>)
      return a > T(0) ? T(1) : (a < T(0) ? T(-1) : a * T(0));  // NaN * 0 is NaN, 0 * 0 is 0
    else if constexpr (std::is_same_v<T, bool>)
      return a;
    else
      return static_cast<T>((a > 0) - (a < 0));
  }
};

struct Square {
  static constexpr const char* name = "square";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE T operator()(T a) const {
    static_assert(!std::is_same_v<T, bool>, "metagrad: square is not defined on bool expressions");
    return wrapping<T>::mul(a, a);
  }
  template <class G, class X, class Y>
  auto grad(const G& g, const X& x, const Y&) const {
    return g * (x * 2);
  }
};

/// min(max(x, lo), hi); NaN passes through.
struct Clamp {
  static constexpr const char* name = "clamp";
  double lo, hi;
  template <class T>
  METAGRAD_HD METAGRAD_INLINE T operator()(T a) const {
    const T l = static_cast<T>(lo), h = static_cast<T>(hi);
    return a < l ? l : (a > h ? h : a);
  }
  /// The adjoint passes where lo <= x <= hi (boundaries included, as in torch).
  template <class G, class X, class Y>
  auto grad(const G& g, const X& x, const Y&) const {
    return where((x >= lo) && (x <= hi), g, 0);
  }
};

#define METAGRAD_ROUNDING_OP_(Name, str, fn)              \
  struct Name {                                           \
    static constexpr const char* name = str;              \
    template <class T>                                    \
    METAGRAD_HD METAGRAD_INLINE T operator()(T a) const { \
      if constexpr (std::is_floating_point_v<T>)          \
        return fn(a);                                     \
      else                                                \
        return a;                                         \
    }                                                     \
  };
METAGRAD_ROUNDING_OP_(Floor, "floor", std::floor)
METAGRAD_ROUNDING_OP_(Ceil, "ceil", std::ceil)
METAGRAD_ROUNDING_OP_(Round, "round", std::round)
METAGRAD_ROUNDING_OP_(Trunc, "trunc", std::trunc)
#undef METAGRAD_ROUNDING_OP_

}  // namespace ops
METAGRAD_NAMESPACE_END
