// Gradients through views, reductions and matrix products (autodiff/grad.hpp) against central differences of
// the forward pass in double (tests/autodiff/grad_check.hpp): every view over tensors and over computed
// expressions; every differentiable reduction over all axes, one axis, several axes and with keepdims; the
// even split of max/min ties and stop_gradient with values written out here; and composites: a two-layer MLP,
// reductions over several axes of 3-D and 4-D inputs, matmul with every transpose, batch broadcasting and
// scaling.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <metagrad/metagrad.hpp>
#include <string>

#include "grad_check.hpp"

using namespace grad_test;
using mg::Slice;

namespace {

constexpr unsigned kSeeds[] = {41, 42, 43};

// sum(v(x) * W) with W shaped like the view, x uniform in [lo, hi) of shape s.
template <int R, class F>
void check_view(const std::string& op, const mg::Shape<R>& s, F f, double lo = -2, double hi = 2) {
  mg::Input<struct view_x, double, R> x("x");
  x.bind(uniform(s, lo, hi));
  const auto v = f(x);
  const auto w = uniform(v.shape(), -1, 1);
  check_grad(op + " on " + shape_string(s), mg::sum(v * w), x);
}

// --- the calling forms of a reduction -------------------------------------------------------------

struct AllAxes {
  std::string str() const { return "all axes"; }
  template <class F, class X>
  auto apply(F f, const X& x) const {
    return f(x);
  }
};
struct OneAxis {
  int axis;
  std::string str() const { return "axis " + std::to_string(axis); }
  template <class F, class X>
  auto apply(F f, const X& x) const {
    return f(x, axis);
  }
};
template <int K, bool Keep>
struct Axes {
  int axes[K];
  std::string str() const {
    std::string s = "axes {";
    for (int i = 0; i < K; ++i) s += (i ? ", " : "") + std::to_string(axes[i]);
    return s + (Keep ? "}, keepdims" : "}");
  }
  template <class F, class X>
  auto apply(F f, const X& x) const {
    if constexpr (Keep)
      return f(x, axes, mg::keepdims);
    else
      return f(x, axes);
  }
};

// sum(red(x, form) * W) for one form over the seeds; x drawn by gen on random rank-3 shapes (extents >= 2, so
// that var with ddof 1 and stddev are defined).
template <class Red, class Form, class Gen>
void check_form(const char* op, Red red, const Form& form, Gen gen, Tol tol) {
  for (unsigned seed : kSeeds) {
    reseed(seed);
    const auto s = random_shape<3>(2, 4);
    mg::Input<struct reduce_x, double, 3> x("x");
    x.bind(gen(s));
    const auto y = form.apply(red, x);
    const auto w = uniform(y.shape(), -1, 1);
    check_grad(
        std::string(op) + " over " + form.str() + " of " + shape_string(s) + " (seed " + std::to_string(seed) + ")",
        tol, mg::sum(y * w), x);
  }
}

// Every form; IntAxis says whether red(x, int) means one axis (false for var, stddev and norm, whose second
// scalar argument is ddof or p: their single axis is the one-element list).
template <bool IntAxis, class Red, class Gen>
void check_reduction(const char* op, Red red, Gen gen, Tol tol = {}) {
  check_form(op, red, AllAxes{}, gen, tol);
  if constexpr (IntAxis) {
    check_form(op, red, OneAxis{0}, gen, tol);
    check_form(op, red, OneAxis{-1}, gen, tol);
  }
  check_form(op, red, Axes<1, false>{{1}}, gen, tol);
  check_form(op, red, Axes<2, false>{{0, 2}}, gen, tol);
  check_form(op, red, Axes<2, false>{{-1, 1}}, gen, tol);
  check_form(op, red, Axes<3, false>{{2, 0, 1}}, gen, tol);
  check_form(op, red, Axes<1, true>{{1}}, gen, tol);
  check_form(op, red, Axes<2, true>{{0, 2}}, gen, tol);
  check_form(op, red, Axes<3, true>{{0, 1, 2}}, gen, tol);
}

// sum(f(a, b) * W) for a of shape sa and b of shape sb, both gradients.
template <int RA, int RB, class F>
void check_matmul(const char* op, const mg::Shape<RA>& sa, const mg::Shape<RB>& sb, F f) {
  mg::Input<struct mm_a, double, RA> a("a");
  mg::Input<struct mm_b, double, RB> b("b");
  a.bind(uniform(sa, -1, 1));
  b.bind(uniform(sb, -1, 1));
  const auto y = f(a, b);
  const auto w = uniform(y.shape(), -1, 1);
  check_grad(std::string(op) + " a " + shape_string(sa) + " b " + shape_string(sb), mg::sum(y * w), a, b);
}

}  // namespace

