// metagrad/nn/optim.hpp — optimisers: SGD (momentum, dampening, Nesterov, weight decay), Adam, AdamW and
// RMSprop, with PyTorch's update rules and state names (so their state round-trips through checkpoints).
// Each step updates every parameter in one fused pass that reads the parameter, its gradient and its state
// once and writes them once: the per-element rule is a METAGRAD_HD function, run by a threaded CPU loop for
// CPU parameters and, for CUDA parameters (in a file compiled by nvcc), by multi-tensor kernels that update
// every parameter of one dtype and device in one launch (backend/cuda/multi_tensor.hpp). State tensors live
// on their parameter's device and follow it when the model is moved (nn::to_device).
// Gradient clipping by global norm scales the gradients inside that same pass. Which parameters train is
// chosen by the params tuple the optimiser is built with (the others are never differentiated); freeze()
// additionally stops updates by name at run time. Include <metagrad/nn.hpp> instead.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../backend/cpu/assign.hpp"
#include "../backend/cpu/parallel.hpp"
#include "../backend/dispatch.hpp"
#include "../backend/multi_tensor_plan.hpp"
#include "../core/config.hpp"
#include "../core/creation.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../expr/functions.hpp"
#include "../expr/reduce.hpp"
#include "module.hpp"

#if defined(__CUDACC__)
#include "../backend/cuda/multi_tensor.hpp"
#endif

METAGRAD_NAMESPACE_BEGIN
namespace nn {

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  ///< Adam: L2 added to the gradient; AdamW: decoupled decay (default 0.01 there)
  bool amsgrad = false;
};
struct RMSpropOptions {
  double lr = 0.01;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
};

