// Optimisers, schedules and training steps: updates against independent reference loops written from
// PyTorch's documented algorithms, and a few steps checked by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <metagrad/nn.hpp>
#include <vector>

using namespace metagrad;

namespace {
struct qp {};
struct hp {};
struct ca {};
struct cb {};

// loss = sum(c * p) + 0.5 * sum(p * p): its gradient is c + p, so the trajectory depends on the update.
struct Quadratic {
  std::vector<double> c{0.5, -1.0, 2.0};
  std::vector<double> p0{1.0, 0.25, -0.75};
  std::vector<double> grad(const std::vector<double>& p) const {
    std::vector<double> g(p.size());
    for (std::size_t i = 0; i < p.size(); ++i) g[i] = c[i] + p[i];
    return g;
  }
};

Tensor<double, 1> vec(const std::vector<double>& v) {
  Tensor<double, 1> t(Shape<1>{{static_cast<index_t>(v.size())}});
  for (std::size_t i = 0; i < v.size(); ++i) t.data()[i] = v[i];
  return t;
}

// Runs `steps` metagrad steps with optimiser type built by `make` and compares with `ref` (which updates a
// plain vector given the gradient) after every step.
template <class Make, class Ref>
void check_trajectory(Make make, Ref ref, int steps = 5) {
  Quadratic q;
  Param<qp, double, 1> p("p", vec(q.p0));
  Const<double, 1> c(vec(q.c));
  auto loss = sum(c * p) + 0.5 * sum(p * p);
  auto opt = make(std::make_tuple(p));
  nn::TrainStep step(opt, loss);
  std::vector<double> expect = q.p0;
  for (int s = 0; s < steps; ++s) {
    step.run();
    ref(expect, q.grad(expect), s + 1);
    for (std::size_t i = 0; i < expect.size(); ++i)
      CHECK(p.value().data()[i] == doctest::Approx(expect[i]).epsilon(1e-12));
  }
}

}  // namespace

TEST_CASE("optim: SGD steps computed by hand") {
  // p = 1, gradient 0.5 constant (loss = 0.5 p), lr 0.1, momentum 0.9:
  // step 1: buf = 0.5, p = 0.95; step 2: buf = 0.9 * 0.5 + 0.5 = 0.95, p = 0.855.
  Param<hp, double, 1> p("p", vec({1.0}));
  auto loss = 0.5 * sum(p);
  nn::SGD opt(std::make_tuple(p), {.lr = 0.1, .momentum = 0.9});
  nn::TrainStep step(opt, loss);
  step.run();
  CHECK(p.value().data()[0] == doctest::Approx(0.95));
  step.run();
  CHECK(p.value().data()[0] == doctest::Approx(0.855));
  CHECK(opt.steps() == 2);
}

TEST_CASE("optim: SGD variants follow torch.optim.SGD") {
  for (const nn::SGDOptions o : {nn::SGDOptions{.lr = 0.1}, nn::SGDOptions{.lr = 0.05, .momentum = 0.9},
                                 nn::SGDOptions{.lr = 0.05, .momentum = 0.9, .dampening = 0.3, .weight_decay = 0.01},
                                 nn::SGDOptions{.lr = 0.05, .momentum = 0.8, .weight_decay = 0.1, .nesterov = true}}) {
    CAPTURE(o.momentum);
    CAPTURE(o.nesterov);
    std::vector<double> buf(3, 0.0);
    check_trajectory([&](auto params) { return nn::SGD(params, o); },
                     [&](std::vector<double>& p, std::vector<double> g, int t) {
                       for (std::size_t i = 0; i < p.size(); ++i) {
                         g[i] += o.weight_decay * p[i];
                         if (o.momentum != 0) {
                           buf[i] = t == 1 ? g[i] : o.momentum * buf[i] + (1 - o.dampening) * g[i];
                           g[i] = o.nesterov ? g[i] + o.momentum * buf[i] : buf[i];
                         }
                         p[i] -= o.lr * g[i];
                       }
                     });
  }
}

TEST_CASE("optim: Adam, AdamW and AMSGrad follow torch.optim") {
  for (const bool decoupled : {false, true}) {
    for (const nn::AdamOptions o : {nn::AdamOptions{.lr = 0.01}, nn::AdamOptions{.lr = 0.02, .weight_decay = 0.1},
                                    nn::AdamOptions{.lr = 0.01, .beta1 = 0.8, .beta2 = 0.9, .amsgrad = true}}) {
      CAPTURE(decoupled);
      CAPTURE(o.amsgrad);
      std::vector<double> m(3, 0.0), v(3, 0.0), vmax(3, 0.0);
      auto ref = [&](std::vector<double>& p, std::vector<double> g, int t) {
        for (std::size_t i = 0; i < p.size(); ++i) {
          if (decoupled)
            p[i] *= 1 - o.lr * o.weight_decay;
          else
            g[i] += o.weight_decay * p[i];
          m[i] = o.beta1 * m[i] + (1 - o.beta1) * g[i];
          v[i] = o.beta2 * v[i] + (1 - o.beta2) * g[i] * g[i];
          vmax[i] = std::max(vmax[i], v[i]);
          const double bc1 = 1 - std::pow(o.beta1, t), bc2 = 1 - std::pow(o.beta2, t);
          const double denom = std::sqrt(o.amsgrad ? vmax[i] : v[i]) / std::sqrt(bc2) + o.eps;
          p[i] -= o.lr / bc1 * m[i] / denom;
        }
      };
      if (decoupled)
        check_trajectory([&](auto params) { return nn::AdamW(params, o); }, ref);
      else
        check_trajectory([&](auto params) { return nn::Adam(params, o); }, ref);
    }
  }
}