// =============================================================================================== views

TEST_CASE("autodiff: permute, transpose and t") {
  for (unsigned seed : kSeeds) {
    reseed(seed);
    const auto s3 = random_shape<3>(1, 4);
    const auto s2 = random_shape<2>(1, 4);
    check_view("permute {2, 0, 1}", s3, [](const auto& x) { return mg::permute(x, {2, 0, 1}); });
    check_view("x.permute({1, 2, 0})", s3, [](const auto& x) { return x.permute({1, 2, 0}); });
    check_view("transpose(x, 0, 2)", s3, [](const auto& x) { return mg::transpose(x, 0, 2); });
    check_view("transpose(x, -1, -2)", s3, [](const auto& x) { return mg::transpose(x, -1, -2); });
    check_view("t(x)", s2, [](const auto& x) { return mg::t(x); });
    check_view("x.t()", s2, [](const auto& x) { return x.t(); });
    check_view("x.t().t()", s2, [](const auto& x) { return x.t().t(); });
  }
}

TEST_CASE("autodiff: slice with positive and negative steps, and select") {
  for (unsigned seed : kSeeds) {
    reseed(seed);
    const auto s = random_shape<3>(3, 6);
    SUBCASE("slice(axis, start, stop, step)") {
      check_view("slice(1, 1, none)", s, [](const auto& x) { return mg::slice(x, 1, 1); });
      check_view("slice(0, 0, 2)", s, [](const auto& x) { return mg::slice(x, 0, 0, 2); });
      check_view("slice(2, 0, none, 2)", s, [](const auto& x) { return mg::slice(x, 2, 0, Slice::none, 2); });
      check_view("slice(-1, 1, -1, 2)", s, [](const auto& x) { return x.slice(-1, 1, -1, 2); });
    }
    SUBCASE("negative steps") {
      check_view("slice(1, none, none, -1)", s,
                 [](const auto& x) { return mg::slice(x, 1, Slice::none, Slice::none, -1); });
      check_view("slice(0, -1, none, -2)", s, [](const auto& x) { return mg::slice(x, 0, -1, Slice::none, -2); });
      check_view("slice(2, 2, 0, -1)", s, [](const auto& x) { return mg::slice(x, 2, 2, 0, -1); });
    }
    SUBCASE("one Slice per axis") {
      check_view("slice({1:, ::-1, ::2})", s, [](const auto& x) {
        return x.slice({Slice{1}, Slice{Slice::none, Slice::none, -1}, Slice{Slice::none, Slice::none, 2}});
      });
    }
    SUBCASE("select, positive and negative index") {
      check_view("select(0, 1)", s, [](const auto& x) { return mg::select(x, 0, 1); });
      check_view("select(2, -1)", s, [](const auto& x) { return x.select(2, -1); });
      check_view("select(1, 0).select(0, 2)", s, [](const auto& x) { return x.select(1, 0).select(0, 2); });
    }
    SUBCASE("overlapping slices of one leaf add up") {
      check_view("x[0:2] * x[1:3]", s, [](const auto& x) { return mg::slice(x, 0, 0, 2) * mg::slice(x, 0, 1, 3); });
    }
  }
  SUBCASE("exact values: unselected elements get zero") {
    mg::Input<struct slice_x, double, 1> x("x");
    x.bind(mg::Tensor<double, 1>{1, 2, 3, 4, 5, 6});
    const mg::Tensor<double, 1> w{10, 20, 30};
    const auto [dx] = mg::grad(mg::sum(mg::slice(x, 0, 5, Slice::none, -2) * w), x);
    check_values("x[5::-2]", mg::eval(dx), mg::Tensor<double, 1>{0, 30, 0, 20, 0, 10});
  }
}

