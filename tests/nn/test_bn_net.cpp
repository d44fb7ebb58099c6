// A batch-normalised convolutional net (conv, batch norm, ReLU, pool, twice; then linear, batch norm, ReLU,
// linear) trained by the Trainer on the CPU: its running statistics follow torch's update rule step by step,
// it learns, and evaluation with the running statistics agrees with training. This file is built with
// -ftemplate-depth=200 (tests/CMakeLists.txt), the limit of nvcc's front end: the type-level walks of
// autodiff and of the Program's plan must stay within it for a net of this depth (they used to recurse once
// per node of the whole expression, which stopped nvcc on this model).
#include <doctest/doctest.h>

#include <cmath>
#include <metagrad/metagrad.hpp>
#include <vector>

#include "nn/bn_net.hpp"

namespace mg = metagrad;
namespace nn = metagrad::nn;

namespace {
using test_models::bn_net_of;

struct Batch {
  mg::Tensor<double, 4> x;
  mg::Tensor<std::int64_t, 1> y;
};

// Ten classes of 1 x 16 x 16 images: class k is a bright 4 x 4 square at one of ten places, on noise, with
// its brightness varying from image to image (so that the statistics of every channel move).
std::vector<Batch> make_batches(int n, mg::index_t batch, std::uint64_t seed) {
  mg::manual_seed(seed);
  std::vector<Batch> out;
  for (int b = 0; b < n; ++b) {
    Batch bt{mg::eval(mg::normal<double>({batch, 1, 16, 16}) * 0.3), mg::randint<std::int64_t>(0, 10, {batch})};
    const auto gain = mg::eval(mg::uniform<double>({batch}, 1.0, 3.0));
    for (mg::index_t i = 0; i < batch; ++i) {
      static constexpr mg::index_t at[10][2] = {{0, 0},  {0, 6},  {0, 12}, {6, 0},   {6, 6},
                                                {6, 12}, {12, 0}, {12, 6}, {12, 12}, {3, 3}};
      const auto k = bt.y.data()[i];
      for (mg::index_t r = 0; r < 4; ++r)
        for (mg::index_t c = 0; c < 4; ++c) bt.x.data()[i * 256 + (at[k][0] + r) * 16 + at[k][1] + c] += gain.data()[i];
    }
    out.push_back(std::move(bt));
  }
  return out;
}

struct Loader {
  const std::vector<Batch>* batches;
  std::size_t num_batches() const { return batches->size(); }
  auto begin() const { return batches->begin(); }
  auto end() const { return batches->end(); }
};

// Per-channel mean and unbiased variance of y [N, C, H, W], in plain loops.
void channel_stats(const mg::Tensor<double, 4>& y, std::vector<double>& mean, std::vector<double>& var) {
  const auto n = y.shape()[0], c = y.shape()[1], hw = y.shape()[2] * y.shape()[3];
  mean.assign(static_cast<std::size_t>(c), 0.0);
  var.assign(static_cast<std::size_t>(c), 0.0);
  for (mg::index_t ch = 0; ch < c; ++ch) {
    double s = 0;
    for (mg::index_t i = 0; i < n; ++i)
      for (mg::index_t j = 0; j < hw; ++j) s += y.data()[(i * c + ch) * hw + j];
    const double m = s / static_cast<double>(n * hw);
    double q = 0;
    for (mg::index_t i = 0; i < n; ++i)
      for (mg::index_t j = 0; j < hw; ++j)
        q += (y.data()[(i * c + ch) * hw + j] - m) * (y.data()[(i * c + ch) * hw + j] - m);
    mean[static_cast<std::size_t>(ch)] = m;
    var[static_cast<std::size_t>(ch)] = q / static_cast<double>(n * hw - 1);
  }
}
}  // namespace

TEST_CASE("bn net: a batch-normalised conv net trains on the CPU; running statistics follow torch's rule") {
  using T = double;
  mg::manual_seed(5);
  auto model = bn_net_of<T>();
  nn::SGD opt(model.params(), {.lr = 0.05, .momentum = 0.9});
  auto ce = [](const auto& logits, const auto& labels) { return mg::cross_entropy(logits, labels); };
  nn::TrainerOptions o;
  o.out = nullptr;
  o.epochs = 3;
  nn::Trainer<decltype(model), decltype(opt), decltype(ce), 4, T> trainer(model, opt, ce, o);

  // The first steps one by one: before each, the first convolution's output from the current parameters
  // gives the batch statistics the first batch-norm layer must fold into its running ones (momentum 0.1,
  // unbiased variance, as torch.nn.BatchNorm2d).
  const auto warmup = make_batches(4, 32, 1);
  std::vector<double> run_mean(8, 0.0), run_var(8, 1.0), mean, var;
  for (const auto& b : warmup) {
    const mg::Tensor<double, 4> conv1 = model.get<0>()(b.x);
    channel_stats(conv1, mean, var);
    for (std::size_t c = 0; c < 8; ++c) {
      run_mean[c] = 0.9 * run_mean[c] + 0.1 * mean[c];
      run_var[c] = 0.9 * run_var[c] + 0.1 * var[c];
    }
    trainer.train_step(b.x, b.y);
    const auto& bn = model.get<1>();
    for (std::size_t c = 0; c < 8; ++c) {
      CAPTURE(c);
      CHECK(bn.running_mean().data()[c] == doctest::Approx(run_mean[c]).epsilon(1e-10));
      CHECK(bn.running_var().data()[c] == doctest::Approx(run_var[c]).epsilon(1e-10));
    }
  }
  CHECK(model.get<1>().num_batches_tracked() == 4);
  CHECK(model.get<5>().num_batches_tracked() == 4);
  CHECK(model.get<10>().num_batches_tracked() == 4);

  // Then whole epochs: it learns, and evaluation (normalising with the running statistics) agrees.
  const auto train = make_batches(30, 32, 2), test = make_batches(5, 50, 3);
  Loader train_loader{&train}, test_loader{&test};
  const auto stats = trainer.fit(train_loader, &test_loader);
  REQUIRE(stats.size() == 3);
  CHECK(stats.back().train_loss < stats.front().train_loss);
  CHECK(stats.back().train_accuracy > 0.9);
  CHECK(stats.back().test_accuracy > 0.9);
  CHECK(model.get<1>().num_batches_tracked() == 4 + 90);
}
