// Gradients of the fused convolution + bias + activation node (expr/conv_bias.hpp) against central
// differences of the forward pass in double (tests/autodiff/grad_check.hpp), with respect to the input, the
// weights and the bias, with the identity and with ReLU at points where some outputs are negative before the
// ReLU: plain, strided, padded, dilated, grouped and depthwise cases. A compiled step evaluates the masked
// output adjoint once for the three gradients and reads the forward result instead of recomputing it; the
// gradients of nn::Conv2d + nn::relu() equal those of the unfused composition.
#include <doctest/doctest.h>

#include <metagrad/metagrad.hpp>
#include <string>
#include <vector>

#include "grad_check.hpp"

using namespace grad_test;

namespace {

struct Case {
  mg::Shape<4> x, w;
  mg::Conv2dOptions o;
  std::string str() const {
    return "conv2d of " + shape_string(x) + " with " + shape_string(w) + " and a bias, stride (" +
           std::to_string(o.stride.h) + ", " + std::to_string(o.stride.w) + "), padding (" +
           std::to_string(o.padding.h) + ", " + std::to_string(o.padding.w) + "), dilation (" +
           std::to_string(o.dilation.h) + ", " + std::to_string(o.dilation.w) + "), groups " + std::to_string(o.groups);
  }
};

const std::vector<Case> kCases = {
    {{2, 2, 5, 5}, {3, 2, 3, 3}, {}},
    {{1, 3, 7, 6}, {2, 3, 3, 2}, {.stride = 2}},
    {{2, 2, 6, 5}, {2, 2, 3, 3}, {.stride = {2, 1}, .padding = {1, 2}}},
    {{1, 2, 8, 6}, {3, 2, 2, 3}, {.stride = {2, 1}, .padding = {1, 0}, .dilation = {3, 2}}},
    {{2, 4, 5, 5}, {4, 2, 3, 3}, {.padding = 1, .groups = 2}},
    {{1, 3, 6, 6}, {6, 1, 3, 3}, {.stride = 2, .padding = 1, .groups = 3}},  // depthwise, multiplier 2
    {{1, 1, 9, 9}, {2, 1, 5, 5}, {.padding = 2}},                            // LeNet's conv1 in miniature
};

// How many pre-activation values z = conv2d(x, w) + b are negative, and how many positive: ReLU's gradient
// is only tested where both occur.
template <class X, class W, class B>
std::pair<index_t, index_t> signs_of(const X& x, const W& w, const B& b, const mg::Conv2dOptions& o) {
  const mg::Tensor<double, 4> z = mg::conv2d(x, w, b, o);
  index_t neg = 0, pos = 0;
  for (double v : z.to_vector()) {
    neg += v < 0;
    pos += v > 0;
  }
  return {neg, pos};
}

}  // namespace

TEST_CASE("grad conv2d with bias: input, weights and bias against central differences") {
  unsigned seed = 300;
  for (const auto& c : kCases) {
    reseed(seed++);
    mg::Input<struct gcb_x, double, 4> x("x");
    mg::Param<struct gcb_w, double, 4> w("w", uniform(c.w, -1, 1));
    mg::Param<struct gcb_b, double, 1> b("b", uniform(mg::Shape<1>{{c.w[0]}}, -0.5, 0.5));
    x.bind(uniform(c.x, -1, 1));
    const auto [neg, pos] = signs_of(x, w, b, c.o);
    REQUIRE(neg > 0);
    REQUIRE(pos > 0);
    SUBCASE("identity") {
      const auto y = mg::conv2d(x, w, b, c.o);
      const auto r = uniform(y.shape(), -1, 1);
      check_grad(c.str(), mg::sum(y * mg::Const<double, 4>(r)), x, w, b);
    }
    SUBCASE("relu") {
      const auto y = mg::relu(mg::conv2d(x, w, b, c.o));
      static_assert(std::remove_cvref_t<decltype(y)>::activation == mg::Activation::relu);
      const auto r = uniform(y.shape(), -1, 1);
      check_grad(c.str() + ", relu", mg::sum(y * mg::Const<double, 4>(r)), x, w, b);
    }
  }
}

