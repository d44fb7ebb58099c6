// metagrad/nn/init.hpp — parameter initialisers as PyTorch's torch.nn.init defines them (fan computation,
// gains, kaiming/xavier bounds), drawn from metagrad's counter-based generator so a seed reproduces a model
// exactly on any thread count. An `Init` value describes an initialiser for layer specs; the free
// functions fill a tensor in place. Include <metagrad/nn.hpp> instead.
#pragma once

#include <cmath>
#include <string>
#include <utility>

#include "../core/creation.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../expr/random.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace nn {

/// Which fan kaiming initialisers preserve: the forward pass's (fan_in) or the backward pass's (fan_out).
enum class FanMode { fan_in, fan_out };
/// The nonlinearity a gain is computed for (torch.nn.init.calculate_gain).
enum class Nonlinearity { linear, sigmoid, tanh, relu, leaky_relu, selu };

/// torch.nn.init.calculate_gain. `param` is leaky_relu's negative slope.
inline double calculate_gain(Nonlinearity nl, double param = 0.01) {
  switch (nl) {
    case Nonlinearity::linear:
    case Nonlinearity::sigmoid:
      return 1.0;
    case Nonlinearity::tanh:
      return 5.0 / 3.0;
    case Nonlinearity::relu:
      return std::sqrt(2.0);
    case Nonlinearity::leaky_relu:
      return std::sqrt(2.0 / (1.0 + param * param));
    case Nonlinearity::selu:
      return 0.75;
  }
  return 1.0;
}

/// fan_in and fan_out of a weight shaped like PyTorch's: [out, in, *kernel] (linear: [out, in]).
/// @throws error for rank < 2 (fans are undefined for vectors, as in PyTorch).
template <int R>
std::pair<double, double> fans(const Shape<R>& s) {
  if constexpr (R < 2) {
    throw error("init: fan_in/fan_out need a tensor of rank 2 or more; got shape " + to_string(s));
  } else {
    double receptive = 1;
    for (int d = 2; d < R; ++d) receptive *= static_cast<double>(s[d]);
    return {static_cast<double>(s[1]) * receptive, static_cast<double>(s[0]) * receptive};
  }
}

/// Fills t with U[a, b).
template <class T, int R>
void uniform_(Tensor<T, R>& t, double a, double b, Generator& gen = default_generator()) {
  t.assign(RandomExpr<T, R>(t.shape(), gen.next_stream(), RandomKind::uniform, a, b));
}
/// Fills t with N(mean, std^2).
template <class T, int R>
void normal_(Tensor<T, R>& t, double mean, double stddev, Generator& gen = default_generator()) {
  t.assign(RandomExpr<T, R>(t.shape(), gen.next_stream(), RandomKind::normal, mean, stddev));
}
/// Fills t with `value`.
template <class T, int R>
void constant_(Tensor<T, R>& t, double value) {
  t.assign(full(t.shape(), static_cast<T>(value)));
}
template <class T, int R>
void zeros_(Tensor<T, R>& t) {
  constant_(t, 0.0);
}
template <class T, int R>
void ones_(Tensor<T, R>& t) {
  constant_(t, 1.0);
}
/// Glorot uniform: U(-g sqrt(6 / (fan_in + fan_out)), +...).
template <class T, int R>
void xavier_uniform_(Tensor<T, R>& t, double gain = 1.0, Generator& gen = default_generator()) {
  const auto [fi, fo] = fans(t.shape());
  const double bound = gain * std::sqrt(6.0 / (fi + fo));
  uniform_(t, -bound, bound, gen);
}
/// Glorot normal: N(0, g^2 2 / (fan_in + fan_out)).
template <class T, int R>
void xavier_normal_(Tensor<T, R>& t, double gain = 1.0, Generator& gen = default_generator()) {
  const auto [fi, fo] = fans(t.shape());
  normal_(t, 0.0, gain * std::sqrt(2.0 / (fi + fo)), gen);
}
/// He uniform: U(-b, b) with b = gain(nl, a) sqrt(3 / fan).
template <class T, int R>
void kaiming_uniform_(Tensor<T, R>& t, double a = 0.0, FanMode mode = FanMode::fan_in,
                      Nonlinearity nl = Nonlinearity::leaky_relu, Generator& gen = default_generator()) {
  const auto [fi, fo] = fans(t.shape());
  const double bound = calculate_gain(nl, a) * std::sqrt(3.0 / (mode == FanMode::fan_in ? fi : fo));
  uniform_(t, -bound, bound, gen);
}
/// He normal: N(0, (gain(nl, a) / sqrt(fan))^2).
template <class T, int R>
void kaiming_normal_(Tensor<T, R>& t, double a = 0.0, FanMode mode = FanMode::fan_in,
                     Nonlinearity nl = Nonlinearity::leaky_relu, Generator& gen = default_generator()) {
  const auto [fi, fo] = fans(t.shape());
  normal_(t, 0.0, calculate_gain(nl, a) / std::sqrt(mode == FanMode::fan_in ? fi : fo), gen);
}