namespace detail {

// Per-step scalars of a rule (bias corrections and the like), computed once per step.
struct StepScalars {
  double lr, c0, c1, c2;
  bool first;
};

struct SgdRule {
  using options = SGDOptions;
  static constexpr int max_state = 1;
  static constexpr const char* state_names[max_state] = {"momentum_buffer"};
  static int state_count(const options& o) { return o.momentum != 0.0 ? 1 : 0; }
  static void validate(const options& o) {
    if (o.lr < 0 || o.momentum < 0 || o.weight_decay < 0)
      throw error("SGD: lr, momentum and weight_decay must be >= 0");
    if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
      throw error("SGD: Nesterov momentum needs momentum > 0 and dampening = 0");
  }
  static StepScalars scalars(const options&, double lr, std::int64_t step) { return {lr, 0, 0, 0, step == 1}; }
  template <class T>
  METAGRAD_HD static void update(T& p, T g, T* s, const options& o, const StepScalars& k) {
    if (o.weight_decay != 0) g += T(o.weight_decay) * p;
    if (o.momentum != 0) {
      T& buf = s[0];
      buf = k.first ? g : T(o.momentum) * buf + T(1 - o.dampening) * g;
      g = o.nesterov ? g + T(o.momentum) * buf : buf;
    }
    p -= T(k.lr) * g;
  }
};

template <bool Decoupled>
struct AdamRule {
  using options = AdamOptions;
  static constexpr int max_state = 3;
  static constexpr const char* state_names[max_state] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
  static int state_count(const options& o) { return o.amsgrad ? 3 : 2; }
  static void validate(const options& o) {
    if (o.lr < 0 || o.eps < 0 || o.weight_decay < 0 || o.beta1 < 0 || o.beta1 >= 1 || o.beta2 < 0 || o.beta2 >= 1)
      throw error(std::string(Decoupled ? "AdamW" : "Adam") + ": need lr, eps, weight_decay >= 0 and betas in [0, 1)");
  }
  static StepScalars scalars(const options& o, double lr, std::int64_t step) {
    const double bc1 = 1 - std::pow(o.beta1, static_cast<double>(step));
    const double bc2 = 1 - std::pow(o.beta2, static_cast<double>(step));
    return {lr, lr / bc1, 1.0 / std::sqrt(bc2), 1 - lr * o.weight_decay, step == 1};
  }
  template <class T>
  METAGRAD_HD static void update(T& p, T g, T* s, const options& o, const StepScalars& k) {
    if constexpr (Decoupled) {
      p *= T(k.c2);
    } else {
      if (o.weight_decay != 0) g += T(o.weight_decay) * p;
    }
    T& m = s[0];
    T& v = s[1];
    m = T(o.beta1) * m + T(1 - o.beta1) * g;
    v = T(o.beta2) * v + T(1 - o.beta2) * g * g;
    T vv = v;
    if (o.amsgrad) {
      s[2] = s[2] > v ? s[2] : v;
      vv = s[2];
    }
    p -= T(k.c0) * m / (std::sqrt(vv) * T(k.c1) + T(o.eps));
  }
};

struct RmspropRule {
  using options = RMSpropOptions;
  static constexpr int max_state = 3;
  static constexpr const char* state_names[max_state] = {"square_avg", "momentum_buffer", "grad_avg"};
  static int state_count(const options& o) { return o.centered ? 3 : (o.momentum != 0 ? 2 : 1); }
  static void validate(const options& o) {
    if (o.lr < 0 || o.eps < 0 || o.weight_decay < 0 || o.momentum < 0 || o.alpha < 0)
      throw error("RMSprop: lr, alpha, eps, weight_decay and momentum must be >= 0");
  }
  static StepScalars scalars(const options&, double lr, std::int64_t step) { return {lr, 0, 0, 0, step == 1}; }
  template <class T>
  METAGRAD_HD static void update(T& p, T g, T* s, const options& o, const StepScalars& k) {
    if (o.weight_decay != 0) g += T(o.weight_decay) * p;
    T& sq = s[0];
    sq = T(o.alpha) * sq + T(1 - o.alpha) * g * g;
    T avg;
    if (o.centered) {
      T& ga = s[2];
      ga = T(o.alpha) * ga + T(1 - o.alpha) * g;
      avg = std::sqrt(sq - ga * ga) + T(o.eps);
    } else {
      avg = std::sqrt(sq) + T(o.eps);
    }
    if (o.momentum > 0) {
      T& buf = s[1];
      buf = T(o.momentum) * buf + g / avg;
      p -= T(k.lr) * buf;
    } else {
      p -= T(k.lr) * g / avg;
    }
  }
};

template <class P>
using param_tensor_t = Tensor<typename P::value_type, P::rank>;

/// The per-element update of a multi-tensor launch (detail::multi_tensor_chunk): Rule::update with the
/// gradient scaled first, exactly as the CPU loop does. Trivially copyable (a kernel argument).
template <class Rule, class T>
struct RuleUpdate {
  static constexpr int max_state = Rule::max_state;
  typename Rule::options options;
  StepScalars scalars;
  T scale;
  METAGRAD_HD void operator()(T& p, T g, T* s) const { Rule::update(p, g * scale, s, options, scalars); }
};

}  // namespace detail

/// The square root of the sum of squares of every gradient in a tuple of tensors (double accumulation).
template <class Grads>
double global_norm(const Grads& grads) {
  double s = 0;
  std::apply(
      [&](const auto&... g) {
        auto one = [&](const auto& t) {
          if (!t.device().is_cpu()) {  // on the device: one reduction, one number back
            s += eval(sum(square(cast<double>(t)))).item();
            return;
          }
          const auto c = t.is_contiguous() ? t : t.clone();
          const auto* d = c.data();
          for (index_t i = 0, n = c.numel(); i < n; ++i) s += static_cast<double>(d[i]) * static_cast<double>(d[i]);
        };
        (one(g), ...);
      },
      grads);
  return std::sqrt(s);
}

/// An optimiser over the parameters Ps... with the per-element rule Rule (see SGD, Adam, AdamW, RMSprop).
template <class Rule, class... Ps>
class Optimizer {
 public:
  using options_type = typename Rule::options;
  using params_type = std::tuple<Ps...>;
  static constexpr std::size_t num_params = sizeof...(Ps);

  Optimizer(std::tuple<Ps...> params, options_type opts) : params_(std::move(params)), opts_(opts), lr_(opts.lr) {
    Rule::validate(opts_);
    frozen_.assign(num_params, false);
    const int ns = Rule::state_count(opts_);
    for_each_indexed([&](const auto& p, auto& st, std::size_t) {
      for (int k = 0; k < ns; ++k)
        st[k] = zeros<typename std::remove_cvref_t<decltype(p)>::value_type>(p.shape(), p.value().device());
    });
  }

