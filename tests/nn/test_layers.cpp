// Layers: PyTorch-style names and shapes, initial values, parameter counts, modes, batch-norm running
// statistics through a training step, dropout and embedding layers, and the summary.
#include <doctest/doctest.h>

#include <cmath>
#include <metagrad/nn.hpp>
#include <string>
#include <vector>

using namespace metagrad;

namespace {
auto lenet() {
  return nn::sequential<struct layers_lenet>(nn::conv2d(1, 6, 5, {.padding = 2}), nn::relu(), nn::max_pool2d(2),
                                             nn::conv2d(6, 16, 5), nn::relu(), nn::max_pool2d(2), nn::flatten(),
                                             nn::linear(400, 120), nn::relu(), nn::linear(120, 84), nn::relu(),
                                             nn::linear(84, 10));
}

std::vector<std::string> names(const std::vector<nn::StateEntry>& st) {
  std::vector<std::string> v;
  for (const auto& e : st) v.push_back(e.name);
  return v;
}
}  // namespace

TEST_CASE("layers: LeNet-5 has torch.nn.Sequential's keys, shapes and parameter count") {
  auto m = lenet();
  const auto st = nn::state_of(m);
  CHECK(names(st) == std::vector<std::string>{"0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias",
                                              "9.weight", "9.bias", "11.weight", "11.bias"});
  CHECK(st[0].shape == std::vector<index_t>{6, 1, 5, 5});
  CHECK(st[2].shape == std::vector<index_t>{16, 6, 5, 5});
  CHECK(st[4].shape == std::vector<index_t>{120, 400});
  // 156 + 2416 + 48120 + 10164 + 850, as torch's sum(p.numel() for p in model.parameters()).
  CHECK(nn::parameter_count(m) == 61706);
  const std::string s = m.summary(Shape<4>{{64, 1, 28, 28}});
  CHECK(s.find("[64, 6, 28, 28]") != std::string::npos);
  CHECK(s.find("[64, 16, 5, 5]") != std::string::npos);
  CHECK(s.find("[64, 400]") != std::string::npos);
  CHECK(s.find("trainable parameters: 61706") != std::string::npos);
  CHECK(m.describe().find("Conv2d(1, 6, kernel_size=(5, 5), padding=(2, 2))") != std::string::npos);
}

TEST_CASE("layers: nesting and named children compose names") {
  auto m = nn::sequential<struct nested>(nn::named("features", nn::sequential(nn::linear(3, 4), nn::relu())),
                                         nn::named("classifier", nn::linear(4, 2)));
  CHECK(names(nn::state_of(m)) ==
        std::vector<std::string>{"features.0.weight", "features.0.bias", "classifier.weight", "classifier.bias"});
  nn::Linear<struct alone> fc(3, 2);
  CHECK(names(nn::state_of(fc)) == std::vector<std::string>{"weight", "bias"});
}

TEST_CASE("layers: default initialisation follows torch (kaiming uniform a = sqrt 5, bias U(+-1/sqrt fan_in))") {
  manual_seed(11);
  nn::Linear<struct init_fc> fc(400, 300);
  const double bound = 1.0 / std::sqrt(400.0);
  const auto& w = fc.weight().value();
  double mx = 0, sum2 = 0;
  for (index_t i = 0; i < w.numel(); ++i) {
    mx = std::max(mx, std::abs(static_cast<double>(w.data()[i])));
    sum2 += static_cast<double>(w.data()[i]) * w.data()[i];
  }
  CHECK(mx <= bound);
  CHECK(mx > 0.99 * bound);
  // U(-b, b) has variance b^2 / 3.
  CHECK(sum2 / static_cast<double>(w.numel()) == doctest::Approx(bound * bound / 3).epsilon(0.02));
  const auto& b = fc.bias().value();
  for (index_t i = 0; i < b.numel(); ++i) CHECK(std::abs(b.data()[i]) <= bound);
  // Same seed, same weights.
  manual_seed(11);
  nn::Linear<struct init_fc2> fc2(400, 300);
  CHECK(std::equal(w.data(), w.data() + w.numel(), fc2.weight().value().data()));

  Tensor<float, 4> k({8, 4, 3, 3});
  nn::xavier_uniform_(k);
  const double xb = std::sqrt(6.0 / (4 * 9 + 8 * 9));
  for (index_t i = 0; i < k.numel(); ++i) CHECK(std::abs(k.data()[i]) <= xb);
  CHECK_THROWS_AS(nn::Linear<struct bad_fc>(0, 3), error);
}

