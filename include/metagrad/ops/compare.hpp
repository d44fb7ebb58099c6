// metagrad/ops/compare.hpp — scalar functors of comparisons and logic (all yield bool), and the select
// of where(c, a, b). Include <metagrad/expr.hpp> instead.
#pragma once

#include <type_traits>

#include "../core/config.hpp"
#include "traits.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace ops {

#define METAGRAD_COMPARE_OP_(Name, str, expr)                     \
  struct Name {                                                   \
    static constexpr const char* name = str;                      \
    template <class T>                                            \
    METAGRAD_HD METAGRAD_INLINE bool operator()(T a, T b) const { \
      return expr;                                                \
    }                                                             \
  };
// IEEE semantics: every comparison with NaN is false except !=.
METAGRAD_COMPARE_OP_(Equal, "eq", a == b)
METAGRAD_COMPARE_OP_(NotEqual, "ne", a != b)
METAGRAD_COMPARE_OP_(Less, "lt", a < b)
METAGRAD_COMPARE_OP_(LessEqual, "le", a <= b)
METAGRAD_COMPARE_OP_(Greater, "gt", a > b)
METAGRAD_COMPARE_OP_(GreaterEqual, "ge", a >= b)
// Logical operators read any dtype as "non-zero is true".
METAGRAD_COMPARE_OP_(LogicalAnd, "logical_and", (a != T(0)) && (b != T(0)))
METAGRAD_COMPARE_OP_(LogicalOr, "logical_or", (a != T(0)) || (b != T(0)))
METAGRAD_COMPARE_OP_(LogicalXor, "logical_xor", (a != T(0)) != (b != T(0)))
#undef METAGRAD_COMPARE_OP_

struct LogicalNot {
  static constexpr const char* name = "logical_not";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE bool operator()(T a) const {
    return a == T(0);
  }
};

/// where(c, a, b): a where c is true, else b. Both branches are computed (they are elementwise and cheap);
/// the select itself is branch-free so the loop vectorises.
struct Where {
  static constexpr const char* name = "where";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE T operator()(bool c, T a, T b) const {
    return c ? a : b;
  }
  template <class G, class C, class A, class B, class Y>
  auto grad_second(const G& g, const C& c, const A&, const B&, const Y&) const {
    return where(c, g, 0);
  }
  template <class G, class C, class A, class B, class Y>
  auto grad_third(const G& g, const C& c, const A&, const B&, const Y&) const {
    return where(c, 0, g);
  }
};

/// Tests for special floating values (false for integers).
struct IsNan {
  static constexpr const char* name = "isnan";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE bool operator()(T a) const {
    return a != a;
  }
};
struct IsInf {
  static constexpr const char* name = "isinf";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE bool operator()(T a) const {
    if constexpr (std::is_floating_point_v<T>) {
      const T inf = T(1) / T(0);
      return a == inf || a == -inf;
    } else {
      return false;
    }
  }
};
struct IsFinite {
  static constexpr const char* name = "isfinite";
  template <class T>
  METAGRAD_HD METAGRAD_INLINE bool operator()(T a) const {
    if constexpr (std::is_floating_point_v<T>) {
      return a - a == T(0);  // inf - inf and NaN - NaN are NaN
    } else {
      return true;
    }
  }
};

/// Conversion to U with C++ rules (float to int truncates; to bool tests != 0). Float to integer
/// saturates at U's limits and maps NaN to 0, where a plain C++ conversion is undefined behaviour.
template <class U>
struct Cast {
  static constexpr const char* name = "cast";
  using target_type = U;
  template <class T>
  METAGRAD_HD METAGRAD_INLINE U operator()(T a) const {
    if constexpr (std::is_same_v<U, bool>) {
      return a != T(0);
    } else if constexpr (std::is_floating_point_v<T> && std::is_integral_v<U>) {
      // 2^(digits) is exactly representable in T; U's max may not be (int64 max in float).
      constexpr T hi = static_cast<T>(static_cast<U>(1) << (sizeof(U) * 8 - 2)) * T(2);
      constexpr U umax = static_cast<U>(~static_cast<std::make_unsigned_t<U>>(0) >> 1);
      constexpr U umin = static_cast<U>(-umax - 1);
      return a != a ? U(0) : (a >= hi ? umax : (a < -hi ? umin : static_cast<U>(a)));
    } else {
      return static_cast<U>(a);
    }
  }
};

}  // namespace ops
METAGRAD_NAMESPACE_END