TEST_CASE("autodiff: squeeze, unsqueeze, broadcast_to and expand") {
  for (unsigned seed : kSeeds) {
    reseed(seed);
    const auto s = random_shape<2>(1, 4);
    const index_t m = s[0], n = s[1];
    SUBCASE("squeeze and unsqueeze") {
      check_view("squeeze(1)", mg::Shape<3>{m, 1, n}, [](const auto& x) { return mg::squeeze(x, 1); });
      check_view("squeeze(-1)", mg::Shape<3>{m, n, 1}, [](const auto& x) { return x.squeeze(-1); });
      check_view("unsqueeze(0)", s, [](const auto& x) { return mg::unsqueeze(x, 0); });
      check_view("unsqueeze(-1)", s, [](const auto& x) { return x.unsqueeze(-1); });
      check_view("unsqueeze(1).squeeze(1)", s, [](const auto& x) { return x.unsqueeze(1).squeeze(1); });
    }
    SUBCASE("broadcast_to and expand: the adjoint is summed over the broadcast axes") {
      check_view("broadcast_to [1, n] -> [3, n]", mg::Shape<2>{1, n}, [&](const auto& x) {
        return mg::broadcast_to(x, {3, n});
      });
      check_view("broadcast_to [m, 1] -> [2, m, 3]", mg::Shape<2>{m, 1}, [&](const auto& x) {
        return mg::broadcast_to(x, {2, m, 3});
      });
      check_view("expand [n] -> [m, n]", mg::Shape<1>{n}, [&](const auto& x) { return x.expand({m, n}); });
      check_view("broadcast_to to its own shape", s, [&](const auto& x) { return x.broadcast_to({m, n}); });
    }
  }
  SUBCASE("exact values: broadcast_to beside another path to the same leaf") {
    mg::Input<struct bcast_x, double, 2> x("x");
    x.bind(mg::Tensor<double, 2>{{0.5, -1.0, 2.0}});
    const auto loss = mg::sum(mg::broadcast_to(x, {4, 3}) * 2.0) + mg::sum(x);
    const auto [dx] = mg::grad(loss, x);
    check_values("sum(broadcast_to(x, [4, 3]) * 2) + sum(x)", mg::eval(dx), mg::Tensor<double, 2>{{9, 9, 9}});
  }
}

TEST_CASE("autodiff: reshape and flatten") {
  for (unsigned seed : kSeeds) {
    reseed(seed);
    const auto s = random_shape<3>(1, 4);
    check_view("reshape {-1}", s, [](const auto& x) { return mg::reshape(x, {-1}); });
    check_view("reshape {s0 * s1, -1}", s, [&](const auto& x) { return x.reshape({s[0] * s[1], -1}); });
    check_view("reshape {-1, s2, 1, 1}", s, [&](const auto& x) { return x.reshape({-1, s[2], 1, 1}); });
    check_view("flatten", s, [](const auto& x) { return x.flatten(); });
    check_view("reshape(mg::Shape) round trip", s, [&](const auto& x) { return x.flatten().reshape(s); });
  }
}

TEST_CASE("autodiff: views of computed expressions and of non-contiguous views") {
  for (unsigned seed : kSeeds) {
    reseed(seed);
    const auto s = random_shape<3>(2, 4);
    check_view("slice(sin(x), 1, 0, none, 2)", s,
               [](const auto& x) { return mg::slice(mg::sin(x), 1, 0, Slice::none, 2); });
    check_view("slice(x * x, 0, none, none, -1)", s,
               [](const auto& x) { return mg::slice(x * x, 0, Slice::none, Slice::none, -1); });
    check_view("permute(exp(x), {1, 2, 0})", s, [](const auto& x) { return mg::permute(mg::exp(x), {1, 2, 0}); });
    check_view("reshape(transpose(x, 0, 2), {-1})", s,
               [](const auto& x) { return mg::transpose(x, 0, 2).reshape({-1}); });
    check_view("flatten(tanh(x).permute({2, 1, 0}))", s, [](const auto& x) {
      return mg::tanh(x).permute({2, 1, 0}).flatten();
    });
    check_view("select(x * 2, 1, 1).unsqueeze(0)", s,
               [](const auto& x) { return (x * 2.0).select(1, 1).unsqueeze(0); });
    check_view("broadcast_to(sum(x, {0}, keepdims))", s, [&](const auto& x) {
      return mg::broadcast_to(mg::sum(x, {0}, mg::keepdims), {s[0], s[1], s[2]});
    });
    check_view("squeeze(x.slice(1, 0, 1) * 3, 1)", s,
               [](const auto& x) { return mg::squeeze(x.slice(1, 0, 1) * 3.0, 1); });
  }
}

// ========================================================================================== reductions

