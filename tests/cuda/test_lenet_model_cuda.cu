// LeNet-5 on the GPU against the CPU: one batch's loss and gradients in double precision (cuDNN convolutions
// and pooling, cuBLAS, fused kernels, reductions, all in one compiled Program), and whole training steps of
// the Trainer in float: on the GPU against the CPU, and replayed as a CUDA graph against run from the host;
// fit() with its GPU default (asynchronous uploads, running sums read when due) against reading every step.
// Built only with METAGRAD_BUILD_CUDA_MODELS (a whole model's nvcc build takes many minutes; CI skips it).
#include <doctest/doctest.h>

#include <cmath>
#include <metagrad/metagrad.hpp>
#include <string>
#include <vector>

#include "cuda_test_support.hpp"

namespace mg = metagrad;
namespace nn = metagrad::nn;
using cuda_test::have_device;

namespace {
const mg::Device gpu = mg::Device::cuda(0);

template <class T>
auto lenet_of() {
  return nn::sequential<struct lenet_cuda_test>(nn::conv2d<T>(1, 6, 5, {.padding = 2}), nn::relu(), nn::max_pool2d(2),
                                                nn::conv2d<T>(6, 16, 5), nn::relu(), nn::max_pool2d(2), nn::flatten(),
                                                nn::linear<T>(16 * 5 * 5, 120), nn::relu(), nn::linear<T>(120, 84),
                                                nn::relu(), nn::linear<T>(84, 10));
}

// max |a - b| / (max |b| + tiny): errors relative to the tensor's scale, so that near-zero entries of a
// gradient do not demand a relative precision their summation order cannot give.
template <class A, class B>
double scaled_error(const A& a, const B& b) {
  const auto va = a.to_vector(), vb = b.to_vector();
  REQUIRE(va.size() == vb.size());
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < va.size(); ++i) {
    err = std::max(err, std::fabs(static_cast<double>(va[i]) - static_cast<double>(vb[i])));
    scale = std::max(scale, std::fabs(static_cast<double>(vb[i])));
  }
  return err / (scale + 1e-300);
}

template <class Model>
std::vector<std::vector<double>> param_values(const Model& m) {
  std::vector<std::vector<double>> out;
  nn::for_each_param(m.params(), [&](const auto& p) {
    const auto v = p.value().to_vector();
    out.emplace_back(v.begin(), v.end());
  });
  return out;
}

double max_scaled_difference(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
  double worst = 0;
  for (std::size_t k = 0; k < a.size(); ++k) {
    double err = 0, scale = 0;
    for (std::size_t i = 0; i < a[k].size(); ++i) {
      err = std::max(err, std::fabs(a[k][i] - b[k][i]));
      scale = std::max(scale, std::fabs(b[k][i]));
    }
    worst = std::max(worst, err / (scale + 1e-300));
  }
  return worst;
}
}  // namespace

namespace {
// Both cases are function templates: written directly in a TEST_CASE, this code kept nvcc 13's front end
// (cudafe++) busy for more than 10 minutes (bench/README.md, "nvcc's front end"); as templates, seconds.
template <class T>
void compare_one_batch() {
  mg::manual_seed(3);
  auto cpu_model = lenet_of<T>();
  mg::manual_seed(3);
  auto gpu_model = lenet_of<T>();
  nn::to_device(gpu_model, gpu);

  mg::Input<struct lenet_x, T, 4> x;
  mg::Input<struct lenet_y, std::int64_t, 1> y;
  const auto images = mg::eval(mg::normal<T>({32, 1, 28, 28}));
  const auto labels = mg::randint<std::int64_t>(0, 10, {32});

  auto step_of = [&](auto& model) {
    const auto loss = mg::cross_entropy(model(x), y);
    const auto grads = std::apply([&](const auto&... p) { return mg::grad(loss, p...); }, model.params());
    return std::apply([&](const auto&... g) { return mg::compile(loss, g...); }, grads);
  };
  auto cpu_step = step_of(cpu_model);
  auto gpu_step = step_of(gpu_model);
  x.bind(images);
  y.bind(labels);
  const auto& want = cpu_step.run();
  const auto images_d = images.to(gpu);
  const auto labels_d = labels.to(gpu);
  x.bind(images_d);
  y.bind(labels_d);
  const auto& got = gpu_step.run();

  CHECK(std::get<0>(got).device() == gpu);
  // Every sum is taken in another order on the GPU (cuDNN's algorithms, warp reductions): double rounding
  // keeps the difference near 1e-15 of the values' scale; 1e-10 leaves room for the longest sums (fc1: 400).
  const auto errors = [&]<std::size_t... I>(std::index_sequence<I...>) {
    return std::vector<double>{scaled_error(std::get<I>(got), std::get<I>(want))...};
  }
  (std::make_index_sequence<std::tuple_size_v<std::remove_cvref_t<decltype(want)>>>{});
  REQUIRE(errors.size() == 11);  // the loss and ten parameters' gradients
  for (std::size_t i = 0; i < errors.size(); ++i) {
    CAPTURE(i);
    CHECK(errors[i] < 1e-10);
  }
}
}  // namespace

TEST_CASE("cuda lenet: one batch's loss and gradients on the GPU equal the CPU's (double)") {
  if (!have_device()) return;
  compare_one_batch<double>();
}