  /// One update of every (unfrozen) parameter from `grads`, a tuple of tensors shaped like the params (a
  /// compiled training step's gradient outputs). `grad_scale` multiplies every gradient first (clipping).
  /// CPU parameters are updated by a threaded loop each; the CUDA parameters of one dtype and device all
  /// together by multi-tensor kernels (queued on the device's stream, float32 and float64). State tensors
  /// are first moved to their parameter's device if it moved; non-contiguous gradients are copied to
  /// contiguous ones on their device. Everything is checked before anything changes.
  /// @throws shape_error when a gradient's shape differs from its parameter's; device_error when a gradient
  /// is on another device than its parameter, or for CUDA parameters in a file not compiled by nvcc; error
  /// for a non-contiguous parameter or a CUDA parameter of an integer dtype.
  template <class Grads>
  void step(const Grads& grads, double grad_scale = 1.0) {
    static_assert(std::tuple_size_v<std::remove_cvref_t<Grads>> == num_params,
                  "metagrad: optimizer step needs one gradient per parameter");
    bool on_device = false;
    Device first_device = Device::cpu();
    for_each_indexed([&](const auto& p, auto&, auto i) {
      if (frozen_[i]) return;
      check_one(p, std::get<decltype(i)::value>(grads));
      if (!on_device && !p.value().device().is_cpu()) {
        on_device = true;
        first_device = p.value().device();
      }
    });
#if !defined(__CUDACC__)
    if (on_device) ::metagrad::detail::no_cuda_backend("optimizer step", first_device);
#else
    (void)first_device;
#endif
    ++steps_;
    const auto k = Rule::scalars(opts_, lr_, steps_);
    DeviceWork work;
    for_each_indexed([&](const auto& p, auto& st, auto i) {
      if (frozen_[i]) return;
      follow_param(p, st);
      const auto& g = std::get<decltype(i)::value>(grads);
      if (p.value().device().is_cpu())
        apply_one(p, g, st, k, grad_scale);
      else
        add_device(work, p, g, st);
    });
#if defined(__CUDACC__)
    if (on_device) {
      run_groups(work.f32, k, grad_scale);
      run_groups(work.f64, k, grad_scale);
    }
#endif
  }

  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  double base_lr() const { return opts_.lr; }
  const options_type& options() const { return opts_; }
  std::int64_t steps() const { return steps_; }
  void set_steps(std::int64_t s) { steps_ = s; }
  const params_type& params() const { return params_; }

  /// Stops (or resumes) updating the parameters whose names start with `prefix` ("0." freezes the first
  /// child of a sequential). Their gradients are still computed; to skip computing them, build the
  /// optimiser on the trainable parameters only (params_of(...)). @return how many parameters matched.
  std::size_t freeze(const std::string& prefix, bool on = true) {
    std::size_t hits = 0;
    for_each_indexed([&](const auto& p, auto&, std::size_t i) {
      if (p.name().compare(0, prefix.size(), prefix) == 0) {
        frozen_[i] = on;
        ++hits;
      }
    });
    return hits;
  }
  bool frozen(std::size_t i) const { return frozen_[i]; }

  /// The optimiser's state as named tensors: "<param name>.<state name>" (PyTorch's names: exp_avg,
  /// momentum_buffer, ...) plus the step count as a one-element int64 tensor named "step", for checkpoints.
  /// State tensors are on their parameter's device (moved there first if the parameter moved).
  void collect_state(std::vector<StateEntry>& out, const std::string& prefix = "") {
    const int ns = Rule::state_count(opts_);
    for_each_indexed([&](const auto& p, auto& st, std::size_t) {
      follow_param(p, st);  // a checkpoint loaded after moving the model lands on the parameters' device
      for (int k = 0; k < ns; ++k)
        out.push_back(state_entry(prefix + p.name() + "." + Rule::state_names[k], st[k], false));
    });
    step_tensor_ = Tensor<std::int64_t, 1>(Shape<1>{{1}});
    step_tensor_.data()[0] = steps_;
    out.push_back(state_entry(prefix + "step", step_tensor_, false));
  }
  /// Reads back the step count after the entries of collect_state() were overwritten (checkpoint load).
  void state_loaded() { steps_ = step_tensor_.data()[0]; }

