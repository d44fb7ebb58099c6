// A convolutional net with batch norm (2-d after each convolution, 1-d after the hidden linear layer) trained
// by the Trainer on the GPU against the CPU: losses, parameters and running statistics step by step, in double
// (cuDNN's batch norm and convolutions against the CPU's sweeps) and in float (cuDNN's batch norm against
// metagrad's own per-channel kernels, both as CUDA graphs); evaluation with the running statistics.
// Built only with METAGRAD_BUILD_CUDA_MODELS (a whole model's nvcc build takes minutes; CI skips it).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <metagrad/metagrad.hpp>
#include <string>
#include <vector>

#include "cuda_test_support.hpp"
#include "nn/bn_net.hpp"

namespace mg = metagrad;
namespace nn = metagrad::nn;
using cuda_test::have_device;

namespace {
const mg::Device gpu = mg::Device::cuda(0);

using test_models::bn_net_of;

template <class V>
std::vector<double> as_doubles(const nn::StateEntry& e) {
  std::vector<V> v(static_cast<std::size_t>(e.numel()));
  mg::detail::copy_bytes(v.data(), mg::Device::cpu(), e.data, e.device, v.size() * sizeof(V));
  return {v.begin(), v.end()};
}

// Every state entry of the model (weights, biases, running means and variances, batch counts), by name.
template <class Model>
std::vector<std::pair<std::string, std::vector<double>>> host_state(const Model& m) {
  std::vector<std::pair<std::string, std::vector<double>>> out;
  for (const auto& e : nn::state_of(m)) {
    if (e.dtype == mg::DType::i64)
      out.emplace_back(e.name, as_doubles<std::int64_t>(e));
    else if (e.dtype == mg::DType::f32)
      out.emplace_back(e.name, as_doubles<float>(e));
    else
      out.emplace_back(e.name, as_doubles<double>(e));
  }
  return out;
}

// Checks that two models' states agree entry by entry: max |a - b| <= tol * max |b| for each entry.
void check_states_close(const std::vector<std::pair<std::string, std::vector<double>>>& got,
                        const std::vector<std::pair<std::string, std::vector<double>>>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (std::size_t k = 0; k < got.size(); ++k) {
    CAPTURE(want[k].first);
    REQUIRE(got[k].first == want[k].first);
    REQUIRE(got[k].second.size() == want[k].second.size());
    double err = 0, scale = 0;
    for (std::size_t i = 0; i < got[k].second.size(); ++i) {
      err = std::max(err, std::fabs(got[k].second[i] - want[k].second[i]));
      scale = std::max(scale, std::fabs(want[k].second[i]));
    }
    CHECK(err <= tol * scale);
  }
}

// The largest relative change of any entry named `*running_var` between two states: the statistics moved.
double running_var_change(const std::vector<std::pair<std::string, std::vector<double>>>& now,
                          const std::vector<std::pair<std::string, std::vector<double>>>& before) {
  double worst = 0;
  for (std::size_t k = 0; k < now.size(); ++k) {
    if (now[k].first.find("running_var") == std::string::npos) continue;
    for (std::size_t i = 0; i < now[k].second.size(); ++i)
      worst = std::max(worst, std::fabs(now[k].second[i] - before[k].second[i]));
  }
  return worst;
}

template <class T>
struct Setup {
  using Model = decltype(bn_net_of<T>());
  static auto loss_fn() {
    return [](const auto& logits, const auto& labels) { return mg::cross_entropy(logits, labels); };
  }
  using LossFn = decltype(loss_fn());
  using Opt = decltype(nn::SGD(std::declval<Model&>().params(), nn::SGDOptions{}));
  using Trainer = nn::Trainer<Model, Opt, LossFn, 4, T>;

  // A model on `d` with the same initial values wherever it lives, its optimiser and its Trainer.
  std::shared_ptr<Model> model;
  std::shared_ptr<Opt> opt;
  LossFn fn = loss_fn();
  std::shared_ptr<Trainer> trainer;

