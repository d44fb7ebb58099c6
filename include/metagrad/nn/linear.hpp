// metagrad/nn/linear.hpp — the fully connected layer, y = x W^T + b with W stored [out, in] as in PyTorch (so
// its state dict keys and shapes match torch.nn.Linear), and activations as layers. Include
// <metagrad/nn.hpp> instead.
#pragma once

#include <cmath>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "../expr/conv_bias.hpp"  // relu(conv2d(x, w, b)): nn::relu() must see the fused overload
#include "../expr/functions.hpp"
#include "../expr/matmul.hpp"
#include "../expr/view.hpp"
#include "init.hpp"
#include "layer_base.hpp"
#include "module.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace nn {

/// Passed to linear()/conv2d() for a layer without a bias.
struct NoBias {};
inline constexpr NoBias no_bias{};

template <class Tag, class T, bool Bias>
class Linear;

/// Description of a Linear layer (see linear()).
template <class T = float, bool Bias = true>
struct LinearSpec {
  index_t in_features, out_features;
  Init weight_init = Init::standard();
  Init bias_init = Init::standard();
  template <class Tag>
  using layer = Linear<Tag, T, Bias>;

  LinearSpec weight(Init i) const {
    LinearSpec s = *this;
    s.weight_init = i;
    return s;
  }
  LinearSpec bias(Init i) const {
    LinearSpec s = *this;
    s.bias_init = i;
    return s;
  }
};

/// y = x W^T + b over the last axis of x (any rank >= 2). W [out, in] and b [out] start as PyTorch's do:
/// U(-1/sqrt(in), 1/sqrt(in)) (kaiming uniform with a = sqrt(5)).
template <class T = float>
LinearSpec<T, true> linear(index_t in_features, index_t out_features) {
  return {in_features, out_features};
}
template <class T = float>
LinearSpec<T, false> linear(index_t in_features, index_t out_features, NoBias) {
  return {in_features, out_features};
}

template <class Tag, class T = float, bool Bias = true>
class Linear : public LayerBase {
 public:
  using weight_type = Param<RoleTag<Tag, role::weight>, T, 2>;
  using bias_type = Param<RoleTag<Tag, role::bias>, T, 1>;

  explicit Linear(const LinearSpec<T, Bias>& s) : spec_(s), weight_("weight"), bias_("bias") {
    if (s.in_features <= 0 || s.out_features <= 0)
      throw error("linear: features must be positive; got in=" + std::to_string(s.in_features) +
                  ", out=" + std::to_string(s.out_features));
    Tensor<T, 2> w({s.out_features, s.in_features});
    if (s.weight_init.kind == Init::Kind::standard)
      kaiming_uniform_(w, std::sqrt(5.0));
    else
      s.weight_init.apply(w);
    weight_.set(w);
    if constexpr (Bias) {
      Tensor<T, 1> b(Shape<1>{{s.out_features}});
      if (s.bias_init.kind == Init::Kind::standard) {
        const double bound = 1.0 / std::sqrt(static_cast<double>(s.in_features));
        uniform_(b, -bound, bound);
      } else {
        s.bias_init.apply(b);
      }
      bias_.set(b);
    }
  }
  Linear(index_t in_features, index_t out_features) : Linear(LinearSpec<T, Bias>{in_features, out_features}) {}

  template <class X>
  auto operator()(X&& x) const {
    static_assert(std::remove_cvref_t<X>::rank >= 2,
                  "metagrad: nn::Linear needs an input of rank 2 or more ([batch, features]); unsqueeze a vector");
    if constexpr (Bias)
      return matmul(std::forward<X>(x), transpose(weight_, 0, 1)) + bias_;
    else
      return matmul(std::forward<X>(x), transpose(weight_, 0, 1));
  }

  const weight_type& weight() const { return weight_; }
  const bias_type& bias() const {
    static_assert(Bias, "metagrad: this Linear layer has no bias");
    return bias_;
  }
  auto params() const {
    if constexpr (Bias)
      return std::make_tuple(weight_, bias_);
    else
      return std::make_tuple(weight_);
  }
  void collect_state(std::vector<StateEntry>& out) const {
    out.push_back(state_entry(weight_.name(), weight_.value(), true));
    if constexpr (Bias) out.push_back(state_entry(bias_.name(), bias_.value(), true));
  }
  void set_prefix(const std::string& p) { prefix_params(params(), p); }
  std::string describe() const {
    return "Linear(in_features=" + std::to_string(spec_.in_features) +
           ", out_features=" + std::to_string(spec_.out_features) + ", bias=" + (Bias ? "true" : "false") + ")";
  }

 private:
  LinearSpec<T, Bias> spec_;
  weight_type weight_;
  bias_type bias_;
};

// Activations as layers (specs and layers at once: they own nothing).
#define METAGRAD_ACTIVATION_LAYER_(fname, label)                                       \
  inline auto fname() {                                                                \
    auto f = [](auto&& x) { return ::metagrad::fname(std::forward<decltype(x)>(x)); }; \
    return Lambda<decltype(f)>(label, f);                                              \
  }
METAGRAD_ACTIVATION_LAYER_(relu, "ReLU()")
METAGRAD_ACTIVATION_LAYER_(tanh, "Tanh()")
METAGRAD_ACTIVATION_LAYER_(sigmoid, "Sigmoid()")
METAGRAD_ACTIVATION_LAYER_(silu, "SiLU()")
METAGRAD_ACTIVATION_LAYER_(softplus, "Softplus()")
METAGRAD_ACTIVATION_LAYER_(selu, "SELU()")
#undef METAGRAD_ACTIVATION_LAYER_
inline auto gelu(bool approximate_tanh = false) {
  auto f = [approximate_tanh](auto&& x) { return ::metagrad::gelu(std::forward<decltype(x)>(x), approximate_tanh); };
  return Lambda<decltype(f)>(approximate_tanh ? "GELU(approximate='tanh')" : "GELU()", f);
}
inline auto leaky_relu(double slope = 0.01) {
  auto f = [slope](auto&& x) { return ::metagrad::leaky_relu(std::forward<decltype(x)>(x), slope); };
  return Lambda<decltype(f)>("LeakyReLU(negative_slope=" + std::to_string(slope) + ")", f);
}
inline auto elu(double alpha = 1.0) {
  auto f = [alpha](auto&& x) { return ::metagrad::elu(std::forward<decltype(x)>(x), alpha); };
  return Lambda<decltype(f)>("ELU(alpha=" + std::to_string(alpha) + ")", f);
}

}  // namespace nn
METAGRAD_NAMESPACE_END