TEST_CASE("autodiff: sum, mean, prod in every form") {
  SUBCASE("sum") {
    check_reduction<true>(
        "sum", [](const auto&... a) { return mg::sum(a...); }, in(-2, 2));
  }
  SUBCASE("mean") {
    check_reduction<true>(
        "mean", [](const auto&... a) { return mg::mean(a...); }, in(-2, 2));
  }
  SUBCASE("prod, away from zero") {
    check_reduction<true>(
        "prod", [](const auto&... a) { return mg::prod(a...); }, away_from_zero(0.5, 1.5));
  }
  SUBCASE("prod with zeros: the product of the other elements, not 0/0") {
    mg::Input<struct prod0_x, double, 2> x("x");
    x.bind(mg::Tensor<double, 2>{{2, 0, 3}, {1, 2, 3}, {0, 0, 5}, {4, -1, 0}});
    const auto [dx] = mg::grad(mg::sum(mg::prod(x, 1)), x);
    check_values("prod over rows with zeros", mg::eval(dx),
                 mg::Tensor<double, 2>{{0, 6, 0}, {6, 3, 2}, {0, 0, 0}, {0, 0, -4}});
    const auto [da] = mg::grad(mg::sum(mg::prod(x, {0, 1}, mg::keepdims)), x);
    check_values("prod over everything with zeros", mg::eval(da), mg::Tensor<double, 2>(mg::Shape<2>{4, 3}),
                 Tol{0, 0, 0, true});
    mg::Input<struct prod1_x, double, 1> y("y");
    y.bind(mg::Tensor<double, 1>{2, 0, 3, -1});
    const auto [dy] = mg::grad(mg::prod(y), y);
    check_values("prod of a vector with one zero", mg::eval(dy), mg::Tensor<double, 1>{0, -6, 0, 0});
    check_grad("prod of a vector with one zero", mg::prod(y), y);
  }
}

TEST_CASE("autodiff: max and min in every form, and their ties") {
  SUBCASE("without ties, against finite differences") {
    check_reduction<true>(
        "max", [](const auto&... a) { return mg::max(a...); }, in(-2, 2));
    check_reduction<true>(
        "min", [](const auto&... a) { return mg::min(a...); }, in(-2, 2));
  }
  SUBCASE("ties split the adjoint evenly (exact values)") {
    mg::Input<struct tie_x, double, 2> x("x");
    x.bind(mg::Tensor<double, 2>{{1, 3, 3}, {2, 2, 2}, {-1, 0, 4}});
    const mg::Tensor<double, 1> w{5, 7, 11};
    const auto [d1] = mg::grad(mg::sum(mg::max(x, 1) * w), x);
    check_values("max over axis 1 with ties", mg::eval(d1),
                 mg::Tensor<double, 2>{{0, 2.5, 2.5}, {7.0 / 3, 7.0 / 3, 7.0 / 3}, {0, 0, 11}});
    mg::Input<struct tie_y, double, 2> y("y");
    y.bind(mg::Tensor<double, 2>{{1, 3, 2}, {1, 2, 2}, {4, 0, 5}});
    const auto [d2] = mg::grad(mg::sum(mg::min(y, {0}, mg::keepdims) * mg::Tensor<double, 2>{{5, 7, 11}}), y);
    check_values("min over axis 0, keepdims, with ties", mg::eval(d2),
                 mg::Tensor<double, 2>{{2.5, 0, 5.5}, {2.5, 0, 5.5}, {0, 7, 0}});
    const auto [d3] = mg::grad(mg::max(mg::slice(x, 0, 0, 2)), x);
    check_values("max over all axes of a slice, two maxima", mg::eval(d3),
                 mg::Tensor<double, 2>{{0, 0.5, 0.5}, {0, 0, 0}, {0, 0, 0}});
    const auto [d4] = mg::grad(mg::min(x), x);
    check_values("min over all axes, unique", mg::eval(d4), mg::Tensor<double, 2>{{0, 0, 0}, {0, 0, 0}, {1, 0, 0}});
  }
  SUBCASE("ties over several axes of a 3-D tensor") {
    mg::Input<struct tie3_x, double, 3> x("x");
    // The [:, i, :] slabs have their maximum 9 at 1, 3 and 4 places.
    x.bind(mg::Tensor<double, 3>{{{9, 1}, {9, 9}, {9, 9}}, {{0, 2}, {9, 3}, {9, 9}}});
    const auto [dx] = mg::grad(mg::sum(mg::max(x, {0, 2}) * mg::Tensor<double, 1>{1, 2, 4}), x);
    check_values("max over {0, 2} with ties", mg::eval(dx),
                 mg::Tensor<double, 3>{{{1, 0}, {2.0 / 3, 2.0 / 3}, {1, 1}}, {{0, 0}, {2.0 / 3, 0}, {1, 1}}});
  }
}