namespace {
template <class T>
void compare_training_steps() {
  auto loss_fn = [](const auto& logits, const auto& labels) { return mg::cross_entropy(logits, labels); };
  using Model = decltype(lenet_of<T>());
  auto make = [&](mg::Device d) {
    mg::manual_seed(5);
    auto m = std::make_shared<Model>(lenet_of<T>());
    nn::to_device(*m, d);
    return m;
  };
  auto m_cpu = make(mg::Device::cpu()), m_graph = make(gpu), m_plain = make(gpu);
  nn::SGD o_cpu(m_cpu->params(), {.lr = 0.05, .momentum = 0.9});
  nn::SGD o_graph(m_graph->params(), {.lr = 0.05, .momentum = 0.9});
  nn::SGD o_plain(m_plain->params(), {.lr = 0.05, .momentum = 0.9});
  using Opt = decltype(o_cpu);
  nn::TrainerOptions quiet;
  quiet.out = nullptr;
  nn::TrainerOptions no_graphs = quiet;
  no_graphs.cuda_graphs = false;
  nn::Trainer<Model, Opt, decltype(loss_fn), 4> t_cpu(*m_cpu, o_cpu, loss_fn, quiet);
  nn::Trainer<Model, Opt, decltype(loss_fn), 4> t_graph(*m_graph, o_graph, loss_fn, quiet);
  nn::Trainer<Model, Opt, decltype(loss_fn), 4> t_plain(*m_plain, o_plain, loss_fn, no_graphs);
  CHECK(t_graph.device() == gpu);

  for (int step = 0; step < 8; ++step) {
    // Host batches, as a loader yields them: the Trainer copies them into its device tensors.
    const auto xb = mg::eval(mg::normal<T>({64, 1, 28, 28}));
    const auto yb = mg::randint<std::int64_t>(0, 10, {64});
    const auto [l_cpu, c_cpu] = t_cpu.train_step(xb, yb);
    const auto [l_graph, c_graph] = t_graph.train_step(xb, yb);
    const auto [l_plain, c_plain] = t_plain.train_step(xb, yb);
    CAPTURE(step);
    // float, other summation orders and cuDNN's algorithms: agreement to a few ulps of the loss per step,
    // growing slowly as the parameters drift apart.
    CHECK(std::fabs(l_graph - l_cpu) <= 1e-4 * std::fabs(l_cpu));
    CHECK(std::fabs(l_graph - l_plain) <= 1e-5 * std::fabs(l_plain));
  }
  CHECK(t_graph.train_program().graph_replays() >= 5);
  CHECK(t_graph.train_program().graph_capture_error() == "");
  CHECK(t_plain.train_program().graph_replays() == 0);
  CHECK(max_scaled_difference(param_values(*m_graph), param_values(*m_plain)) < 1e-5);
  CHECK(max_scaled_difference(param_values(*m_graph), param_values(*m_cpu)) < 1e-3);

  // Evaluation on the GPU gives the CPU's figures for the same parameters.
  const auto xe = mg::eval(mg::normal<T>({200, 1, 28, 28}));
  const auto ye = mg::randint<std::int64_t>(0, 10, {200});
  const auto [le_graph, ce_graph] = t_graph.eval_step(xe, ye);
  const auto [le_plain, ce_plain] = t_plain.eval_step(xe, ye);
  CHECK(std::fabs(le_graph - le_plain) <= 1e-5 * std::fabs(le_plain));
  CHECK(std::abs(ce_graph - ce_plain) <= 1);  // a near-tie of two logits may flip

  // fit() over host batches: the GPU default (uploads that do not wait, running sums read when due) against
  // reading the loss after every step. The same steps in the same order: the same figures and parameters, up
  // to cuDNN algorithms that may add in another order from run to run.
  struct Batch {
    mg::Tensor<T, 4> x;
    mg::Tensor<std::int64_t, 1> y;
  };
  struct Loader {
    const std::vector<Batch>* batches;
    std::size_t num_batches() const { return batches->size(); }
    auto begin() const { return batches->begin(); }
    auto end() const { return batches->end(); }
  };
  std::vector<Batch> batches;
  for (int b = 0; b < 12; ++b)
    batches.push_back({mg::eval(mg::normal<T>({64, 1, 28, 28})), mg::randint<std::int64_t>(0, 10, {64})});
  Loader loader{&batches};
  auto m_every = make(gpu), m_due = make(gpu);
  nn::SGD o_every(m_every->params(), {.lr = 0.05, .momentum = 0.9});
  nn::SGD o_due(m_due->params(), {.lr = 0.05, .momentum = 0.9});
  nn::TrainerOptions every = quiet;
  every.read_loss_every_step = true;
  nn::Trainer<Model, Opt, decltype(loss_fn), 4> t_every(*m_every, o_every, loss_fn, every);
  nn::Trainer<Model, Opt, decltype(loss_fn), 4> t_due(*m_due, o_due, loss_fn, quiet);
  const auto s_every = t_every.fit(loader, &loader);
  const auto s_due = t_due.fit(loader, &loader);
  REQUIRE(s_every.size() == 1);
  REQUIRE(s_due.size() == 1);
  CHECK(std::fabs(s_due[0].train_loss - s_every[0].train_loss) <= 1e-5 * std::fabs(s_every[0].train_loss));
  CHECK(std::fabs(s_due[0].train_accuracy - s_every[0].train_accuracy) <= 2.0 / 768);
  CHECK(std::fabs(s_due[0].test_loss - s_every[0].test_loss) <= 1e-5 * std::fabs(s_every[0].test_loss));
  CHECK(max_scaled_difference(param_values(*m_due), param_values(*m_every)) < 1e-5);
  CHECK(t_due.train_program().graph_replays() >= 9);
}
}  // namespace

TEST_CASE("cuda lenet: training steps on the GPU follow the CPU's, and CUDA-graph replay follows plain runs") {
  if (!have_device()) return;
  compare_training_steps<float>();
}