TEST_CASE("grad conv2d with bias: two fused layers through a nonlinearity") {
  reseed(17);
  mg::Input<struct gcb2_x, double, 4> x("x");
  mg::Param<struct gcb2_w1, double, 4> w1("w1", uniform(mg::Shape<4>{3, 2, 3, 3}, -0.7, 0.7));
  mg::Param<struct gcb2_b1, double, 1> b1("b1", uniform(mg::Shape<1>{{3}}, -0.3, 0.3));
  mg::Param<struct gcb2_w2, double, 4> w2("w2", uniform(mg::Shape<4>{2, 3, 2, 2}, -0.7, 0.7));
  mg::Param<struct gcb2_b2, double, 1> b2("b2", uniform(mg::Shape<1>{{2}}, -0.3, 0.3));
  x.bind(uniform(mg::Shape<4>{2, 2, 6, 5}, -1, 1));
  const auto y = mg::tanh(mg::conv2d(mg::relu(mg::conv2d(x, w1, b1, {.padding = 1})), w2, b2, {.stride = 2}));
  check_grad("tanh(conv2d(relu(conv2d(x, w1, b1)), w2, b2))", mg::sum(mg::square(y)), x, w1, b1, w2, b2);
}

TEST_CASE("grad conv2d with bias: a compiled step masks the output adjoint once and reuses y") {
  reseed(23);
  mg::Input<struct gcb3_x, double, 4> x("x");
  mg::Param<struct gcb3_w, double, 4> w("w", uniform(mg::Shape<4>{4, 3, 3, 3}, -0.5, 0.5));
  mg::Param<struct gcb3_b, double, 1> b("b", uniform(mg::Shape<1>{{4}}, -0.5, 0.5));
  x.bind(uniform(mg::Shape<4>{2, 3, 6, 6}, -1, 1));
  const auto loss = mg::sum(mg::square(mg::relu(mg::conv2d(x, w, b, {.padding = 1})) - 0.25));
  auto [gx, gw, gb] = mg::grad(loss, x, w, b);
  auto program = mg::compile(loss, gx, gw, gb);
  // The fused node (its copy in the ReLU mask merged with it, not run again), the loss, the sum_to of the
  // "- 0.25" broadcast (fused away with these shapes), the masked output adjoint in one buffer that the three
  // gradients read, backward-data, backward-weight, the bias sum. Exactly two steps of y's shape: the
  // forward node and the mask, each once.
  const std::string d = program.describe();
  INFO(d);
  CHECK(program.steps() == 7);
  auto count = [&](const std::string& what) {
    std::size_t n = 0;
    for (std::size_t at = d.find(what); at != std::string::npos; at = d.find(what, at + 1)) ++n;
    return n;
  };
  CHECK(count("-> [2, 4, 6, 6]") == 3);  // the two below and the fused-away sum_to
  CHECK(count("conv2d + bias + relu -> [2, 4, 6, 6]") == 1);
  CHECK(count("buffer -> [2, 4, 6, 6]") == 1);
  CHECK(count("sum_to (adjoint of a broadcast) -> [2, 4, 6, 6] [no broadcast") == 1);
  CHECK(count("conv2d (backward data)") == 1);
  CHECK(count("conv2d (backward weight)") == 1);
  const auto& [l, dx, dw, db] = program.run();
  report("compiled dx", compare("compiled dx", dx, numeric_gradient(loss, leaf_tensor(x)), Tol{}), Tol{});
  report("compiled dw", compare("compiled dw", dw, numeric_gradient(loss, leaf_tensor(w)), Tol{}), Tol{});
  report("compiled db", compare("compiled db", db, numeric_gradient(loss, leaf_tensor(b)), Tol{}), Tol{});
  CHECK(l.item() == doctest::Approx(value_of(loss)).epsilon(1e-12));
}

TEST_CASE("grad conv2d with bias: nn::Conv2d + nn::relu() has the gradients of the unfused composition") {
  mg::manual_seed(29);
  reseed(29);
  auto model = mg::nn::sequential<struct gcb4_seq>(mg::nn::conv2d<double>(2, 3, 3, {.padding = 1}), mg::nn::relu());
  mg::Input<struct gcb4_x, double, 4> x("x");
  x.bind(uniform(mg::Shape<4>{2, 2, 5, 5}, -1, 1));
  const auto& layer = model.get<0>();
  const auto fused = model(x);
  static_assert(std::remove_cvref_t<decltype(fused)>::activation == mg::Activation::relu);
  const auto unfused = mg::relu(mg::conv2d(x, layer.weight(), {.padding = 1}) + layer.bias().reshape({1, 3, 1, 1}));
  const auto r = mg::Const<double, 4>(uniform(mg::Shape<4>{2, 3, 5, 5}, -1, 1));
  auto [fx, fw, fb] = mg::grad(mg::sum(fused * r), x, layer.weight(), layer.bias());
  auto [ux, uw, ub] = mg::grad(mg::sum(unfused * r), x, layer.weight(), layer.bias());
  const Tol tight{1e-12, 1e-14, 0, false};
  report("dx", compare("dx", mg::eval(fx), mg::eval(ux), tight), tight);
  report("dw", compare("dw", mg::eval(fw), mg::eval(uw), tight), tight);
  report("db", compare("db", mg::eval(fb), mg::eval(ub), tight), tight);
}