TEST_CASE("autodiff: logsumexp, var, stddev and norm in every form") {
  SUBCASE("logsumexp") {
    check_reduction<true>(
        "logsumexp", [](const auto&... a) { return mg::logsumexp(a...); }, in(-3, 3));
  }
  SUBCASE("var with ddof 0 and 1") {
    check_reduction<false>(
        "var ddof 0", [](const auto&... a) { return mg::var(a...); }, in(-2, 2));
    check_reduction<false>(
        "var ddof 1", [](const auto&... a) { return mg::var(a..., 1); }, in(-2, 2));
  }
  SUBCASE("stddev with ddof 0 and 1") {
    check_reduction<false>(
        "stddev ddof 0", [](const auto&... a) { return mg::stddev(a...); }, in(-2, 2));
    check_reduction<false>(
        "stddev ddof 1", [](const auto&... a) { return mg::stddev(a..., 1); }, in(-2, 2));
  }
  SUBCASE("norm with p = 1 (away from 0), 2, 3") {
    check_reduction<false>(
        "norm p=1", [](const auto&... a) { return mg::norm(a..., 1.0); }, away_from_zero(0.1, 2));
    check_reduction<false>(
        "norm p=2", [](const auto&... a) { return mg::norm(a..., 2.0); }, in(-2, 2));
    check_reduction<false>(
        "norm p=3", [](const auto&... a) { return mg::norm(a..., 3.0); }, in(-2, 2));
    check_reduction<false>(
        "norm default p", [](const auto&... a) { return mg::norm(a...); }, in(-2, 2));
  }
  SUBCASE("closed forms on one vector") {
    mg::Input<struct stat_x, double, 1> x("x");
    x.bind(mg::Tensor<double, 1>{1, 2, 4, 9});  // mean 4, deviations -3 -2 0 5, sum of squares 38
    const auto [dv0] = mg::grad(mg::var(x), x);
    check_values("var ddof 0 = 2 (x - mean) / 4", mg::eval(dv0), mg::Tensor<double, 1>{-1.5, -1, 0, 2.5});
    const auto [dv1] = mg::grad(mg::var(x, 1), x);
    check_values("var ddof 1 = 2 (x - mean) / 3", mg::eval(dv1), mg::Tensor<double, 1>{-2, -4.0 / 3, 0, 10.0 / 3},
                 Tol{1e-15, 0, 0, false});
    const auto [ds1] = mg::grad(mg::stddev(x, 1), x);  // (x - mean) / (3 std), std = sqrt(38 / 3)
    const double sd = std::sqrt(38.0 / 3);
    check_values("stddev ddof 1", mg::eval(ds1), mg::Tensor<double, 1>{-3 / (3 * sd), -2 / (3 * sd), 0, 5 / (3 * sd)},
                 Tol{1e-14, 0, 0, false});
    const auto [dn1] = mg::grad(mg::norm(x - 3.0, 1.0), x);
    check_values("norm p=1 = sign", mg::eval(dn1), mg::Tensor<double, 1>{-1, -1, 1, 1});
    // p = inf: sign(x) at the largest |x|, 0 elsewhere
    const auto [dni] = mg::grad(mg::norm(x - 4.0, std::numeric_limits<double>::infinity()), x);
    check_values("norm p=inf", mg::eval(dni), mg::Tensor<double, 1>{0, 0, 0, 1});
  }
}

// ======================================================================================== stop_gradient

TEST_CASE("autodiff: stop_gradient cuts exactly the paths through it") {
  mg::Input<struct sg_x, double, 1> x("x");
  mg::Param<struct sg_w, double, 1> w("w", mg::Tensor<double, 1>{0.5, -2, 3});
  const mg::Tensor<double, 1> xv{1.5, 2, -0.25};
  x.bind(xv);
  SUBCASE("x * stop_gradient(x): x, not 2 x") {
    const auto loss = mg::sum(x * mg::stop_gradient(x));
    const auto [dx] = mg::grad(loss, x);
    check_values("x * sg(x)", mg::eval(dx), mg::Tensor<double, 1>{1.5, 2, -0.25});
    // The forward value is unchanged, and finite differences (which see both factors) give 2 x instead.
    CHECK(loss.item() == doctest::Approx(1.5 * 1.5 + 4 + 0.0625).epsilon(1e-15));
    check_values("finite differences see 2 x", numeric_gradient(loss, leaf_tensor(x)),
                 mg::Tensor<double, 1>{3, 4, -0.5}, Tol{1e-6, 1e-8, 0, false});
  }
  SUBCASE("two leaves, each stopped on one path") {
    // d/dx = 2 x w (the w factor is stopped), d/dw = x w (from the second term; the first has w stopped)
    const auto loss = mg::sum(mg::square(x) * mg::stop_gradient(w) + w * mg::stop_gradient(x * w));
    const auto [dx, dw] = mg::grad(loss, x, w);
    check_values("d/dx", mg::eval(dx), mg::Tensor<double, 1>{2 * 1.5 * 0.5, 2 * 2.0 * -2, 2 * -0.25 * 3});
    check_values("d/dw", mg::eval(dw), mg::Tensor<double, 1>{1.5 * 0.5, 2.0 * -2, -0.25 * 3});
  }
  SUBCASE("a stopped branch beside a live one") {
    const auto [dx] = mg::grad(mg::sum(mg::stop_gradient(mg::exp(x) * 7.0) + x * 3.0), x);
    check_values("sg(exp(x) * 7) + 3 x", mg::eval(dx), mg::Tensor<double, 1>{3, 3, 3});
  }
  SUBCASE("stop_gradient inside a chain") {
    // d/dx sin(c * x) with c = 2 x held constant: cos(2 x^2) * 2 x
    const auto [dx] = mg::grad(mg::sum(mg::sin(mg::stop_gradient(x * 2.0) * x)), x);
    check_values("sin(sg(2 x) * x)", mg::eval(dx), map(xv, [](double v) { return std::cos(2 * v * v) * 2 * v; }),
                 Tol{1e-13, 1e-15, 0, false});
  }
}

