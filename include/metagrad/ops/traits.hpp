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

/// Integer arithmetic that wraps around on overflow (two's complement, as NumPy and torch behave) instead
/// of the undefined behaviour of signed overflow: the operation runs on the unsigned type, and C++20
/// defines the conversion back. Floating-point values pass through unchanged.
template <class T>
struct wrapping {
  using U = typename std::conditional_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, std::make_unsigned<T>,
                                        std::type_identity<T>>::type;
  METAGRAD_HD METAGRAD_INLINE static T add(T a, T b) { return static_cast<T>(static_cast<U>(a) + static_cast<U>(b)); }
  METAGRAD_HD METAGRAD_INLINE static T sub(T a, T b) { return static_cast<T>(static_cast<U>(a) - static_cast<U>(b)); }
  METAGRAD_HD METAGRAD_INLINE static T mul(T a, T b) { return static_cast<T>(static_cast<U>(a) * static_cast<U>(b)); }
  METAGRAD_HD METAGRAD_INLINE static T neg(T a) { return static_cast<T>(U(0) - static_cast<U>(a)); }
};

}  // namespace ops

// A functor whose argument converts to float_of_t<T> first, named `x` in `body` (with F its type), and its
// derivative rule `grad_body`: an expression in the adjoint g, the operand x and the node's value y (all
// metagrad expressions; the functions it names are found by argument-dependent lookup when autodiff
// instantiates it, so ops/ needs nothing from the layers above). Used by the families of ops/ that compute
// in floating point; undefined by the umbrella header.
#define METAGRAD_FLOAT_UNARY_OP_(Name, str, body, grad_body)          \
  struct Name {                                                       \
    static constexpr const char* name = str;                          \
    template <class T>                                                \
    METAGRAD_HD METAGRAD_INLINE float_of_t<T> operator()(T a) const { \
      using F = float_of_t<T>;                                        \
      const F x = static_cast<F>(a);                                  \
      return body;                                                    \
    }                                                                 \
    template <class G, class X, class Y>                              \
    auto grad(const G& g, const X& x, const Y& y) const {             \
      (void)x;                                                        \
      (void)y;                                                        \
      return grad_body;                                               \
    }                                                                 \
  };
METAGRAD_NAMESPACE_END
