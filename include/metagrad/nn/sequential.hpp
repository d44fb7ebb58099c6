// metagrad/nn/sequential.hpp — sequential(...): layers applied in order, each child's parameters named by its
// position ("0.weight", "3.bias") or by a name given with named("features", ...), nesting composing names
// ("features.0.weight") exactly as PyTorch's nn.Sequential does, so state dicts exported from PyTorch load by
// name. Also the model summary. Include <metagrad/nn.hpp> instead.
#pragma once

#include <cstdio>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../expr/leaf.hpp"
#include "layer_base.hpp"
#include "module.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace nn {

/// A spec with an explicit child name inside a sequential (PyTorch: an OrderedDict key or attribute name).
template <class Spec>
struct Named {
  std::string name;
  Spec spec;
  template <class Tag>
  using layer = typename Spec::template layer<Tag>;
};
template <class Spec>
Named<Spec> named(std::string name, Spec spec) {
  return {std::move(name), std::move(spec)};
}

namespace detail {
template <class S>
struct unnamed {
  using type = S;
  static const S& spec(const S& s) { return s; }
  static std::string name(const S&, std::size_t i) { return std::to_string(i); }
};
template <class S>
struct unnamed<Named<S>> {
  using type = S;
  static const S& spec(const Named<S>& s) { return s.spec; }
  static std::string name(const Named<S>& s, std::size_t) { return s.name; }
};
}  // namespace detail

template <class Tag, class... Specs>
class Sequential;

/// Description of a Sequential (the result of sequential(specs...) without a tag), for nesting.
template <class... Specs>
struct SequentialSpec {
  std::tuple<Specs...> specs;
  template <class Tag>
  using layer = Sequential<Tag, Specs...>;
};

template <class Tag, class... Specs>
class Sequential : public LayerBase {
  template <std::size_t I>
  using spec_at = std::tuple_element_t<I, std::tuple<Specs...>>;
  template <std::size_t I>
  using child_t = typename detail::unnamed<spec_at<I>>::type::template layer<ChildTag<Tag, int(I)>>;
  template <class Seq>
  struct children_of;
  template <std::size_t... I>
  struct children_of<std::index_sequence<I...>> {
    using type = std::tuple<child_t<I>...>;
  };
  using Children = typename children_of<std::index_sequence_for<Specs...>>::type;
  static constexpr std::size_t N = sizeof...(Specs);

 public:
  explicit Sequential(const SequentialSpec<Specs...>& s) : Sequential(s, std::index_sequence_for<Specs...>{}) {}
  explicit Sequential(const Specs&... specs) : Sequential(SequentialSpec<Specs...>{{specs...}}) {}

  /// The layers applied in order to x.
  template <class X>
  auto operator()(X&& x) const {
    return forward_from<0>(std::forward<X>(x), RuntimeMode{});
  }
  /// The layers applied in order to x, each in mode m (train_mode or eval_mode; see forward_in).
  template <class X, class Mode>
  auto forward(X&& x, Mode m) const {
    return forward_from<0>(std::forward<X>(x), m);
  }

  /// Child I (a layer). @code auto& fc = model.get<5>(); @endcode
  template <std::size_t I>
  auto& get() {
    return std::get<I>(children_);
  }
  template <std::size_t I>
  const auto& get() const {
    return std::get<I>(children_);
  }
  static constexpr std::size_t size() { return N; }
  const std::string& child_name(std::size_t i) const { return names_[i]; }

  auto params() const {
    return std::apply([](const auto&... c) { return std::tuple_cat(c.params()...); }, children_);
  }
  void collect_state(std::vector<StateEntry>& out) const {
    std::apply([&](const auto&... c) { (c.collect_state(out), ...); }, children_);
  }
  void set_prefix(const std::string& p) {
    prefix_ = p;
    apply_indexed([&](auto& c, std::size_t i) { c.set_prefix(p + names_[i] + "."); });
  }
  void train(bool on = true) {
    training_ = on;
    std::apply([&](auto&... c) { (c.train(on), ...); }, children_);
  }
  void eval() { train(false); }

  /// Moves every child's parameters and buffers to `device`, in place (see nn::to_device): Params keep
  /// their identity, so optimisers built on params() keep working. @throws device_error as Tensor::to does.
  void to(Device device) {
    std::apply([&](auto&... c) { (to_device_of(c, device), ...); }, children_);
  }

  /// Moves every child's random streams (dropout) to the next step.
  void advance() const {
    std::apply([](const auto&... c) { (advance_of(c), ...); }, children_);
  }