 private:
  template <class P>
  using state_t = std::array<detail::param_tensor_t<P>, Rule::max_state>;

  template <class F>
  void for_each_indexed(F&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (f(std::get<I>(params_), std::get<I>(state_), std::integral_constant<std::size_t, I>{}), ...);
    }
    (std::make_index_sequence<num_params>{});
  }

  // Buffers of one step's CUDA parameters, grouped by dtype and device (one multi-tensor pass per group).
  template <class T>
  struct DeviceGroup {
    int device;
    std::vector<::metagrad::detail::MultiTensorEntry<T, 2 + Rule::max_state>> list;
  };
  struct DeviceWork {
    std::vector<DeviceGroup<float>> f32;
    std::vector<DeviceGroup<double>> f64;
    std::vector<std::shared_ptr<Storage>> keep;  // contiguous copies of gradients, alive until launched
  };

  template <class P, class G>
  static void check_one(const P& p, const G& g) {
    using T = typename P::value_type;
    const auto& pt = p.value();
    if (!(g.shape() == pt.shape()))
      throw shape_error("optimizer step: the gradient of '" + p.name() + "' has shape " + to_string(g.shape()) +
                        ", the parameter " + to_string(pt.shape()));
    if (!is_contiguous(pt.shape(), pt.strides()))
      throw error("optimizer step: parameter '" + p.name() + "' is not contiguous");
    if (!(g.device() == pt.device()))
      throw device_error("optimizer step: the gradient of '" + p.name() + "' is on " + g.device().str() +
                         ", the parameter on " + pt.device().str());
    if (!pt.device().is_cpu() && !std::is_same_v<T, float> && !std::is_same_v<T, double>)
      throw error("optimizer step: parameter '" + p.name() + "' on " + pt.device().str() + " has dtype " +
                  std::string(dtype_name(dtype_of<T>)) + "; GPU updates take float32 and float64 parameters");
  }

  // The state was made (or last moved) where the parameter was; after model.to(device) it follows.
  template <class P, class S>
  void follow_param(const P& p, S& st) {
    const Device d = p.value().device();
    for (int k = 0; k < Rule::state_count(opts_); ++k)
      if (st[k].defined() && !(st[k].device() == d)) st[k] = st[k].to(d);
  }

  template <class P, class G, class S>
  void add_device(DeviceWork& w, const P& p, const G& g, S& st) {
    using T = typename P::value_type;
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      auto& pt = p.value();
      const auto gc = g.is_contiguous() ? g : g.clone();
      w.keep.push_back(gc.storage());
      ::metagrad::detail::MultiTensorEntry<T, 2 + Rule::max_state> e{};
      e.ptr[0] = pt.data();
      e.ptr[1] = const_cast<T*>(gc.data());  // read only: the kernels write the parameter and the states
      for (int j = 0; j < Rule::state_count(opts_); ++j) e.ptr[2 + j] = st[j].data();
      e.numel = pt.numel();
      auto& groups = [&]() -> auto& {
        if constexpr (std::is_same_v<T, float>)
          return w.f32;
        else
          return w.f64;
      }
      ();
      const int dev = pt.device().index();
      for (auto& grp : groups)
        if (grp.device == dev) {
          grp.list.push_back(e);
          return;
        }
      groups.push_back({dev, {e}});
    }
  }

#if defined(__CUDACC__)
  template <class T>
  void run_groups(const std::vector<DeviceGroup<T>>& groups, const detail::StepScalars& k, double scale) const {
    const detail::RuleUpdate<Rule, T> op{opts_, k, static_cast<T>(scale)};
    for (const auto& grp : groups) launch_group<0>(Rule::state_count(opts_), grp, op);
  }
  // The kernel is instantiated for the number of state buffers the options use (SGD without momentum
  // moves two buffers per element, not three).
  template <int NS, class T>
  static void launch_group(int ns, const DeviceGroup<T>& grp, const detail::RuleUpdate<Rule, T>& op) {
    if (ns != NS) {
      if constexpr (NS < Rule::max_state) launch_group<NS + 1>(ns, grp, op);
      return;
    }
    std::vector<::metagrad::detail::MultiTensorEntry<T, 2 + NS>> list(grp.list.size());
    for (std::size_t i = 0; i < list.size(); ++i) {
      for (int j = 0; j < 2 + NS; ++j) list[i].ptr[j] = grp.list[i].ptr[j];
      list[i].numel = grp.list[i].numel;
    }
    cuda::multi_tensor_apply<NS>(list, op, grp.device);
  }
