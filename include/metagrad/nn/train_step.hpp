// metagrad/nn/train_step.hpp — a training step as one compiled Program: the loss, its gradients with respect
// to the optimiser's parameters, the layers' buffer updates (batch norm's running statistics) and any extra
// outputs (predictions, a count of correct answers) are planned together, so every boundary result is
// computed once and shared between forward, backward and metrics. After the Program runs, the optimiser
// updates each parameter in one fused pass and the buffers take their new values. EvalStep is the same
// without gradients. These are the pieces the Trainer is built from, usable alone in a custom loop.
// Include <metagrad/nn.hpp> instead.
#pragma once

#include <cmath>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../autodiff/grad.hpp"
#include "../graph/program.hpp"
#include "module.hpp"
#include "optim.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace nn {

struct TrainStepOptions {
  /// Clip the gradients' global norm to this value (0: no clipping), as torch.nn.utils.clip_grad_norm_.
  double clip_grad_norm = 0.0;
};

namespace detail {
template <class Tuple, std::size_t Off, std::size_t... I>
auto sub_tuple(const Tuple& t, std::index_sequence<I...>) {
  return std::tie(std::get<Off + I>(t)...);
}
// The gradients are held on the heap and handed to compile() by reference: a deep model's gradients are
// large objects (each holds its adjoint chain, over a megabyte in all for a three-layer batch-normalised
// conv net), and copies of them through tuples on the stack took a thread's whole stack.
template <class Loss, class Params, class Updates, class Extras>
auto build_train_program(const Loss& loss, const Params& params, const Updates& ups, const Extras& extras) {
  auto make_grads = [&] { return std::apply([&](const auto&... p) { return grad_merged(loss, p...); }, params); };
  using grads_t = decltype(make_grads());
  const std::unique_ptr<metagrad::detail::HeldAdjointBase> held(
      new metagrad::detail::HeldAdjoint<grads_t>(std::in_place, make_grads));
  const grads_t& grads = static_cast<const metagrad::detail::HeldAdjoint<grads_t>&>(*held).value;
  return [&]<std::size_t... G, std::size_t... U, std::size_t... E>(std::index_sequence<G...>, std::index_sequence<U...>,
                                                                   std::index_sequence<E...>) {
    return compile(loss, std::get<G>(grads)..., std::get<U>(ups).value..., std::get<E>(extras)...);
  }
  (std::make_index_sequence<std::tuple_size_v<grads_t>>{}, std::make_index_sequence<std::tuple_size_v<Updates>>{},
   std::make_index_sequence<std::tuple_size_v<Extras>>{});
}
}  // namespace detail

/// The outcome of one step: the loss and the extra outputs (the Program's buffers: valid until the next run).
template <class Extras>
struct StepOutput {
  double loss;
  Extras extras;     // a tuple of const Tensor& (one per extra output)
  double grad_norm;  // global gradient norm before clipping (0 when clipping is off)
};

/// A compiled training step for optimiser `opt` (which must outlive it) and scalar `loss`.
/// @code
///   auto step = nn::TrainStep(opt, loss, model.updates(x), std::make_tuple(correct));
///   auto out = step.run(x.bind(images), y.bind(labels));   // out.loss, std::get<0>(out.extras)
/// @endcode
template <class Opt, class Loss, class Updates = std::tuple<>, class Extras = std::tuple<>>
class TrainStep {
  static constexpr std::size_t NP = Opt::num_params;
  static constexpr std::size_t NU = std::tuple_size_v<Updates>;
  static constexpr std::size_t NE = std::tuple_size_v<Extras>;
  using program_t = decltype(detail::build_train_program(
      std::declval<const Loss&>(), std::declval<const typename Opt::params_type&>(), std::declval<const Updates&>(),
      std::declval<const Extras&>()));

 public:
  static_assert(std::remove_cvref_t<Loss>::rank == 0, "metagrad: a training step needs a scalar loss (rank 0)");

  TrainStep(Opt& opt, const Loss& loss, Updates updates = {}, Extras extras = {}, TrainStepOptions o = {})
      : opt_(&opt),
        targets_(std::move(updates)),
        program_(detail::build_train_program(loss, opt.params(), targets_, extras)),
        options_(o) {}

