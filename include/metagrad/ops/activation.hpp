// metagrad/ops/activation.hpp — scalar functors of the neural-network activations: sigmoid, relu,
// leaky_relu, elu, selu, gelu (erf and tanh forms), softplus, silu. Integer inputs compute in float.
// Include <metagrad/expr.hpp> instead.
#pragma once

#include "../core/config.hpp"
#include "../core/math.hpp"
#include "traits.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace ops {

METAGRAD_FLOAT_UNARY_OP_(Sigmoid, "sigmoid", math::sigmoid(x), g* y*(1 - y))
// x < 0 rather than x > 0 so that NaN passes through, as in torch.
METAGRAD_FLOAT_UNARY_OP_(Relu, "relu", x < F(0) ? F(0) : x, where(x > 0, g, 0))
// SELU constants from Klambauer et al. 2017, as in torch.nn.SELU.
METAGRAD_FLOAT_UNARY_OP_(Selu, "selu", F(1.0507009873554805) * (x > F(0) ? x : F(1.6732632423543772) * math::expm1(x)),
                         where(x > 0, g * 1.0507009873554805, g * 1.7580993408473766 * exp(x)))
METAGRAD_FLOAT_UNARY_OP_(Softplus, "softplus", math::softplus(x), g* sigmoid(x))
METAGRAD_FLOAT_UNARY_OP_(Silu, "silu", x* math::sigmoid(x), g*(sigmoid(x) * (1 + x * (1 - sigmoid(x)))))

/// x for x >= 0, slope * x otherwise.
struct LeakyRelu {
  static constexpr const char* name = "leaky_relu";
  double slope;
  template <class T>
  METAGRAD_HD METAGRAD_INLINE float_of_t<T> operator()(T a) const {
    using F = float_of_t<T>;
    const F x = static_cast<F>(a);
    return x < F(0) ? x * static_cast<F>(slope) : x;
  }
  template <class G, class X, class Y>
  auto grad(const G& g, const X& x, const Y&) const {
    return where(x < 0, g * slope, g);
  }
};

/// GELU, exact (erf) or with torch's tanh approximation. The flag is loop-invariant, so the compiler
/// unswitches the loop on it.
struct Gelu {
  static constexpr const char* name = "gelu";
  bool approximate_tanh;
  template <class T>
  METAGRAD_HD METAGRAD_INLINE float_of_t<T> operator()(T a) const {
    using F = float_of_t<T>;
    const F x = static_cast<F>(a);
    return approximate_tanh ? math::gelu_tanh(x) : math::gelu_erf(x);
  }
  template <class G, class X, class Y>
  auto grad(const G& g, const X& x, const Y&) const;
};

/// The derivative of GELU as one fused functor (its form depends on the run-time flag, so it cannot be
/// written as one expression type); it has its own derivative, so gelu is twice differentiable.
struct GeluGrad {
  static constexpr const char* name = "gelu_grad";
  bool approximate_tanh;
  // sqrt(2/pi) and the cubic coefficient of torch's tanh form.
  static constexpr double k = 0.7978845608028654, c = 0.044715;
  template <class T>
  METAGRAD_HD METAGRAD_INLINE float_of_t<T> operator()(T a) const {
    using F = float_of_t<T>;
    const F x = static_cast<F>(a);
    if (approximate_tanh) {
      const F t = math::tanh(F(k) * (x + F(c) * x * x * x));
      return F(0.5) * (F(1) + t) + F(0.5) * x * (F(1) - t * t) * F(k) * (F(1) + F(3 * c) * x * x);
    }
    // Phi(x) + x phi(x)
    return F(0.5) * (F(1) + math::erf(x * F(0.7071067811865476))) +
           x * F(0.3989422804014327) * math::exp(F(-0.5) * x * x);
  }
  template <class G, class X, class Y>
  auto grad(const G& g, const X& x, const Y&) const;
};

/// The second derivative of GELU (the derivative of GeluGrad).
struct GeluGrad2 {
  static constexpr const char* name = "gelu_grad2";
  bool approximate_tanh;
  template <class T>
  METAGRAD_HD METAGRAD_INLINE float_of_t<T> operator()(T a) const {
    using F = float_of_t<T>;
    const F x = static_cast<F>(a);
    if (approximate_tanh) {
      const F k = F(GeluGrad::k), c = F(GeluGrad::c);
      const F t = math::tanh(k * (x + c * x * x * x));
      const F u1 = k * (F(1) + F(3) * c * x * x), u2 = F(6) * k * c * x;
      return (F(1) - t * t) * u1 + F(0.5) * x * (F(1) - t * t) * (u2 - F(2) * t * u1 * u1);
    }
    // phi(x) (2 - x^2)
    return F(0.3989422804014327) * math::exp(F(-0.5) * x * x) * (F(2) - x * x);
  }
};

template <class G, class X, class Y>
auto Gelu::grad(const G& g, const X& x, const Y&) const {
  return g * make_unary(GeluGrad{approximate_tanh}, x);
}
template <class G, class X, class Y>
auto GeluGrad::grad(const G& g, const X& x, const Y&) const {
  return g * make_unary(GeluGrad2{approximate_tanh}, x);
}

/// x for x > 0, alpha * (exp(x) - 1) otherwise.
struct Elu {
  static constexpr const char* name = "elu";
  double alpha;
  template <class T>
  METAGRAD_HD METAGRAD_INLINE float_of_t<T> operator()(T a) const {
    using F = float_of_t<T>;
    const F x = static_cast<F>(a);
    return x > F(0) ? x : static_cast<F>(alpha) * math::expm1(x);
  }
  template <class G, class X, class Y>
  auto grad(const G& g, const X& x, const Y&) const {
    return where(x > 0, g, g * alpha * exp(x));
  }
};

}  // namespace ops
METAGRAD_NAMESPACE_END
