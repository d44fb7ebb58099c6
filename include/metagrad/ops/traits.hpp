// metagrad/ops/traits.hpp — type helpers shared by the scalar functors of ops/. Include <metagrad/expr.hpp>.
#pragma once

#include <type_traits>

#include "../core/config.hpp"
#include "../core/dtype.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace ops {

/// The floating type a mathematical function of T computes in: double stays double, everything else
/// (float, integers, bool) computes in float, as torch does for integer tensors.
template <class T>
using float_of_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T>
inline constexpr bool is_bool_v = std::is_same_v<T, bool>;

}  // namespace ops

// A functor whose argument converts to float_of_t<T> first, named `x` in `body` (with F its type).
// Used by the families of ops/ that compute in floating point; undefined by the umbrella header.
#define METAGRAD_FLOAT_UNARY_OP_(Name, str, body)                       \
  struct Name {                                                       \
    static constexpr const char* name = str;                          \
    template <class T>                                                \
    METAGRAD_HD METAGRAD_INLINE float_of_t<T> operator()(T a) const { \
      using F = float_of_t<T>;                                        \
      const F x = static_cast<F>(a);                                  \
      return body;                                                    \
    }                                                                 \
  };
METAGRAD_NAMESPACE_END