  /// Runs forward and backward on the bound inputs (bind them before, or pass x.bind(t) here), updates the
  /// parameters and buffers, and reads the loss back. @throws whatever the Program throws (unbound inputs,
  /// shape errors); in that case nothing has been updated.
  template <class... Bindings>
  auto run(const Bindings&... b) {
    const auto& r = launch(b...);
    const double loss = static_cast<double>(loss_of(r).item());
    auto extras = detail::sub_tuple<std::remove_cvref_t<decltype(r)>, 1 + NP + NU>(r, std::make_index_sequence<NE>{});
    return StepOutput<decltype(extras)>{loss, extras, last_norm_};
  }

  /// run() without reading anything back: returns the Program's outputs (the loss, then the gradients, the
  /// buffers' new values and the extras; see loss_of and extra_of), overwritten by the next step. On a CUDA
  /// device nothing here waits for the GPU (unless clip_grad_norm must read the gradient norm), so the host can
  /// prepare and queue the next step while this one runs.
  template <class... Bindings>
  const auto& launch(const Bindings&...) {
    const auto& r = program_.run();
    const auto grads = detail::sub_tuple<std::remove_cvref_t<decltype(r)>, 1>(r, std::make_index_sequence<NP>{});
    double norm = 0, scale = 1;
    if (options_.clip_grad_norm > 0) {
      norm = global_norm(grads);
      if (!std::isfinite(norm))
        throw error("train step: the gradient norm is not finite (" + std::to_string(norm) + ")");
      if (norm > options_.clip_grad_norm) scale = options_.clip_grad_norm / (norm + 1e-6);
    }
    opt_->step(grads, scale);
    [&]<std::size_t... U>(std::index_sequence<U...>) {
      (std::get<U>(targets_).target.assign(std::get<1 + NP + U>(r)), ...);
    }
    (std::make_index_sequence<NU>{});
    if (on_step) on_step();
    last_norm_ = norm;
    return r;
  }
  /// The loss (a rank-0 tensor on the step's device) and extra output I of launch()'s result.
  template <class Result>
  static const auto& loss_of(const Result& r) {
    return std::get<0>(r);
  }
  template <std::size_t I, class Result>
  static const auto& extra_of(const Result& r) {
    return std::get<1 + NP + NU + I>(r);
  }

  template <class... Bindings>
  auto operator()(const Bindings&... b) {
    return run(b...);
  }

  /// Called after every step (advance dropout streams, count steps, ...).
  std::function<void()> on_step;
  const program_t& program() const { return program_; }
  program_t& program() { return program_; }
  Opt& optimizer() { return *opt_; }

 private:
  Opt* opt_;
  Updates targets_;
  program_t program_;
  TrainStepOptions options_;
  double last_norm_ = 0;
};

template <class Opt, class Loss>
TrainStep(Opt&, const Loss&) -> TrainStep<Opt, Loss>;
template <class Opt, class Loss, class U>
TrainStep(Opt&, const Loss&, U) -> TrainStep<Opt, Loss, U>;
template <class Opt, class Loss, class U, class E>
TrainStep(Opt&, const Loss&, U, E) -> TrainStep<Opt, Loss, U, E>;
template <class Opt, class Loss, class U, class E>
TrainStep(Opt&, const Loss&, U, E, TrainStepOptions) -> TrainStep<Opt, Loss, U, E>;

/// A compiled evaluation step: the given outputs (a loss, a count of correct answers, ...), no gradients.
template <class... Outs>
class EvalStep {
 public:
  explicit EvalStep(const Outs&... outs) : program_(compile(outs...)) {}
  template <class... Bindings>
  const auto& run(const Bindings&...) {
    return program_.run();
  }
  template <class... Bindings>
  const auto& operator()(const Bindings&... b) {
    return run(b...);
  }
  const auto& program() const { return program_; }
  auto& program() { return program_; }

 private:
  decltype(compile(std::declval<const Outs&>()...)) program_;
};

}  // namespace nn
METAGRAD_NAMESPACE_END