/// An initialiser as a value, for layer specs: `nn::linear(400, 120).weight_init(nn::Init::xavier_uniform())`.
/// `Init::standard()` means the layer's PyTorch default.
struct Init {
  enum class Kind {
    standard,
    zeros,
    constant,
    uniform,
    normal,
    xavier_uniform,
    xavier_normal,
    kaiming_uniform,
    kaiming_normal
  };
  Kind kind = Kind::standard;
  double a = 0, b = 0;  // constant: a; uniform: [a, b); normal: mean a, std b; xavier: gain a; kaiming: slope a
  FanMode mode = FanMode::fan_in;
  Nonlinearity nonlinearity = Nonlinearity::leaky_relu;

  static Init standard() { return {}; }
  static Init zeros() { return {Kind::zeros}; }
  static Init constant(double v) { return {Kind::constant, v}; }
  static Init uniform(double lo, double hi) { return {Kind::uniform, lo, hi}; }
  static Init normal(double mean, double stddev) { return {Kind::normal, mean, stddev}; }
  static Init xavier_uniform(double gain = 1.0) { return {Kind::xavier_uniform, gain}; }
  static Init xavier_normal(double gain = 1.0) { return {Kind::xavier_normal, gain}; }
  static Init kaiming_uniform(double a = 0.0, FanMode m = FanMode::fan_in, Nonlinearity nl = Nonlinearity::relu) {
    return {Kind::kaiming_uniform, a, 0, m, nl};
  }
  static Init kaiming_normal(double a = 0.0, FanMode m = FanMode::fan_in, Nonlinearity nl = Nonlinearity::relu) {
    return {Kind::kaiming_normal, a, 0, m, nl};
  }

  /// Fills t. @pre kind != standard (layers resolve `standard` to their own default first).
  template <class T, int R>
  void apply(Tensor<T, R>& t, Generator& gen = default_generator()) const {
    switch (kind) {
      case Kind::standard:
        throw error("init: Init::standard() must be resolved by the layer");
      case Kind::zeros:
        return zeros_(t);
      case Kind::constant:
        return constant_(t, a);
      case Kind::uniform:
        return uniform_(t, a, b, gen);
      case Kind::normal:
        return normal_(t, a, b, gen);
      case Kind::xavier_uniform:
        return xavier_uniform_(t, a, gen);
      case Kind::xavier_normal:
        return xavier_normal_(t, a, gen);
      case Kind::kaiming_uniform:
        return kaiming_uniform_(t, a, mode, nonlinearity, gen);
      case Kind::kaiming_normal:
        return kaiming_normal_(t, a, mode, nonlinearity, gen);
    }
  }
};

}  // namespace nn
METAGRAD_NAMESPACE_END