// =========================================================================================== composites

TEST_CASE("autodiff: a two-layer MLP with a mean squared loss, every parameter") {
  for (unsigned seed : kSeeds) {
    reseed(seed);
    const index_t batch = 2 + seed % 3, n_in = 3, hidden = 4 + seed % 2, n_out = 2;
    mg::Input<struct mlp_x, double, 2> X("X");
    mg::Input<struct mlp_y, double, 2> Y("Y");
    X.bind(uniform(mg::Shape<2>{batch, n_in}, -1, 1));
    Y.bind(uniform(mg::Shape<2>{batch, n_out}, -1, 1));
    mg::Param<struct mlp_w1, double, 2> W1("W1", uniform(mg::Shape<2>{n_in, hidden}, -1, 1));
    mg::Param<struct mlp_b1, double, 1> b1("b1", uniform(mg::Shape<1>{hidden}, -0.5, 0.5));
    mg::Param<struct mlp_w2, double, 2> W2("W2", uniform(mg::Shape<2>{hidden, n_out}, -1, 1));
    mg::Param<struct mlp_b2, double, 1> b2("b2", uniform(mg::Shape<1>{n_out}, -0.5, 0.5));
    SUBCASE("tanh hidden layer") {
      const auto h = mg::tanh(mg::matmul(X, W1) + b1);
      const auto loss = mg::mean(mg::square(mg::matmul(h, W2) + b2 - Y));
      check_grad("mlp tanh", loss, W1, b1, W2, b2, X);
    }
    SUBCASE("relu hidden layer, weights transposed as in nn.Linear") {
      mg::Param<struct mlp_w1t, double, 2> W1t("W1t", uniform(mg::Shape<2>{hidden, n_in}, -1, 1));
      const auto h = mg::relu(mg::matmul(X, W1t.t()) + b1);
      const auto loss = mg::mean(mg::square(mg::matmul(h, W2) + b2 - Y));
      check_grad("mlp relu", loss, W1t, b1, W2, b2);
    }
  }
}

TEST_CASE("autodiff: reductions over several axes of 3-D and 4-D inputs") {
  for (unsigned seed : kSeeds) {
    reseed(seed);
    const auto s4 = random_shape<4>(2, 3);
    const auto s3 = random_shape<3>(2, 4);
    check_view("sum {1, 3}", s4, [](const auto& x) { return mg::sum(x, {1, 3}); });
    check_view("mean {0, 2}, keepdims", s4, [](const auto& x) { return mg::mean(x, {0, 2}, mg::keepdims); });
    check_view("var {1, 2, 3} ddof 1", s4, [](const auto& x) { return mg::var(x, {1, 2, 3}, 1); });
    check_view("stddev {0, 3}, keepdims, ddof 1", s4, [](const auto& x) {
      return mg::stddev(x, {0, 3}, mg::keepdims, 1);
    });
    check_view("max {0, 3}", s4, [](const auto& x) { return mg::max(x, {0, 3}); });
    check_view("min {-1, -3}", s4, [](const auto& x) { return mg::min(x, {-1, -3}); });
    check_view("logsumexp {2, 3}, keepdims", s4, [](const auto& x) { return mg::logsumexp(x, {2, 3}, mg::keepdims); });
    check_view("norm {0, 1, 2}", s4, [](const auto& x) { return mg::norm(x, {0, 1, 2}); });
    check_view(
        "prod {1, 2}", s4,
        [](const auto& x) {
          return mg::prod(x, {1, 2});
        },
        0.5, 1.5);
    check_view("log_softmax over axis 1", s3, [](const auto& x) { return x - mg::logsumexp(x, {1}, mg::keepdims); });
    check_view("normalise over {0, 2}", s3, [](const auto& x) {
      return (x - mg::mean(x, {0, 2}, mg::keepdims)) / mg::stddev(x, {0, 2}, mg::keepdims);
    });
    check_view("sum(max) * mean of another axis set", s3,
               [](const auto& x) { return mg::max(x, {1}) * mg::mean(x, {1}) + mg::sum(mg::sum(mg::square(x), {2})); });
    check_view("reduction of a reduction", s4, [](const auto& x) { return mg::logsumexp(mg::var(x, {1}), {0, 2}); });
  }
}

