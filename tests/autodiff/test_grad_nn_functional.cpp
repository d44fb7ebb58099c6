// Gradients of softmax, log_softmax and the losses (expr/softmax.hpp, expr/loss.hpp) against central
// differences of the forward pass in double (tests/autodiff/grad_check.hpp): softmax and log_softmax on every
// axis of a rank-3 input; cross_entropy with every reduction, label smoothing and ignore_index (the ignored
// rows get exactly zero); nll_loss, binary_cross_entropy_with_logits (also at x = 0, where the stable form has
// its kinks) and mse_loss with both operands.
#include <doctest/doctest.h>

#include <cstdint>
#include <metagrad/metagrad.hpp>
#include <string>

#include "grad_check.hpp"

using namespace grad_test;

namespace {
constexpr unsigned kSeeds[] = {11, 12};
}

TEST_CASE("autodiff: softmax and log_softmax on every axis") {
  for (unsigned seed : kSeeds) {
    reseed(seed);
    const auto s = random_shape<3>(2, 4);
    mg::Input<struct sm_x, double, 3> x("x");
    x.bind(uniform(s, -3, 3));
    const auto w = uniform(s, -1, 1);
    for (int axis : {0, 1, -1}) {
      const std::string where = " over axis " + std::to_string(axis) + " of " + shape_string(s);
      check_grad("softmax" + where, mg::sum(mg::softmax(x, axis) * w), x);
      check_grad("log_softmax" + where, mg::sum(mg::log_softmax(x, axis) * w), x);
    }
  }
  SUBCASE("large logits") {
    mg::Input<struct sm_big, double, 2> x("x");
    x.bind(uniform(mg::Shape<2>{3, 4}, 995, 1000));
    const auto w = uniform(mg::Shape<2>{3, 4}, -1, 1);
    check_grad("log_softmax of logits near 1000", mg::sum(mg::log_softmax(x) * w), x);
  }
}

TEST_CASE("autodiff: cross_entropy with every reduction, label smoothing and ignore_index") {
  reseed(21);
  mg::Input<struct ce_x, double, 2> x("x");
  mg::Input<struct ce_y, std::int64_t, 1> y("y");
  x.bind(uniform(mg::Shape<2>{5, 4}, -3, 3));
  y.bind(mg::Tensor<std::int64_t, 1>({3, 0, 1, 3, 2}));
  const auto w = uniform(mg::Shape<1>{5}, -1, 1);
  for (double e : {0.0, 0.2}) {
    const std::string opt = " (label_smoothing " + num(e) + ")";
    check_grad("cross_entropy mean" + opt, mg::cross_entropy(x, y, {e, {}}), x);
    check_grad("cross_entropy sum" + opt, mg::cross_entropy<mg::Reduction::sum>(x, y, {e, {}}), x);
    check_grad("cross_entropy none" + opt, mg::sum(mg::cross_entropy<mg::Reduction::none>(x, y, {e, {}}) * w), x);
    check_grad("cross_entropy mean, ignore_index 3" + opt, mg::cross_entropy(x, y, {e, 3}), x);
  }
  SUBCASE("the ignored rows get exactly zero, the others softmax - onehot over the count") {
    auto [dx] = mg::grad(mg::cross_entropy(x, y, {0.0, 3}), x);
    const auto g = mg::eval(dx);
    const auto xv = x.value();
    for (index_t i = 0; i < 5; ++i) {
      const auto label = y.value()(i);
      double z = 0;
      for (index_t j = 0; j < 4; ++j) z += std::exp(xv(i, j));
      for (index_t j = 0; j < 4; ++j) {
        const double want = label == 3 ? 0.0 : (std::exp(xv(i, j)) / z - (j == label ? 1.0 : 0.0)) / 3.0;
        CHECK(g(i, j) == doctest::Approx(want).epsilon(1e-12));
      }
    }
  }
  SUBCASE("int32 labels") {
    mg::Input<struct ce_y32, std::int32_t, 1> y32("y32");
    y32.bind(mg::Tensor<std::int32_t, 1>({0, 0, 3, 1, 2}));
    check_grad("cross_entropy with int32 labels", mg::cross_entropy(x, y32, {0.1, {}}), x);
  }
}

TEST_CASE("autodiff: nll_loss, binary_cross_entropy_with_logits and mse_loss") {
  reseed(31);
  SUBCASE("nll_loss of log_softmax") {
    mg::Input<struct nll_x, double, 2> x("x");
    x.bind(uniform(mg::Shape<2>{4, 3}, -2, 2));
    const mg::Tensor<std::int64_t, 1> y({2, 0, 1, 1});
    check_grad("nll_loss(log_softmax(x))", mg::nll_loss(mg::log_softmax(x, 1), y), x);
    check_grad("nll_loss sum, ignore_index 1", mg::nll_loss<mg::Reduction::sum>(x, y, 1), x);
  }
  SUBCASE("binary_cross_entropy_with_logits") {
    mg::Input<struct bce_x, double, 2> x("x");
    mg::Input<struct bce_t, double, 2> t("t");
    x.bind(uniform(mg::Shape<2>{3, 4}, -4, 4, {0.0}));
    t.bind(uniform(mg::Shape<2>{3, 4}, 0, 1));
    check_grad("bce mean", mg::binary_cross_entropy_with_logits(x, t), x, t);
    check_grad("bce sum", mg::binary_cross_entropy_with_logits<mg::Reduction::sum>(x, t), x, t);
    // At x = 0 (the kinks of max(x, 0) and |x|) the gradient is still sigmoid(0) - t = 0.5 - t.
    mg::Input<struct bce_zero, double, 1> z("z");
    z.bind(mg::Tensor<double, 1>({0.0, 0.0}));
    const mg::Tensor<double, 1> tz({0.25, 1.0});
    auto [dz] = mg::grad(mg::binary_cross_entropy_with_logits<mg::Reduction::sum>(z, tz), z);
    check_values("bce at x = 0", mg::eval(dz), mg::Tensor<double, 1>({0.25, -0.5}));
  }
  SUBCASE("mse_loss") {
    mg::Input<struct mse_a, double, 2> a("a");
    mg::Input<struct mse_b, double, 2> b("b");
    a.bind(uniform(mg::Shape<2>{3, 4}, -2, 2));
    b.bind(uniform(mg::Shape<2>{3, 4}, -2, 2));
    check_grad("mse mean", mg::mse_loss(a, b), a, b);
    const auto w = uniform(mg::Shape<2>{3, 4}, -1, 1);
    check_grad("mse none", mg::sum(mg::mse_loss<mg::Reduction::none>(a, b) * w), a, b);
  }
}
