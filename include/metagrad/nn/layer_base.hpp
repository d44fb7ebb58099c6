// metagrad/nn/layer_base.hpp — the defaults of the layer protocol (nn/module.hpp) shared by every layer: the
// train/eval flag, and no parameters, state or updates for stateless layers (activations, pooling,
// flatten). Layers hide these members with their own where they have something to say. Include
// <metagrad/nn.hpp> instead.
#pragma once

#include <string>
#include <tuple>
#include <vector>

#include "module.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace nn {

class LayerBase {
 public:
  /// Train mode (the default) or eval mode for the expressions built from now on: dropout is the identity
  /// in eval mode and batch norm uses its running statistics. Expressions already built keep their mode.
  void train(bool on = true) { training_ = on; }
  void eval() { training_ = false; }
  bool training() const { return training_; }

  auto params() const { return std::tuple<>(); }
  void collect_state(std::vector<StateEntry>&) const {}
  void set_prefix(const std::string&) {}

 protected:
  bool training_ = true;
};

/// A layer that applies an elementwise function (relu, tanh, ...): its spec is the layer.
template <class F>
class Lambda : public LayerBase {
 public:
  template <class Tag>
  using layer = Lambda;

  Lambda(std::string name, F f) : name_(std::move(name)), f_(std::move(f)) {}
  template <class X>
  auto operator()(X&& x) const {
    return f_(std::forward<X>(x));
  }
  std::string describe() const { return name_; }

 private:
  std::string name_;
  F f_;
};

}  // namespace nn
METAGRAD_NAMESPACE_END
