// metagrad/expr/leaf.hpp — the named leaves of a graph: Input (bound to a tensor for each run), Param (owns
// its tensor and a run-time name, the checkpoint key), Const (a tensor held by value) and TensorRef (a named
// tensor read by pointer). Input and Param are identified by their tag type (DESIGN.md, Principle 1), so
// two mentions of the same parameter anywhere in a forward pass and its gradients are one leaf. Both are
// cheap handles on shared state: copying one copies a pointer, so expressions hold them by value and
// never dangle. Include <metagrad/expr.hpp> instead.
#pragma once

#include <memory>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

#if defined(__GNUG__) || defined(__clang__)
#include <cxxabi.h>

#include <cstdlib>
#endif

#include "../core/error.hpp"
#include "../core/expr_base.hpp"
#include "../core/tensor.hpp"
#include "node.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace detail {
/// A readable name for a tag type (demangled where the ABI allows), used in error messages.
/// Tags are usually declared in place (`Input<struct x, float, 2>`) and so incomplete: typeid of the
/// pointer type is valid for those too, and the trailing '*' is dropped.
template <class Tag>
std::string tag_name() {
  const char* raw = typeid(Tag*).name();
  std::string s = raw;
#if defined(__GNUG__) || defined(__clang__)
  int status = 0;
  char* d = abi::__cxa_demangle(raw, nullptr, nullptr, &status);
  if (status == 0 && d) {
    s = d;
    std::free(d);
  }
#endif
  if (!s.empty() && s.back() == '*') s.pop_back();
  return s;
}
}  // namespace detail

/// A graph input: a placeholder of dtype T and rank Rank that is bound to a tensor before each run.
/// Copies share the binding. `Tag` is any type (typically `struct x`) and is the input's identity.
/// @code
///   Input<struct x, float, 2> x;          // or METAGRAD_INPUT(x, float, 2);
///   x.bind(batch);                        // before evaluating anything that reads x
/// @endcode
template <class Tag, dtype T, int Rank>
class Input : public ExprBase<Input<Tag, T, Rank>> {
  struct State {
    Tensor<T, Rank> value;
    std::string name;
  };

 public:
  using value_type = T;
  using tag_type = Tag;
  static constexpr int rank = Rank;

  /// An unbound input named `name` (used in messages; defaults to the tag's name).
  explicit Input(std::string name = detail::tag_name<Tag>()) : state_(std::make_shared<State>()) {
    state_->name = std::move(name);
  }

  /// Binds a tensor (shared, not copied) for the following evaluations; returns *this, so that
  /// `program.run(x.bind(a), y.bind(b))` reads naturally.
  const Input& bind(const Tensor<T, Rank>& t) const {
    if (!t.defined()) throw error("input '" + state_->name + "': cannot bind an empty (default-constructed) tensor");
    state_->value = t;
    return *this;
  }
  template <class U, int R2>
  const Input& bind(const Tensor<U, R2>&) const {
    static_assert(std::is_same_v<U, T> && R2 == Rank,
                  "metagrad: Input::bind needs a tensor of the input's dtype and rank; convert with to<T>() or "
                  "reshape first");
    return *this;
  }
  const Input& operator=(const Tensor<T, Rank>& t) const { return bind(t); }

  bool bound() const { return state_->value.defined(); }
  /// The bound tensor. @throws metagrad::error when nothing is bound.
  const Tensor<T, Rank>& value() const {
    if (!bound()) throw unbound_error("input '" + state_->name + "' is not bound: call bind(tensor) before evaluating");
    return state_->value;
  }
  const std::string& name() const { return state_->name; }
  Shape<Rank> shape() const { return value().shape(); }
  const void* identity() const { return state_.get(); }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    return lower_expr(value(), target);
  }

 private:
  std::shared_ptr<State> state_;
};

/// A trainable parameter: owns its tensor (shared by copies) and a run-time name, its key in checkpoints
/// and state dicts ("fc1.weight"). `Tag` is its identity in the graph.
template <class Tag, dtype T, int Rank>
class Param : public ExprBase<Param<Tag, T, Rank>> {
  struct State {
    Tensor<T, Rank> value;
    std::string name;
  };

 public:
  using value_type = T;
  using tag_type = Tag;
  static constexpr int rank = Rank;

  explicit Param(std::string name = detail::tag_name<Tag>()) : state_(std::make_shared<State>()) {
    state_->name = std::move(name);
  }
  /// A parameter holding `init` (shared, not copied: clone() it first to keep the original).
  Param(std::string name, Tensor<T, Rank> init) : Param(std::move(name)) { state_->value = std::move(init); }

