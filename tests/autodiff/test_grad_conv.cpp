// Gradients of conv2d (expr/conv.hpp: the backward-data and backward-weight nodes) against central
// differences of the forward pass in double (tests/autodiff/grad_check.hpp), with respect to the input and
// the weights: plain, strided, padded, dilated, grouped, depthwise, pointwise and non-square cases; a chain
// of two convolutions through tanh (the second one's backward-data feeding the first one's backward-weight),
// and a compiled Program that evaluates both gradients of a layer.
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
    return "conv2d of " + shape_string(x) + " with " + shape_string(w) + ", stride (" + std::to_string(o.stride.h) +
           ", " + std::to_string(o.stride.w) + "), padding (" + std::to_string(o.padding.h) + ", " +
           std::to_string(o.padding.w) + "), dilation (" + std::to_string(o.dilation.h) + ", " +
           std::to_string(o.dilation.w) + "), groups " + std::to_string(o.groups);
  }
};

const std::vector<Case> kCases = {
    {{2, 2, 5, 5}, {3, 2, 3, 3}, {}},
    {{1, 3, 7, 6}, {2, 3, 3, 2}, {.stride = 2}},
    {{2, 2, 6, 5}, {2, 2, 3, 3}, {.stride = {2, 1}, .padding = {1, 2}}},
    {{1, 2, 7, 7}, {2, 2, 3, 3}, {.padding = 2, .dilation = 2}},
    {{1, 2, 8, 6}, {3, 2, 2, 3}, {.stride = {2, 1}, .padding = {1, 0}, .dilation = {3, 2}}},
    {{2, 4, 5, 5}, {4, 2, 3, 3}, {.padding = 1, .groups = 2}},
    {{1, 3, 6, 6}, {6, 1, 3, 3}, {.stride = 2, .padding = 1, .groups = 3}},  // depthwise, multiplier 2
    {{2, 4, 4, 3}, {3, 4, 1, 1}, {}},                                        // pointwise
    {{1, 1, 9, 9}, {2, 1, 5, 5}, {.padding = 2}},                            // LeNet's conv1 in miniature
    {{2, 2, 5, 9}, {2, 2, 5, 1}, {.stride = {3, 1}}},                        // rows the windows never reach
};

}  // namespace

TEST_CASE("grad conv2d: input and weights against central differences") {
  unsigned seed = 100;
  for (const auto& c : kCases) {
    reseed(seed++);
    mg::Input<struct gc_x, double, 4> x("x");
    mg::Param<struct gc_w, double, 4> w("w", uniform(c.w, -1, 1));
    x.bind(uniform(c.x, -1, 1));
    const auto y = mg::conv2d(x, w, c.o);
    const auto r = uniform(y.shape(), -1, 1);
    check_grad(c.str(), mg::sum(y * mg::Const<double, 4>(r)), x, w);
  }
}

TEST_CASE("grad conv2d: two convolutions through tanh") {
  reseed(7);
  mg::Input<struct gc2_x, double, 4> x("x");
  mg::Param<struct gc2_w1, double, 4> w1("w1", uniform(mg::Shape<4>{3, 2, 3, 3}, -0.7, 0.7));
  mg::Param<struct gc2_w2, double, 4> w2("w2", uniform(mg::Shape<4>{2, 3, 2, 2}, -0.7, 0.7));
  x.bind(uniform(mg::Shape<4>{2, 2, 6, 5}, -1, 1));
  const auto y = mg::conv2d(mg::tanh(mg::conv2d(x, w1, {.padding = 1})), w2, {.stride = 2, .dilation = {1, 2}});
  const auto r = uniform(y.shape(), -1, 1);
  check_grad("conv2d(tanh(conv2d(x, w1)), w2)", mg::sum(y * mg::Const<double, 4>(r)), x, w1, w2);
}

TEST_CASE("grad conv2d: a compiled layer evaluates the output adjoint once for both gradients") {
  reseed(11);
  mg::Input<struct gc3_x, double, 4> x("x");
  mg::Param<struct gc3_w, double, 4> w("w", uniform(mg::Shape<4>{4, 3, 3, 3}, -0.5, 0.5));
  mg::Param<struct gc3_b, double, 1> b("b", uniform(mg::Shape<1>{4}, -0.5, 0.5));
  x.bind(uniform(mg::Shape<4>{2, 3, 6, 6}, -1, 1));
  const auto loss = mg::sum(mg::square(mg::tanh(mg::conv2d(x, w, {.padding = 1}) + b.reshape({1, 4, 1, 1}))));
  auto [gx, gw] = mg::grad(loss, x, w);
  auto program = mg::compile(loss, gx, gw);
  // The convolution, the loss, the sum_to of the bias broadcast (fused away with these shapes), the output
  // adjoint in one buffer that both backward nodes read, backward-data, backward-weight.
  CHECK(program.steps() == 6);
  CHECK(program.describe().find("other parameters") == std::string::npos);
  const auto& [l, dx, dw] = program.run();
  const auto ndx = numeric_gradient(loss, leaf_tensor(x));
  const auto ndw = numeric_gradient(loss, leaf_tensor(w));
  report("compiled dx", compare("compiled dx", dx, ndx, Tol{}), Tol{});
  report("compiled dw", compare("compiled dw", dw, ndw, Tol{}), Tol{});
  CHECK(l.item() == doctest::Approx(value_of(loss)).epsilon(1e-12));
}
