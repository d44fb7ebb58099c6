// Gradients of the normalisations, dropout, embedding and the joining ops (expr/norm.hpp, dropout.hpp,
// gather.hpp, concat.hpp) against central differences of the forward pass in double
// (tests/autodiff/grad_check.hpp), and against values written out here where the rule is exact: dropout's
// gradient is its own mask over 1 - p, embedding's adds the rows of repeated indices. A compiled Program runs
// the embedding's gather and scatter as planned boundary nodes.
#include <doctest/doctest.h>

#include <cstdint>
#include <metagrad/metagrad.hpp>
#include <string>

#include "grad_check.hpp"

using namespace grad_test;

TEST_CASE("autodiff: batch_norm in training and evaluation form, and layer_norm") {
  reseed(41);
  SUBCASE("batch_norm of [N, C, H, W], every input") {
    mg::Input<struct bn_x, double, 4> x("x");
    mg::Input<struct bn_g, double, 1> gamma("gamma");
    mg::Input<struct bn_b, double, 1> beta("beta");
    x.bind(uniform(mg::Shape<4>{3, 2, 2, 3}, -2, 2));
    gamma.bind(uniform(mg::Shape<1>{2}, 0.5, 2));
    beta.bind(uniform(mg::Shape<1>{2}, -1, 1));
    const auto w = uniform(mg::Shape<4>{3, 2, 2, 3}, -1, 1);
    check_grad("batch_norm (training)", mg::sum(mg::batch_norm(x, gamma, beta) * w), x, gamma, beta);
    check_grad("batch_norm without affine", mg::sum(mg::batch_norm(x, 1e-3) * w), x);
    check_grad("batch_var (unbiased)", mg::sum(mg::batch_var(x) * gamma), x);
  }
  SUBCASE("batch_norm second order (through the backward outputs' composition)") {
    mg::Input<struct bn2o_x, double, 3> x("x");
    mg::Input<struct bn2o_g, double, 1> gamma("gamma");
    mg::Input<struct bn2o_b, double, 1> beta("beta");
    x.bind(uniform(mg::Shape<3>{4, 2, 3}, -2, 2));
    gamma.bind(uniform(mg::Shape<1>{2}, 0.5, 2));
    beta.bind(uniform(mg::Shape<1>{2}, -1, 1));
    const auto w = uniform(mg::Shape<3>{4, 2, 3}, -1, 1);
    const auto u = uniform(mg::Shape<3>{4, 2, 3}, -1, 1);
    const auto v = uniform(mg::Shape<1>{2}, -1, 1);
    // square() makes the adjoint reaching the backward node depend on x, gamma and beta.
    const auto [dx, dg, db] = mg::grad(mg::sum(mg::square(mg::batch_norm(x, gamma, beta)) * w), x, gamma, beta);
    check_grad("batch_norm d(dx)", mg::sum(dx * u), x, gamma, beta);
    check_grad("batch_norm d(dgamma), d(dbeta)", mg::sum(dg * v) + mg::sum(db * v * v), x, gamma, beta);
  }
  SUBCASE("batch_norm of [N, C]") {
    mg::Input<struct bn2_x, double, 2> x("x");
    mg::Input<struct bn2_g, double, 1> gamma("gamma");
    x.bind(uniform(mg::Shape<2>{5, 3}, -2, 2));
    gamma.bind(uniform(mg::Shape<1>{3}, 0.5, 2));
    const mg::Tensor<double, 1> beta({0.1, 0.2, 0.3});
    const auto w = uniform(mg::Shape<2>{5, 3}, -1, 1);
    check_grad("batch_norm [N, C]", mg::sum(mg::batch_norm(x, gamma, beta) * w), x, gamma);
  }
  SUBCASE("batch_norm_eval") {
    mg::Input<struct bne_x, double, 3> x("x");
    mg::Input<struct bne_g, double, 1> gamma("gamma");
    x.bind(uniform(mg::Shape<3>{2, 3, 4}, -2, 2));
    gamma.bind(uniform(mg::Shape<1>{3}, 0.5, 2));
    const mg::Tensor<double, 1> rm({0.1, -0.2, 0.3}), rv({1.5, 0.7, 2.0}), beta({0.0, 1.0, -1.0});
    const auto w = uniform(mg::Shape<3>{2, 3, 4}, -1, 1);
    check_grad("batch_norm_eval", mg::sum(mg::batch_norm_eval(x, rm, rv, gamma, beta) * w), x, gamma);
  }
  SUBCASE("layer_norm over one and two trailing axes") {
    mg::Input<struct ln_x, double, 3> x("x");
    mg::Input<struct ln_g, double, 1> gamma("gamma");
    mg::Input<struct ln_b, double, 1> beta("beta");
    x.bind(uniform(mg::Shape<3>{2, 3, 4}, -2, 2));
    gamma.bind(uniform(mg::Shape<1>{4}, 0.5, 2));
    beta.bind(uniform(mg::Shape<1>{4}, -1, 1));
    const auto w = uniform(mg::Shape<3>{2, 3, 4}, -1, 1);
    check_grad("layer_norm (affine, last axis)", mg::sum(mg::layer_norm(x, gamma, beta) * w), x, gamma, beta);
    check_grad("layer_norm<2>", mg::sum(mg::layer_norm<2>(x) * w), x);
  }
}