  /// The buffer updates of every child in train mode, each fed with its own input.
  template <class X>
  auto updates(const X& x) const {
    return updates_from<0>(x);
  }

  std::string describe() const {
    std::string s = "Sequential(";
    apply_indexed([&](const auto& c, std::size_t i) { s += (i ? ", " : "") + c.describe(); });
    return s + ")";
  }

  /// A table of the children: name, layer, output shape for an input of `input_shape`, parameter count;
  /// then the totals. The shapes come from the shape rules alone (nothing is evaluated).
  template <class T = float, int R>
  std::string summary(const Shape<R>& input_shape) const {
    Input<ChildTag<Tag, -1>, T, R> x("input");
    x.bind(Tensor<T, R>(input_shape));
    std::vector<std::string> shapes;
    summary_shapes<0>(x, shapes);
    std::string out;
    auto row = [&](const std::string& a, const std::string& b, const std::string& c, const std::string& d) {
      char buf[512];
      std::snprintf(buf, sizeof buf, "%-10s %-52s %-20s %12s\n", a.c_str(), b.c_str(), c.c_str(), d.c_str());
      out += buf;
    };
    row("name", "layer", "output shape", "params");
    out += std::string(97, '-') + "\n";
    row("input", "", to_string(input_shape), "");
    index_t total = 0;
    apply_indexed([&](const auto& c, std::size_t i) {
      const index_t n = param_count(c.params());
      total += n;
      std::string d = c.describe();
      if (d.size() > 52) d = d.substr(0, 49) + "...";
      row(names_[i], d, shapes[i], std::to_string(n));
    });
    out += std::string(97, '-') + "\n";
    out += "trainable parameters: " + std::to_string(total) + " (" +
           std::to_string(static_cast<double>(total) * sizeof(T) / 1024.0).substr(0, 6) + " KiB)\n";
    return out;
  }

 private:
  template <std::size_t... I>
  Sequential(const SequentialSpec<Specs...>& s, std::index_sequence<I...>)
      : children_(child_t<I>(detail::unnamed<spec_at<I>>::spec(std::get<I>(s.specs)))...),
        names_{detail::unnamed<spec_at<I>>::name(std::get<I>(s.specs), I)...} {
    set_prefix("");
  }

  template <class F>
  void apply_indexed(F&& f) {
    apply_indexed_impl(f, std::index_sequence_for<Specs...>{});
  }
  template <class F>
  void apply_indexed(F&& f) const {
    apply_indexed_impl(f, std::index_sequence_for<Specs...>{});
  }
  template <class F, std::size_t... I>
  void apply_indexed_impl(F& f, std::index_sequence<I...>) {
    (f(std::get<I>(children_), I), ...);
  }
  template <class F, std::size_t... I>
  void apply_indexed_impl(F& f, std::index_sequence<I...>) const {
    (f(std::get<I>(children_), I), ...);
  }

  template <std::size_t I, class X, class Mode>
  auto forward_from(X&& x, Mode m) const {
    if constexpr (I == N)
      return std::remove_cvref_t<X>(std::forward<X>(x));
    else
      return forward_from<I + 1>(forward_in(std::get<I>(children_), std::forward<X>(x), m), m);
  }
  template <std::size_t I, class X>
  auto updates_from(const X& x) const {
    if constexpr (I == N) {
      return std::tuple<>();
    } else {
      const auto& c = std::get<I>(children_);
      return std::tuple_cat(updates_of(c, x), updates_from<I + 1>(forward_in(c, x, train_mode)));
    }
  }
  template <std::size_t I, class X>
  void summary_shapes(const X& x, std::vector<std::string>& out) const {
    if constexpr (I < N) {
      auto y = std::get<I>(children_)(x);
      out.push_back(to_string(y.shape()));
      summary_shapes<I + 1>(y, out);
    }
  }

  Children children_;
  std::vector<std::string> names_;
  std::string prefix_;
};

/// sequential(specs...) describes a Sequential for nesting inside another; sequential<Tag>(specs...) makes
/// the model, its parameters tagged by Tag. @code
///   auto model = nn::sequential<struct lenet>(nn::conv2d(1, 6, 5, {.padding = 2}), nn::relu(), ...);
/// @endcode
template <class Tag = void, class... Specs>
auto sequential(Specs... specs) {
  if constexpr (std::is_void_v<Tag>)
    return SequentialSpec<Specs...>{{std::move(specs)...}};
  else
    return Sequential<Tag, Specs...>(SequentialSpec<Specs...>{{std::move(specs)...}});
}

}  // namespace nn
METAGRAD_NAMESPACE_END
