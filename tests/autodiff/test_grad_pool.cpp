// Gradients of the 2-D pools (expr/pool.hpp) against central differences of the forward pass in double
// (tests/autodiff/grad_check.hpp): max_pool2d (inputs with well separated values, so a finite-difference step
// never changes a window's maximum; ties are tested with hand-built inputs in tests/expr/test_pool.cpp),
// avg_pool2d and adaptive_avg_pool2d over kernels, strides, padding, dilation, ceil_mode and
// count_include_pad; the LeNet block max_pool2d(relu(conv2d(x, w) + b)); and a second derivative through the
// average pool's backward node.
#include <doctest/doctest.h>

#include <algorithm>
#include <metagrad/metagrad.hpp>
#include <numeric>
#include <string>
#include <vector>

#include "grad_check.hpp"

using namespace grad_test;

namespace {

// Distinct values k * 0.05 - 1 in a random order: every two differ by far more than the difference step.
mg::Tensor<double, 4> distinct(const mg::Shape<4>& s) {
  std::vector<index_t> order(static_cast<std::size_t>(s.numel()));
  std::iota(order.begin(), order.end(), index_t{0});
  std::shuffle(order.begin(), order.end(), rng());
  return tabulate(s, [&](index_t i) { return double(order[static_cast<std::size_t>(i)]) * 0.05 - 1.0; });
}

template <class Make>
void check_pool(const std::string& what, const mg::Shape<4>& s, Make make) {
  mg::Input<struct gp_x, double, 4> x("x");
  x.bind(distinct(s));
  const auto y = make(x);
  const auto r = uniform(y.shape(), -1, 1);
  check_grad(what + " of " + shape_string(s), mg::sum(y * mg::Const<double, 4>(r)), x);
}

}  // namespace

TEST_CASE("grad max_pool2d: against central differences") {
  reseed(1);
  check_pool("max_pool2d 2", mg::Shape<4>{2, 3, 6, 6}, [](const auto& x) { return mg::max_pool2d(x, 2); });
  check_pool("max_pool2d 3, stride 1 (overlapping windows)", mg::Shape<4>{1, 2, 5, 6},
             [](const auto& x) { return mg::max_pool2d(x, 3, 1); });
  check_pool("max_pool2d (3, 2), stride (2, 1), padding (1, 1)", mg::Shape<4>{2, 2, 7, 5}, [](const auto& x) {
    return mg::max_pool2d(x, {3, 2}, mg::Size2{2, 1}, {1, 1});
  });
  check_pool("max_pool2d 3, stride 2, padding 1, dilation 2", mg::Shape<4>{1, 2, 9, 8},
             [](const auto& x) { return mg::max_pool2d(x, 3, 2, 1, 2); });
  check_pool("max_pool2d 2, ceil_mode", mg::Shape<4>{2, 1, 7, 5},
             [](const auto& x) { return mg::max_pool2d(x, 2, 2, 0, 1, true); });
}

TEST_CASE("grad avg_pool2d and adaptive_avg_pool2d: against central differences") {
  reseed(2);
  check_pool("avg_pool2d 2", mg::Shape<4>{2, 3, 6, 6}, [](const auto& x) { return mg::avg_pool2d(x, 2); });
  check_pool("avg_pool2d 3, stride 2, padding 1", mg::Shape<4>{1, 2, 7, 6},
             [](const auto& x) { return mg::avg_pool2d(x, 3, 2, 1); });
  check_pool("avg_pool2d 3, stride 2, padding 1, ceil_mode, no pad count", mg::Shape<4>{2, 2, 6, 7},
             [](const auto& x) { return mg::avg_pool2d(x, 3, 2, 1, true, false); });
  check_pool("avg_pool2d (2, 3), stride 1", mg::Shape<4>{1, 2, 4, 6}, [](const auto& x) {
    return mg::avg_pool2d(x, {2, 3}, 1);
  });
  check_pool("adaptive_avg_pool2d (3, 4)", mg::Shape<4>{2, 2, 7, 10}, [](const auto& x) {
    return mg::adaptive_avg_pool2d(x, {3, 4});
  });
  check_pool("adaptive_avg_pool2d (4, 2) of fewer rows", mg::Shape<4>{1, 2, 3, 5}, [](const auto& x) {
    return mg::adaptive_avg_pool2d(x, {4, 2});
  });
}

TEST_CASE("grad pool: max_pool2d(relu(conv2d(x, w) + b)), the LeNet block") {
  reseed(3);
  mg::Input<struct gpl_x, double, 4> x("x");
  mg::Param<struct gpl_w, double, 4> w("w", uniform(mg::Shape<4>{3, 2, 3, 3}, -0.6, 0.6));
  mg::Param<struct gpl_b, double, 1> b("b", uniform(mg::Shape<1>{3}, -0.3, 0.3));
  x.bind(uniform(mg::Shape<4>{2, 2, 7, 7}, -1, 1));
  const auto y = mg::max_pool2d(mg::relu(mg::conv2d(x, w, {.padding = 1}) + b.reshape({1, 3, 1, 1})), 2);
  const auto r = uniform(y.shape(), -1, 1);
  // Random inputs keep the pre-activations away from relu's kink and the window maxima apart by far more
  // than the step (checked: the check fails loudly, naming the element, if one is not).
  check_grad("max_pool2d(relu(conv2d(x, w) + b), 2)", Tol{1e-5, 1e-7}, mg::sum(y * mg::Const<double, 4>(r)), x, w, b);
}

TEST_CASE("grad avg_pool2d: a second derivative through its backward node") {
  reseed(4);
  mg::Input<struct gp2_x, double, 4> x("x");
  x.bind(uniform(mg::Shape<4>{1, 2, 6, 5}, -1, 1));
  const auto r = mg::Const<double, 4>(uniform(mg::Shape<4>{1, 2, 3, 3}, -1, 1));
  // d/dx sum(avg(x)^2 r) = avg^T(2 avg(x) r); its sum against v is quadratic in x, differentiated again.
  auto [gx] = mg::grad(mg::sum(mg::square(mg::avg_pool2d(x, 2, 2, 0, true)) * r), x);
  const auto v = mg::Const<double, 4>(uniform(mg::Shape<4>{1, 2, 6, 5}, -1, 1));
  check_grad("grad of sum(grad(avg_pool2d) * v)", mg::sum(gx * v), x);
}