TEST_CASE("autodiff: matmul with every transpose, batch broadcasting and scaling") {
  for (unsigned seed : kSeeds) {
    reseed(seed);
    const auto d = random_shape<4>(1, 4);
    const index_t m = d[0], k = d[1], n = d[2], B = d[3] + 1;
    auto mm = [](const char* op, const auto& sa, const auto& sb, auto f) { check_matmul(op, sa, sb, f); };
    SUBCASE("2-D, every transpose combination") {
      mm("a @ b", mg::Shape<2>{m, k}, mg::Shape<2>{k, n},
         [](const auto& a, const auto& b) { return mg::matmul(a, b); });
      mm("a.t() @ b", mg::Shape<2>{k, m}, mg::Shape<2>{k, n},
         [](const auto& a, const auto& b) { return mg::matmul(a.t(), b); });
      mm("a @ b.t()", mg::Shape<2>{m, k}, mg::Shape<2>{n, k},
         [](const auto& a, const auto& b) { return mg::matmul(a, b.t()); });
      mm("a.t() @ b.t()", mg::Shape<2>{k, m}, mg::Shape<2>{n, k},
         [](const auto& a, const auto& b) { return mg::matmul(mg::transpose(a, -1, -2), mg::t(b)); });
      mm("a @ a.t() (one leaf twice) + b", mg::Shape<2>{m, k}, mg::Shape<2>{m, m},
         [](const auto& a, const auto& b) { return mg::matmul(a, a.t()) + b; });
      mm("computed operands sin(a) @ (b * b)", mg::Shape<2>{m, k}, mg::Shape<2>{k, n},
         [](const auto& a, const auto& b) { return mg::matmul(mg::sin(a), b * b); });
    }
    SUBCASE("batched, with a broadcast operand") {
      mm("[B, m, k] @ [k, n]", mg::Shape<3>{B, m, k}, mg::Shape<2>{k, n},
         [](const auto& a, const auto& b) { return mg::matmul(a, b); });
      mm("[m, k] @ [B, k, n]", mg::Shape<2>{m, k}, mg::Shape<3>{B, k, n},
         [](const auto& a, const auto& b) { return mg::matmul(a, b); });
      mm("[B, m, k] @ [1, k, n]", mg::Shape<3>{B, m, k}, mg::Shape<3>{1, k, n},
         [](const auto& a, const auto& b) { return mg::matmul(a, b); });
      mm("[B, k, m]^T @ [B, n, k]^T", mg::Shape<3>{B, k, m}, mg::Shape<3>{B, n, k},
         [](const auto& a, const auto& b) { return mg::matmul(mg::transpose(a, -1, -2), mg::transpose(b, 1, 2)); });
      mm("[2, 1, m, k] @ [B, k, n]", mg::Shape<4>{2, 1, m, k}, mg::Shape<3>{B, k, n},
         [](const auto& a, const auto& b) { return mg::matmul(a, b); });
    }
    SUBCASE("scaled: alpha folds into the product and into its gradients") {
      mm("2.5 * (a @ b)", mg::Shape<2>{m, k}, mg::Shape<2>{k, n},
         [](const auto& a, const auto& b) { return 2.5 * mg::matmul(a, b); });
      mm("(a @ b) * -0.5", mg::Shape<2>{m, k}, mg::Shape<2>{k, n},
         [](const auto& a, const auto& b) { return mg::matmul(a, b) * -0.5; });
      mm("matmul(a, b, 1.5) batched", mg::Shape<3>{B, m, k}, mg::Shape<2>{k, n},
         [](const auto& a, const auto& b) { return mg::matmul(a, b, 1.5); });
      mm("2.5 * (a.t() @ b)", mg::Shape<2>{k, m}, mg::Shape<2>{k, n},
         [](const auto& a, const auto& b) { return 2.5 * mg::matmul(a.t(), b); });
    }
  }
  SUBCASE("exact values of a small product") {
    mg::Input<struct mm_x, double, 2> a("a");
    mg::Input<struct mm_y, double, 2> b("b");
    a.bind(mg::Tensor<double, 2>{{1, 2}, {3, 4}});
    b.bind(mg::Tensor<double, 2>{{5, 6, 7}, {8, 9, 10}});
    // sum(2.5 a b): d/da = 2.5 * row sums of b, d/db = 2.5 * column sums of a
    const auto [da, db] = mg::grad(mg::sum(2.5 * mg::matmul(a, b)), a, b);
    check_values("d/da", mg::eval(da), mg::Tensor<double, 2>{{45, 67.5}, {45, 67.5}});
    check_values("d/db", mg::eval(db), mg::Tensor<double, 2>{{10, 10, 10}, {15, 15, 15}});
  }
}

