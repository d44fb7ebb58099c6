// metagrad/nn/module.hpp — what every layer shares: the tags that give each parameter its own identity in
// the graph, the named tensors of a model's state (parameters and buffers, keyed like PyTorch's state_dict),
// and the layer protocol that sequential(), the optimisers, state dicts and the trainer rely on.
// Include <metagrad/nn.hpp> instead.
//
// A layer L is a callable that maps expressions to expressions and owns its Params:
//   template <class X> auto operator()(X&& x) const   the output expression (built in the current mode)
//   auto params() const                               a std::tuple of its Param handles (shared state)
//   void collect_state(std::vector<StateEntry>&) const   its parameters and buffers, named
//   void set_prefix(const std::string&)               renames its parameters: prefix + "weight", ...
//   void train(bool) / bool training() const          train or eval mode for the expressions built next
//   std::string describe() const                      "Linear(in=400, out=120, bias=true)"
// and optionally
//   template <class X> auto updates(const X& x) const a tuple of StateUpdate: buffers to overwrite after a
//                                                     training step (batch norm's running statistics)
//   void to(Device)                                   moves its parameters and buffers to a device (layers
//                                                     without it have their params() moved by to_device)
//   template <class X> auto forward(X&& x, TrainMode / EvalMode) const
//                                                     the output in that mode alone (layers whose two modes
//                                                     differ in form: batch norm, dropout, containers)
// A layer's parameters are tagged by the layer's Tag, so two layers never share a parameter by accident;
// a *spec* (nn::linear(400, 120)) is the untagged description, made into a layer by sequential() or make<Tag>.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/device.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "../expr/leaf.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace nn {

/// Tag of child I of the layer tagged Tag (sequential's children).
template <class Tag, int I>
struct ChildTag {};
/// Tag of the parameter or buffer playing `Role` in the layer tagged Tag.
template <class Tag, class Role>
struct RoleTag {};
namespace role {
struct weight {};
struct bias {};
}  // namespace role

/// One named tensor of a model's state: a parameter (trainable) or a buffer (running statistics). `data`
/// points at `numel` contiguous elements of `dtype` in the memory of `device` (state dicts and checkpoints
/// copy device entries through the host), valid while the model is alive, not re-shaped and not moved.
struct StateEntry {
  std::string name;
  DType dtype;
  std::vector<index_t> shape;
  void* data;
  bool trainable;
  Device device = Device::cpu();

  index_t numel() const {
    index_t n = 1;
    for (index_t e : shape) n *= e;
    return n;
  }
};

namespace detail {
template <int R>
std::vector<index_t> shape_vector(const Shape<R>& s) {
  std::vector<index_t> v(R);
  for (int d = 0; d < R; ++d) v[d] = s[d];
  return v;
}
}  // namespace detail

/// The state entry of a tensor (loading writes through it), on the tensor's device. @pre t is contiguous
/// (layers allocate their tensors themselves).
template <class T, int R>
StateEntry state_entry(std::string name, const Tensor<T, R>& t, bool trainable) {
  if (!is_contiguous(t.shape(), t.strides()))
    throw error("state of '" + name + "': the tensor is not contiguous; set() a contiguous tensor");
  // A Tensor is a handle: its elements stay writable through a const handle's storage (state loading).
  return {std::move(name),          dtype_of<T>, detail::shape_vector(t.shape()),
          const_cast<T*>(t.data()), trainable,   t.device()};
}

/// Calls f(param) for every Param handle in a tuple.
template <class Tuple, class F>
void for_each_param(const Tuple& params, F&& f) {
  std::apply([&](const auto&... p) { (f(p), ...); }, params);
}

/// Renames every parameter of `params` to prefix + its role name (the last component of its name).
template <class Tuple>
void prefix_params(const Tuple& params, const std::string& prefix) {
  for_each_param(params, [&](const auto& p) {
    const std::string& n = p.name();
    const auto dot = n.rfind('.');
    p.rename(prefix + (dot == std::string::npos ? n : n.substr(dot + 1)));
  });
}

/// A buffer overwritten after each training step with the value of an expression (batch norm's running
/// mean: running = (1 - momentum) * running + momentum * batch_mean(x)). The expression is compiled into the
/// training step with the loss and the gradients, so it shares their boundary results.
template <class T, int R, class E>
struct StateUpdate {
  Tensor<T, R> target;
  E value;
};
template <class T, int R, class E>
StateUpdate<T, R, std::remove_cvref_t<E>> state_update(const Tensor<T, R>& target, E&& value) {
  return {target, std::forward<E>(value)};
}