TEST_CASE("optim: RMSprop plain, with momentum and centred") {
  for (const nn::RMSpropOptions o :
       {nn::RMSpropOptions{.lr = 0.01}, nn::RMSpropOptions{.lr = 0.01, .weight_decay = 0.05, .momentum = 0.9},
        nn::RMSpropOptions{.lr = 0.005, .alpha = 0.9, .momentum = 0.5, .centered = true}}) {
    CAPTURE(o.centered);
    std::vector<double> sq(3, 0.0), buf(3, 0.0), ga(3, 0.0);
    check_trajectory([&](auto params) { return nn::RMSprop(params, o); },
                     [&](std::vector<double>& p, std::vector<double> g, int) {
                       for (std::size_t i = 0; i < p.size(); ++i) {
                         g[i] += o.weight_decay * p[i];
                         sq[i] = o.alpha * sq[i] + (1 - o.alpha) * g[i] * g[i];
                         double avg = sq[i];
                         if (o.centered) {
                           ga[i] = o.alpha * ga[i] + (1 - o.alpha) * g[i];
                           avg -= ga[i] * ga[i];
                         }
                         avg = std::sqrt(avg) + o.eps;
                         if (o.momentum > 0) {
                           buf[i] = o.momentum * buf[i] + g[i] / avg;
                           p[i] -= o.lr * buf[i];
                         } else {
                           p[i] -= o.lr * g[i] / avg;
                         }
                       }
                     });
  }
}

TEST_CASE("optim: gradient clipping by global norm, freezing, bad options") {
  // Two params with gradients (3, 4) and (12): global norm 13; clipped to 1.3 every gradient is scaled by
  // 0.1 (up to the 1e-6 guard torch also adds).
  Param<ca, double, 1> a("a", vec({0.0, 0.0}));
  Param<cb, double, 1> b("b", vec({0.0}));
  auto loss = sum(Const<double, 1>(vec({3.0, 4.0})) * a) + 12.0 * sum(b);
  nn::SGD opt(std::make_tuple(a, b), {.lr = 1.0});
  nn::TrainStep step(opt, loss, std::tuple<>(), std::tuple<>(), {.clip_grad_norm = 1.3});
  auto out = step.run();
  CHECK(out.grad_norm == doctest::Approx(13.0));
  CHECK(a.value().data()[0] == doctest::Approx(-0.3).epsilon(1e-6));
  CHECK(a.value().data()[1] == doctest::Approx(-0.4).epsilon(1e-6));
  CHECK(b.value().data()[0] == doctest::Approx(-1.2).epsilon(1e-6));

  CHECK(opt.freeze("b") == 1);
  step.run();
  CHECK(b.value().data()[0] == doctest::Approx(-1.2).epsilon(1e-6));  // frozen: unchanged
  CHECK(a.value().data()[0] == doctest::Approx(-0.6).epsilon(1e-6));

  CHECK_THROWS_AS(nn::SGD(std::make_tuple(a), {.lr = 0.1, .nesterov = true}), error);
  CHECK_THROWS_AS(nn::Adam(std::make_tuple(a), {.beta1 = 1.0}), error);
}

TEST_CASE("schedule: step, cosine, warm-up and plateau follow torch.optim.lr_scheduler") {
  auto st = nn::step_lr(2, 0.5);
  CHECK(st(0, 1.0) == 1.0);
  CHECK(st(1.9, 1.0) == 1.0);
  CHECK(st(2, 1.0) == 0.5);
  CHECK(st(5, 1.0) == 0.25);
  auto cs = nn::cosine_lr(10, 0.1);
  CHECK(cs(0, 1.0) == doctest::Approx(1.0));
  CHECK(cs(5, 1.0) == doctest::Approx(0.55));
  CHECK(cs(10, 1.0) == doctest::Approx(0.1));
  CHECK(cs(20, 1.0) == doctest::Approx(0.1));
  auto wu = nn::linear_warmup(2, nn::step_lr(1, 0.5), 0.2);
  CHECK(wu(0, 1.0) == doctest::Approx(0.2));
  CHECK(wu(1, 1.0) == doctest::Approx(0.6));
  CHECK(wu(2, 1.0) == doctest::Approx(1.0));
  CHECK(wu(3, 1.0) == doctest::Approx(0.5));
  nn::ReduceLROnPlateau pl({.factor = 0.5, .patience = 1});
  double lr = 1.0;
  lr = pl.step(1.0, lr);  // best
  lr = pl.step(0.5, lr);  // better
  lr = pl.step(0.6, lr);  // 1 bad epoch: within patience
  CHECK(lr == 1.0);
  lr = pl.step(0.7, lr);  // 2 bad epochs > patience: halve
  CHECK(lr == 0.5);
  CHECK_THROWS_AS(nn::step_lr(0), error);
}