// ======================================================================== nodes of one type, distinct nodes

TEST_CASE("autodiff: nodes of one type with different parameters or operands stay distinct") {
  // Each pair below is two nodes of the same C++ type that compute different values; their adjoints must not
  // be merged. Expected values written out by hand.
  mg::Input<struct same_x, double, 2> x("x");
  mg::Input<struct same_y, double, 2> y("y");
  x.bind(mg::Tensor<double, 2>{{1, 2, 3}, {4, 5, 6}});
  y.bind(mg::Tensor<double, 2>{{0.5, -1, 2}, {3, 0.25, -2}});
  SUBCASE("x * 2.0 + x * 3.0 (two scalar products)") {
    const auto [dx] = mg::grad(mg::sum(x * 2.0 + x * 3.0), x);
    check_values("x * 2 + x * 3", mg::eval(dx), mg::Tensor<double, 2>{{5, 5, 5}, {5, 5, 5}});
  }
  SUBCASE("sum over axis 0 and over axis 1, weighted differently") {
    const auto loss = mg::sum(mg::sum(x, 0) * mg::Tensor<double, 1>{1, 2, 3}) +
                      mg::sum(mg::sum(x, 1) * mg::Tensor<double, 1>{10, 20});
    const auto [dx] = mg::grad(loss, x);
    check_values("sum(x, 0) . a + sum(x, 1) . b", mg::eval(dx), mg::Tensor<double, 2>{{11, 12, 13}, {21, 22, 23}});
  }
  SUBCASE("two slices of one leaf") {
    const auto loss = mg::sum(mg::slice(x, 1, 0, 2) * 10.0) + mg::sum(mg::slice(x, 1, 1, 3) * 100.0);
    const auto [dx] = mg::grad(loss, x);
    check_values("x[:, 0:2] * 10 + x[:, 1:3] * 100", mg::eval(dx),
                 mg::Tensor<double, 2>{{10, 110, 100}, {10, 110, 100}});
  }
  SUBCASE("a copy of a leaf is the same leaf") {
    mg::Input<struct same_x, double, 2> x2 = x;  // a copy is the same leaf
    const auto [dx] = mg::grad(mg::sum(mg::square(x) + mg::square(x2) * 3.0), x);
    check_values("x^2 + 3 x^2 through a copy", mg::eval(dx), mg::Tensor<double, 2>{{8, 16, 24}, {32, 40, 48}});
  }
  SUBCASE("the same product of different tensors") {
    const mg::Tensor<double, 2> a{{1, 1, 1}, {1, 1, 1}};
    const mg::Tensor<double, 2> b{{2, 2, 2}, {2, 2, 2}};
    const auto [dx, dy] = mg::grad(mg::sum(x * a * y) + mg::sum(x * b), x, y);
    check_values("d/dx (x a y + x b)", mg::eval(dx), mg::Tensor<double, 2>{{2.5, 1, 4}, {5, 2.25, 0}});
    check_values("d/dy (x a y + x b)", mg::eval(dy), mg::Tensor<double, 2>{{1, 2, 3}, {4, 5, 6}});
  }
  SUBCASE("max over axis 0 and max over axis 1") {
    const auto loss = mg::sum(mg::max(x, 0) * mg::Tensor<double, 1>{1, 2, 3}) +
                      mg::sum(mg::max(x, 1) * mg::Tensor<double, 1>{10, 20});
    const auto [dx] = mg::grad(loss, x);
    check_values("max(x, 0) . a + max(x, 1) . b", mg::eval(dx), mg::Tensor<double, 2>{{0, 0, 10}, {1, 2, 23}});
  }
  SUBCASE("a reduction used twice, beside another of a different operand") {
    const auto m1 = mg::max(x, 1);
    const auto m2 = mg::max(y, 1);
    const auto loss = mg::sum(m1 * m1 + m2 * 3.0);
    const auto [dx, dy] = mg::grad(loss, x, y);
    check_values("d/dx max(x)^2", mg::eval(dx), mg::Tensor<double, 2>{{0, 0, 6}, {0, 0, 12}});
    check_values("d/dy 3 max(y)", mg::eval(dy), mg::Tensor<double, 2>{{0, 0, 3}, {3, 0, 0}});
  }
}