TEST_CASE("layers: batch norm uses batch statistics in training and updates its running statistics") {
  auto bn = nn::make<struct bn_tag>(nn::batch_norm2d<double>(2, {.eps = 1e-5, .momentum = 0.1}));
  METAGRAD_INPUT(x, double, 4);
  // Channel 0 holds 1..8, channel 1 holds 10 x (1..8); batch 2, 2x2 planes.
  Tensor<double, 4> xv({2, 2, 2, 2});
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 2; ++c)
      for (int i = 0; i < 4; ++i) xv.data()[((n * 2 + c) * 4) + i] = (c ? 10.0 : 1.0) * (n * 4 + i + 1);
  x.bind(xv);
  auto y = bn(x);
  auto loss = sum(y * y);
  nn::SGD opt(bn.params(), {.lr = 0.0});
  nn::TrainStep step(opt, loss, bn.updates(x));
  step.run();
  // Batch mean of 1..8 is 4.5, unbiased variance 6; running = 0.9 * (0, 1) + 0.1 * (mean, var).
  CHECK(bn.running_mean().data()[0] == doctest::Approx(0.45));
  CHECK(bn.running_mean().data()[1] == doctest::Approx(4.5));
  CHECK(bn.running_var().data()[0] == doctest::Approx(0.9 + 0.6));
  CHECK(bn.running_var().data()[1] == doctest::Approx(0.9 + 60.0));
  CHECK(bn.num_batches_tracked() == 1);
  // Training output: each channel normalised with its biased variance (5.25 for 1..8).
  Tensor<double, 4> yt = y;
  CHECK(yt.data()[0] == doctest::Approx((1 - 4.5) / std::sqrt(5.25 + 1e-5)));
  // Eval mode: the running statistics.
  bn.eval();
  Tensor<double, 4> ye = bn(x);
  CHECK(ye.data()[0] == doctest::Approx((1 - 0.45) / std::sqrt(1.5 + 1e-5)));
  const auto st = nn::state_of(bn);
  CHECK(names(st) == std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"});
  CHECK(st[4].shape.empty());
}

TEST_CASE("layers: dropout layer masks in training, is the identity in eval, and changes mask per step") {
  nn::Dropout d(0.5);
  METAGRAD_INPUT(x, float, 1);
  x.bind(eval(full<float>({4000}, 1.0f)));
  Tensor<float, 1> a = d(x);
  int kept = 0;
  for (index_t i = 0; i < 4000; ++i) {
    CHECK((a.data()[i] == 0.0f || a.data()[i] == 2.0f));
    kept += a.data()[i] != 0;
  }
  CHECK(kept > 1800);
  CHECK(kept < 2200);
  d.advance();
  Tensor<float, 1> b = d(x);
  int same = 0;
  for (index_t i = 0; i < 4000; ++i) same += a.data()[i] == b.data()[i];
  CHECK(same < 2300);  // a new mask (about half agree by chance)
  d.eval();
  Tensor<float, 1> c = d(x);
  for (index_t i = 0; i < 4000; ++i) CHECK(c.data()[i] == 1.0f);
  CHECK_THROWS_AS(nn::Dropout(1.5), error);
}

TEST_CASE("layers: embedding looks rows up and its padding row starts at zero") {
  manual_seed(2);
  auto emb = nn::make<struct emb_tag>(nn::embedding(10, 3, 0));
  METAGRAD_INPUT(ids, std::int64_t, 1);
  ids.bind(Tensor<std::int64_t, 1>{0, 4, 4});
  Tensor<float, 2> v = emb(ids);
  const auto& w = emb.weight().value();
  for (int j = 0; j < 3; ++j) {
    CHECK(v.data()[j] == 0.0f);
    CHECK(v.data()[3 + j] == w.data()[12 + j]);
    CHECK(v.data()[6 + j] == w.data()[12 + j]);
  }
  CHECK_THROWS_AS(nn::make<struct emb_bad>(nn::embedding(10, 3, 10)), error);
}