  /// The parameter's tensor; assigning into it (value().assign(...), value() -= ...) updates every copy.
  Tensor<T, Rank>& value() const {
    if (!state_->value.defined()) throw error("parameter '" + state_->name + "' has no value: set() it first");
    return state_->value;
  }
  /// Replaces the tensor (shared, not copied).
  void set(Tensor<T, Rank> t) const { state_->value = std::move(t); }
  bool initialized() const { return state_->value.defined(); }
  const std::string& name() const { return state_->name; }
  /// Renames the parameter (every copy): containers prefix their children's names ("0.weight").
  void rename(std::string name) const { state_->name = std::move(name); }
  Shape<Rank> shape() const { return value().shape(); }
  const void* identity() const { return state_.get(); }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    return lower_expr(value(), target);
  }

 private:
  std::shared_ptr<State> state_;
};

/// A constant tensor held by value (a handle: it shares the tensor's storage). Never differentiated.
template <dtype T, int Rank>
class Const : public ExprBase<Const<T, Rank>> {
 public:
  using value_type = T;
  static constexpr int rank = Rank;
  explicit Const(Tensor<T, Rank> t) : t_(std::move(t)) {}
  const Tensor<T, Rank>& value() const { return t_; }
  Shape<Rank> shape() const { return t_.shape(); }
  const void* identity() const { return t_.data(); }
  template <int RT>
  auto lower(const Shape<RT>& target) const {
    return lower_expr(t_, target);
  }

 private:
  Tensor<T, Rank> t_;
};

/// A named tensor read through a pointer: what a tensor the user wrote by name becomes inside derived
/// expressions, so that they see later assignments to it, as the expression they came from does.
template <dtype T, int Rank>
class TensorRef : public ExprBase<TensorRef<T, Rank>> {
 public:
  using value_type = T;
  static constexpr int rank = Rank;
  explicit TensorRef(const Tensor<T, Rank>& t) : t_(&t) {}
  const Tensor<T, Rank>& value() const { return *t_; }
  Shape<Rank> shape() const { return t_->shape(); }
  const void* identity() const { return t_; }
  template <int RT>
  auto lower(const Shape<RT>& target) const {
    return lower_expr(*t_, target);
  }

 private:
  const Tensor<T, Rank>* t_;
};

template <class E>
inline constexpr bool is_input_v = false;
template <class Tag, class T, int R>
inline constexpr bool is_input_v<Input<Tag, T, R>> = true;
template <class E>
inline constexpr bool is_param_v = false;
template <class Tag, class T, int R>
inline constexpr bool is_param_v<Param<Tag, T, R>> = true;
template <class E>
inline constexpr bool is_const_leaf_v = false;
template <class T, int R>
inline constexpr bool is_const_leaf_v<Const<T, R>> = true;
template <class T, int R>
inline constexpr bool is_const_leaf_v<TensorRef<T, R>> = true;

/// Input or Param: a leaf that gradients can be taken with respect to.
template <class E>
concept variable = is_input_v<std::remove_cvref_t<E>> || is_param_v<std::remove_cvref_t<E>>;

namespace detail {
/// An operand as a derivative rule sees it: a tensor becomes a leaf held by value (TensorRef when the node
/// named the tensor, closure type A a reference; Const when the node owned a copy), so derived expressions
/// never refer to temporaries; any other expression is passed through.
template <class A, class AE>
decltype(auto) operand_value(const AE& c) {
  if constexpr (is_tensor_v<AE>) {
    if constexpr (std::is_reference_v<A>)
      return TensorRef<typename AE::value_type, AE::rank>(c);
    else
      return Const<typename AE::value_type, AE::rank>(c);
  } else {
    return (c);
  }
}

/// A fresh copy of operand v (held as closure type A) for a derived expression, such as a backward rule: a
/// tensor becomes a Const leaf, so the new expression holds values, never a reference into the node.
template <class A, class V>
auto copy_operand(const V& v) {
  using C = std::remove_cvref_t<decltype(operand_value<A>(v))>;
  return C(operand_value<A>(v));
}
}  // namespace detail

/// Nodes that define their own derivative rules: `e.backward(std::integral_constant<int, I>{}, g)` is the
/// adjoint of child I (in children() order) given the node's adjoint g. grad() uses it for every child the
/// differentiated leaf depends on.
template <class E>
concept self_differentiating = requires {
  typename E::self_differentiating_tag;
};

METAGRAD_NAMESPACE_END

/// Declares `Input<struct name##_tag_, T, Rank> name{"name"}`: METAGRAD_INPUT(x, float, 2);
#define METAGRAD_INPUT(name, T, Rank) \
  ::metagrad::Input<struct name##_input_tag_, T, Rank> name { #name }
/// Declares a Param named by its variable: METAGRAD_PARAM(w, float, 2, metagrad::randn<float>({784, 10}));
#define METAGRAD_PARAM(name, T, Rank, ...) \
  ::metagrad::Param<struct name##_param_tag_, T, Rank> name { #name, __VA_ARGS__ }