  Setup(mg::Device d, bool graphs) {
    mg::manual_seed(11);
    model = std::make_shared<Model>(bn_net_of<T>());
    nn::to_device(*model, d);
    opt = std::make_shared<Opt>(model->params(), nn::SGDOptions{.lr = 0.05, .momentum = 0.9});
    nn::TrainerOptions o;
    o.out = nullptr;
    o.cuda_graphs = graphs;
    trainer = std::make_shared<Trainer>(*model, *opt, fn, o);
  }
};

template <class T>
std::vector<std::pair<mg::Tensor<T, 4>, mg::Tensor<std::int64_t, 1>>> host_batches(int n, mg::index_t batch) {
  mg::manual_seed(23);
  std::vector<std::pair<mg::Tensor<T, 4>, mg::Tensor<std::int64_t, 1>>> out;
  for (int b = 0; b < n; ++b)
    out.emplace_back(mg::eval(mg::normal<T>({batch, 1, 16, 16}) * T(2) + T(0.5)),
                     mg::randint<std::int64_t>(0, 10, {batch}));
  return out;
}

// The cases are function templates: nvcc 13's front end (cudafe++) takes many minutes over the same code in
// a plain function or a TEST_CASE body, seconds as a template (bench/README.md, "nvcc's front end").

// Double: the CPU, the GPU replaying CUDA graphs and the GPU run from the host take the same steps; every
// figure agrees to double rounding (other summation orders only).
template <class T>
void compare_double() {
  Setup<T> cpu(mg::Device::cpu(), false), graph(gpu, true), plain(gpu, false);
  CHECK(graph.trainer->device() == gpu);
  const auto start = host_state(*cpu.model);
  const auto batches = host_batches<T>(7, 32);
  for (std::size_t s = 0; s < batches.size(); ++s) {
    CAPTURE(s);
    const auto& [x, y] = batches[s];
    const auto [l_cpu, c_cpu] = cpu.trainer->train_step(x, y);
    const auto [l_graph, c_graph] = graph.trainer->train_step(x, y);
    const auto [l_plain, c_plain] = plain.trainer->train_step(x, y);
    CHECK(std::fabs(l_graph - l_cpu) <= 1e-10 * std::fabs(l_cpu));
    CHECK(std::fabs(l_plain - l_cpu) <= 1e-10 * std::fabs(l_cpu));
    CHECK(c_graph == c_cpu);
    CHECK(c_plain == c_cpu);
  }
  CHECK(graph.trainer->train_program().graph_replays() >= 5);
  CHECK(graph.trainer->train_program().graph_capture_error() == "");
  CHECK(plain.trainer->train_program().graph_replays() == 0);

  const auto want = host_state(*cpu.model);
  CHECK(running_var_change(want, start) > 1e-3);  // the running statistics moved
  check_states_close(host_state(*graph.model), want, 1e-9);
  check_states_close(host_state(*plain.model), want, 1e-9);
  CHECK(graph.model->template get<1>().num_batches_tracked() == 7);
  CHECK(cpu.model->template get<1>().num_batches_tracked() == 7);

  // Evaluation normalises with the running statistics; three times on the GPU (run, recorded, replayed).
  const auto [xe, ye] = host_batches<T>(1, 100)[0];
  const auto [le_cpu, ce_cpu] = cpu.trainer->eval_step(xe, ye);
  for (int rep = 0; rep < 3; ++rep) {
    CAPTURE(rep);
    const auto [le_graph, ce_graph] = graph.trainer->eval_step(xe, ye);
    CHECK(std::fabs(le_graph - le_cpu) <= 1e-10 * std::fabs(le_cpu));
    CHECK(ce_graph == ce_cpu);
  }
  // Evaluation leaves the running statistics as they were.
  check_states_close(host_state(*graph.model), want, 1e-9);
}

// Float: cuDNN's batch norm and metagrad's own kernels (both captured as CUDA graphs) follow the CPU.
template <class T>
void compare_float_paths() {
  const auto batches = host_batches<T>(6, 64);
  Setup<T> cpu(mg::Device::cpu(), false);
  for (const auto& [x, y] : batches) cpu.trainer->train_step(x, y);
  const auto want = host_state(*cpu.model);

  std::vector<std::vector<double>> losses(2);
  std::vector<std::vector<std::pair<std::string, std::vector<double>>>> states(2);
  for (int use_cudnn = 0; use_cudnn < 2; ++use_cudnn) {
    CAPTURE(use_cudnn);
    mg::cuda::set_batch_norm_use_cudnn(use_cudnn == 1);
    Setup<T> dev(gpu, true);
    for (const auto& [x, y] : batches) losses[use_cudnn].push_back(dev.trainer->train_step(x, y).first);
    CHECK(dev.trainer->train_program().graph_replays() >= 4);
    states[use_cudnn] = host_state(*dev.model);
    // float, other summation orders and algorithms: a few ulps per step, growing as the parameters drift.
    check_states_close(states[use_cudnn], want, 1e-3);
  }
  mg::cuda::set_batch_norm_use_cudnn(true);
  for (std::size_t s = 0; s < losses[0].size(); ++s) {
    CAPTURE(s);
    CHECK(std::fabs(losses[1][s] - losses[0][s]) <= 1e-4 * std::fabs(losses[0][s]));
  }
  check_states_close(states[1], states[0], 1e-3);
}
}  // namespace

TEST_CASE("cuda batch-norm net: Trainer steps on the GPU (graphs and plain) equal the CPU's (double)") {
  if (!have_device()) return;
  compare_double<double>();
}

TEST_CASE("cuda batch-norm net: cuDNN's batch norm and the own kernels both follow the CPU (float)") {
  if (!have_device()) return;
  compare_float_paths<float>();
}