TEST_CASE("autodiff: dropout's gradient is its forward mask over 1 - p") {
  reseed(51);
  const double p = 0.4;
  mg::DropoutKey key(9, 1);
  mg::Input<struct dr_x, double, 2> x("x");
  x.bind(uniform(mg::Shape<2>{8, 16}, -2, 2));
  const auto w = uniform(mg::Shape<2>{8, 16}, -1, 1);
  auto loss = mg::sum(mg::dropout(x * 1.0, p, key) * w);
  check_grad("dropout", loss, x);
  auto [dx] = mg::grad(loss, x);
  const auto g = mg::eval(dx);
  const auto y = mg::eval(mg::dropout(mg::ones<double>({8, 16}), p, key));  // the forward mask, scaled
  index_t dropped = 0;
  for (index_t i = 0; i < 8; ++i)
    for (index_t j = 0; j < 16; ++j) {
      CHECK(g(i, j) == doctest::Approx(w(i, j) * y(i, j)).epsilon(1e-15));
      CHECK((y(i, j) == 0.0 || y(i, j) == doctest::Approx(1 / (1 - p)).epsilon(1e-15)));
      dropped += y(i, j) == 0.0;
    }
  CHECK(dropped > 0);
  CHECK(dropped < 128);
  SUBCASE("after advance() the gradient follows the new mask") {
    key.advance();
    const auto g2 = mg::eval(dx);
    const auto y2 = mg::eval(mg::dropout(mg::ones<double>({8, 16}), p, key));
    CHECK(y2.to_vector() != y.to_vector());
    for (index_t i = 0; i < 8; ++i)
      for (index_t j = 0; j < 16; ++j) CHECK(g2(i, j) == doctest::Approx(w(i, j) * y2(i, j)).epsilon(1e-15));
  }
}

TEST_CASE("autodiff: embedding with repeated indices and padding_idx") {
  reseed(61);
  mg::Param<struct emb_w, double, 2> table("table", uniform(mg::Shape<2>{5, 3}, -1, 1));
  const mg::Tensor<std::int64_t, 2> idx({{1, 4, 1}, {0, 1, 2}});
  const auto w = uniform(mg::Shape<3>{2, 3, 3}, -1, 1);
  check_grad("embedding", mg::sum(mg::embedding(table, idx) * w), table);
  auto expect = [&](int padding) {
    mg::Tensor<double, 2> e = mg::zeros<double>({5, 3});
    for (index_t a = 0; a < 2; ++a)
      for (index_t b = 0; b < 3; ++b)
        if (idx(a, b) != padding)
          for (index_t d = 0; d < 3; ++d) e(idx(a, b), d) += w(a, b, d);
    return e;
  };
  auto [dw] = mg::grad(mg::sum(mg::embedding(table, idx) * w), table);
  check_values("embedding: repeated rows add", mg::eval(dw), expect(-1), {1e-15, 0, 0, false});
  auto [dp] = mg::grad(mg::sum(mg::embedding(table, idx, 1) * w), table);
  check_values("embedding: padding_idx 1 gets nothing", mg::eval(dp), expect(1), {1e-15, 0, 0, false});
  SUBCASE("through a compiled Program, with a cross-entropy on top") {
    const mg::Tensor<std::int64_t, 1> ids({3, 3, 0}), labels({2, 0, 2});
    auto loss = mg::cross_entropy(mg::embedding(table, ids), labels);
    auto [dt] = mg::grad(loss, table);
    const auto eager = mg::eval(dt);
    auto program = mg::compile(loss, dt);
    const auto& [l, gt] = program.run();
    CHECK(l.item() == doctest::Approx(loss.item()).epsilon(1e-14));
    check_values("embedding + cross_entropy in a Program", gt, eager, {1e-14, 0, 0, false});
    check_grad("embedding + cross_entropy", loss, table);
  }
}

TEST_CASE("autodiff: concat, stack, pad and flatten") {
  reseed(71);
  mg::Input<struct cat_a, double, 3> a("a");
  mg::Input<struct cat_b, double, 3> b("b");
  a.bind(uniform(mg::Shape<3>{2, 3, 4}, -1, 1));
  b.bind(uniform(mg::Shape<3>{2, 2, 4}, -1, 1));
  SUBCASE("concat of inputs and of a computed operand, several axes") {
    const auto w = uniform(mg::Shape<3>{2, 8, 4}, -1, 1);
    check_grad("concat(1, a, b, a^2)", mg::sum(mg::concat(1, a, b, mg::square(a)) * w), a, b);
    const auto w0 = uniform(mg::Shape<3>{4, 3, 4}, -1, 1);
    check_grad("concat(0, a, 2a)", mg::sum(mg::concat(0, a, a * 2.0) * w0), a);
  }
  SUBCASE("stack") {
    const auto w = uniform(mg::Shape<4>{2, 3, 2, 4}, -1, 1);
    check_grad("stack(2, a, exp(a))", mg::sum(mg::stack(2, a, mg::exp(a)) * w), a);
  }
  SUBCASE("pad") {
    const auto w = uniform(mg::Shape<3>{2, 6, 5}, -1, 1);
    check_grad("pad of the last two axes", mg::sum(mg::pad(a, {{2, 1}, {0, 1}}, 3.0) * w), a);
    const auto w2 = uniform(mg::Shape<3>{2, 4, 4}, -1, 1);
    check_grad("pad of a computed operand", mg::sum(mg::pad(mg::sin(b), {{1, 1}, {0, 0}}) * w2), b);
  }
  SUBCASE("flatten") {
    const auto w = uniform(mg::Shape<2>{2, 12}, -1, 1);
    check_grad("flatten<1>", mg::sum(mg::flatten(a) * w), a);
    check_grad("flatten<1> of a permuted input", mg::sum(mg::flatten(mg::permute(a, {0, 2, 1})) * w), a);
    check_grad("flatten<1> of a computed operand", mg::sum(mg::flatten(a * a) * w), a);
  }
}