/// Build modes. A layer's operator() reads its run-time mode (train(bool)) when the expression is built, and
/// must return one type in both: batch norm's output therefore holds both forms and picks one when evaluated.
/// A gradient through that choice holds the adjoint of both forms, so its size doubles with every batch-norm
/// layer below the loss (33 MB of expression objects for a conv net with three, past a thread's stack).
/// forward_in(model, x, train_mode) builds the training form alone (eval_mode: the evaluation form); the
/// Trainer builds its steps this way. Layers without a forward(x, mode) are applied as l(x).
struct TrainMode {};
struct EvalMode {};
/// Each layer in the mode train(bool) set: what operator() builds.
struct RuntimeMode {};
inline constexpr TrainMode train_mode{};
inline constexpr EvalMode eval_mode{};

/// Layer l applied to x in mode m: l.forward(x, m) where the layer has one, else l(x).
template <class L, class X, class Mode>
auto forward_in(const L& l, X&& x, Mode m) {
  if constexpr (!std::is_same_v<Mode, RuntimeMode> && requires { l.forward(std::forward<X>(x), m); })
    return l.forward(std::forward<X>(x), m);
  else
    return l(std::forward<X>(x));
}

/// The state updates of layer `l` fed with x: l.updates(x) when it has any, else an empty tuple.
template <class L, class X>
auto updates_of(const L& l, const X& x) {
  if constexpr (requires { l.updates(x); })
    return l.updates(x);
  else
    return std::tuple<>();
}

/// Moves a layer's random streams (dropout masks) to the next training step, when it has any.
template <class L>
void advance_of(const L& l) {
  if constexpr (requires { l.advance(); }) l.advance();
}

/// Moves a parameter's tensor to `device` (a copy there replaces it; nothing happens when it is already
/// there). The Param keeps its identity: every copy of the handle, an optimiser's included, sees the moved
/// tensor, and expressions built from it read it there. @throws device_error as Tensor::to does.
template <class P>
void move_param(const P& p, Device device) {
  if (p.initialized() && !(p.value().device() == device)) p.set(p.value().to(device));
}

/// Moves every Param of a tuple to `device` (see move_param).
template <class Tuple>
void move_params(const Tuple& params, Device device) {
  for_each_param(params, [&](const auto& p) { move_param(p, device); });
}

/// Moves a layer or model to `device`: l.to(device) when the layer has it (containers, layers with
/// buffers), else its params(). See to_device.
template <class L>
void to_device_of(L& l, Device device) {
  if constexpr (requires { l.to(device); })
    l.to(device);
  else
    move_params(l.params(), device);
}

/// Moves every parameter and buffer of `model` (a layer or a sequential) to `device`, in place, like
/// torch's module.to(device): Params keep their identity, so an optimiser built on model.params() before the
/// move keeps working (its state follows on the next step). Expressions and training steps that read
/// buffers (batch norm's running statistics) hold the old tensors: build them after the move.
/// @code nn::to_device(model, Device::cuda(0)); @endcode
/// @throws device_error for a CUDA device without the CUDA backend (no file compiled by nvcc in the program)
/// or one that does not exist.
template <class L>
L& to_device(L& model, Device device) {
  to_device_of(model, device);
  return model;
}

/// Number of trainable elements in a tuple of params.
template <class Tuple>
index_t param_count(const Tuple& params) {
  index_t n = 0;
  for_each_param(params, [&](const auto& p) { n += p.value().numel(); });
  return n;
}

/// Number of trainable elements of a layer or model.
template <class L>
requires requires(const L& l) { l.params(); }
index_t parameter_count(const L& l) { return param_count(l.params()); }

/// The named state (parameters and buffers) of a layer or model, in definition order.
template <class L>
std::vector<StateEntry> state_of(const L& l) {
  std::vector<StateEntry> out;
  l.collect_state(out);
  return out;
}

/// The parameters of several layers together, for an optimiser that trains only those (transfer learning:
/// the other layers' parameters are not differentiated at all). @code
///   nn::SGD opt(nn::params_of(model.get<4>(), model.get<5>()), {.lr = 0.01});
/// @endcode
template <class... L>
auto params_of(const L&... layers) {
  return std::tuple_cat(layers.params()...);
}

/// Makes the layer described by `spec` with tag Tag (its parameters' identity).
template <class Tag, class Spec>
auto make(const Spec& spec) {
  return typename Spec::template layer<Tag>(spec);
}

}  // namespace nn
METAGRAD_NAMESPACE_END
