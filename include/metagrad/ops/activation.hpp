// metagrad/ops/activation.hpp — scalar functors of the neural-network activations: sigmoid, relu,
// leaky_relu, elu, selu, gelu (erf and tanh forms), softplus, silu. Integer inputs compute in float.
// Include <metagrad/expr.hpp> instead.
#pragma once

#include "../core/config.hpp"
#include "../core/math.hpp"
#include "traits.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace ops {

METAGRAD_FLOAT_UNARY_OP_(Sigmoid, "sigmoid", math::sigmoid(x))
// x < 0 rather than x > 0 so that NaN passes through, as in torch.
METAGRAD_FLOAT_UNARY_OP_(Relu, "relu", x < F(0) ? F(0) : x)
// SELU constants from Klambauer et al. 2017, as in torch.nn.SELU.
METAGRAD_FLOAT_UNARY_OP_(Selu, "selu", F(1.0507009873554805) * (x > F(0) ? x : F(1.6732632423543772) * math::expm1(x)))
METAGRAD_FLOAT_UNARY_OP_(Softplus, "softplus", math::softplus(x))
METAGRAD_FLOAT_UNARY_OP_(Silu, "silu", x* math::sigmoid(x))

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
};

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
};

}  // namespace ops
METAGRAD_NAMESPACE_END