#endif

  template <class P, class G, class S>
  void apply_one(const P& p, const G& g, S& st, const detail::StepScalars& k, double scale) {
    using T = typename P::value_type;
    auto& pt = p.value();
    const auto gc = g.is_contiguous() ? g : g.clone();
    T* pd = pt.data();
    const T* gd = gc.data();
    std::array<T*, Rule::max_state> sd{};
    for (int i = 0; i < Rule::state_count(opts_); ++i) sd[i] = st[i].data();
    const options_type o = opts_;
    const T sc = static_cast<T>(scale);
    cpu::parallel_for(
        pt.numel(),
        [&](index_t b, index_t e) {
          T s[Rule::max_state > 0 ? Rule::max_state : 1];
          for (index_t i = b; i < e; ++i) {
            for (int j = 0; j < Rule::max_state; ++j) s[j] = sd[j] ? sd[j][i] : T(0);
            Rule::update(pd[i], gd[i] * sc, s, o, k);
            for (int j = 0; j < Rule::max_state; ++j)
              if (sd[j]) sd[j][i] = s[j];
          }
        },
        8);
  }

  std::tuple<Ps...> params_;
  std::tuple<state_t<Ps>...> state_;
  options_type opts_;
  double lr_;
  std::int64_t steps_ = 0;
  std::vector<bool> frozen_;
  Tensor<std::int64_t, 1> step_tensor_;
};

/// Stochastic gradient descent (torch.optim.SGD). @code nn::SGD opt(model.params(), {.lr = 0.01, .momentum = 0.9});
template <class... Ps>
struct SGD : Optimizer<detail::SgdRule, Ps...> {
  SGD(std::tuple<Ps...> p, SGDOptions o = {}) : Optimizer<detail::SgdRule, Ps...>(std::move(p), o) {}
};
template <class... Ps>
SGD(std::tuple<Ps...>, SGDOptions) -> SGD<Ps...>;
template <class... Ps>
SGD(std::tuple<Ps...>) -> SGD<Ps...>;

/// Adam (torch.optim.Adam; weight decay is L2 added to the gradient).
template <class... Ps>
struct Adam : Optimizer<detail::AdamRule<false>, Ps...> {
  Adam(std::tuple<Ps...> p, AdamOptions o = {}) : Optimizer<detail::AdamRule<false>, Ps...>(std::move(p), o) {}
};
template <class... Ps>
Adam(std::tuple<Ps...>, AdamOptions) -> Adam<Ps...>;
template <class... Ps>
Adam(std::tuple<Ps...>) -> Adam<Ps...>;

/// AdamW (torch.optim.AdamW: decoupled weight decay, p *= 1 - lr * wd before the Adam step).
template <class... Ps>
struct AdamW : Optimizer<detail::AdamRule<true>, Ps...> {
  AdamW(std::tuple<Ps...> p, AdamOptions o = {.weight_decay = 0.01})
      : Optimizer<detail::AdamRule<true>, Ps...>(std::move(p), o) {}
};
template <class... Ps>
AdamW(std::tuple<Ps...>, AdamOptions) -> AdamW<Ps...>;
template <class... Ps>
AdamW(std::tuple<Ps...>) -> AdamW<Ps...>;

/// RMSprop (torch.optim.RMSprop, with momentum and centred variants).
template <class... Ps>
struct RMSprop : Optimizer<detail::RmspropRule, Ps...> {
  RMSprop(std::tuple<Ps...> p, RMSpropOptions o = {}) : Optimizer<detail::RmspropRule, Ps...>(std::move(p), o) {}
};
template <class... Ps>
RMSprop(std::tuple<Ps...>, RMSpropOptions) -> RMSprop<Ps...>;
template <class... Ps>
RMSprop(std::tuple<Ps...>) -> RMSprop<Ps...>;

}  // namespace nn
METAGRAD_NAMESPACE_END
