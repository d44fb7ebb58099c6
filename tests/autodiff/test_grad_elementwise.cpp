// Gradients of every differentiable elementwise op (ops/*.hpp, through grad() of autodiff/grad.hpp) against
// central differences of the forward pass in double (tests/autodiff/grad_check.hpp): unary functions,
// binary ops on both operands, the forms with a C++ scalar operand, where on both branches, casts, and NumPy
// broadcasting of either operand (rank-1 bias, [1, n] and [m, 1] against [m, n], [1, 1]). The loss is always
// sum(op(...) * W) with random weights W, so each element of the gradient gets its own adjoint. Inputs are
// drawn where each op is smooth (positive for log and sqrt, inside (-1, 1) for asin and acos, away from the
// kinks of relu, abs, clamp and the jumps of floor and fmod). Piecewise-constant ops must give exactly zero,
// and ties of minimum/maximum exactly half the adjoint each.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <metagrad/metagrad.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "grad_check.hpp"

using namespace grad_test;

namespace {

constexpr unsigned kSeeds[] = {11, 12, 13};

std::string label(const char* op, unsigned seed, const std::string& shapes) {
  return std::string(op) + " (seed " + std::to_string(seed) + ", " + shapes + ")";
}

// sum(f(x) * W) for x drawn by gen on random rank-2 shapes, one check per seed.
template <class F, class Gen>
void check_unary(const char* op, F f, Gen gen, Tol tol = {}) {
  for (unsigned seed : kSeeds) {
    reseed(seed);
    const auto s = random_shape<2>(1, 4);
    mg::Input<struct unary_x, double, 2> x("x");
    x.bind(gen(s));
    const auto w = uniform(s, -1, 1);
    const auto loss = mg::sum(f(x) * w);
    check_grad(label(op, seed, shape_string(s)), tol, loss, x);
  }
}

// sum(f(a, b) * W) with a of shape sa and b of shape sb (the ranks may differ: broadcasting), both gradients.
template <int RA, int RB, class F, class GenA, class GenB>
void check_binary_shapes(const char* op, F f, GenA ga, GenB gb, const mg::Shape<RA>& sa, const mg::Shape<RB>& sb,
                         unsigned seed, Tol tol = {}) {
  mg::Input<struct binary_a, double, RA> a("a");
  mg::Input<struct binary_b, double, RB> b("b");
  a.bind(ga(sa));
  b.bind(gb(sb));
  const auto out = mg::broadcast_shapes(sa, sb, op);
  const auto w = uniform(out, -1, 1);
  const auto loss = mg::sum(f(a, b) * w);
  check_grad(label(op, seed, "a " + shape_string(sa) + ", b " + shape_string(sb)), tol, loss, a, b);
}

// Both operands over equal shapes and every broadcasting pattern of rank 2, and rank 1 and rank 0 (a scalar
// leaf) against rank 2.
template <class F, class GenA, class GenB>
void check_binary(const char* op, F f, GenA ga, GenB gb, Tol tol = {}) {
  for (unsigned seed : kSeeds) {
    reseed(seed);
    const auto s = random_shape<2>(2, 4);
    const index_t m = s[0], n = s[1];
    check_binary_shapes(op, f, ga, gb, mg::Shape<2>{m, n}, mg::Shape<2>{m, n}, seed, tol);
    check_binary_shapes(op, f, ga, gb, mg::Shape<2>{m, n}, mg::Shape<2>{1, n}, seed, tol);
    check_binary_shapes(op, f, ga, gb, mg::Shape<2>{1, n}, mg::Shape<2>{m, n}, seed, tol);
    check_binary_shapes(op, f, ga, gb, mg::Shape<2>{m, 1}, mg::Shape<2>{1, n}, seed, tol);
    check_binary_shapes(op, f, ga, gb, mg::Shape<2>{m, n}, mg::Shape<2>{1, 1}, seed, tol);
    check_binary_shapes(op, f, ga, gb, mg::Shape<2>{1, 1}, mg::Shape<2>{m, n}, seed, tol);
    check_binary_shapes(op, f, ga, gb, mg::Shape<2>{m, n}, mg::Shape<1>{n}, seed, tol);
    check_binary_shapes(op, f, ga, gb, mg::Shape<1>{n}, mg::Shape<2>{m, n}, seed, tol);
    check_binary_shapes(op, f, ga, gb, mg::Shape<2>{m, n}, mg::Shape<0>{}, seed, tol);
    check_binary_shapes(op, f, ga, gb, mg::Shape<0>{}, mg::Shape<2>{m, n}, seed, tol);
  }
}

}  // namespace

TEST_CASE("autodiff: the finite-difference checker itself") {
  reseed(1);
  const mg::Shape<2> s{3, 4};
  mg::Input<struct checker_x, double, 2> x("x");
  const auto xv = uniform(s, -2, 2);
  x.bind(xv);
  SUBCASE("central differences of sum(x^3) are 3 x^2 (written out here)") {
    const auto numeric = numeric_gradient(mg::sum(x * x * x), leaf_tensor(x));
    const auto c = compare("x^3", numeric, map(xv, [](double v) { return 3 * v * v; }), Tol{}, "closed form");
    CHECK_MESSAGE(c.bad == 0, c.summary());
  }
  SUBCASE("the perturbed tensor is restored exactly") {
    const auto before = xv.clone();
    (void)numeric_gradient(mg::sum(mg::sin(x)), leaf_tensor(x));
    CHECK(xv.to_vector() == before.to_vector());
  }
  SUBCASE("a wrong gradient is reported with the op, the element and both values") {
    auto wrong = map(xv, [](double v) { return 3 * v * v; });
    wrong(1, 2) += 1e-4;
    const auto numeric = numeric_gradient(mg::sum(x * x * x), leaf_tensor(x));
    const auto c = compare("cube", wrong, numeric, Tol{});
    CHECK(c.bad == 1);
    REQUIRE(c.failures.size() == 1);
    CHECK(c.failures[0].find("cube") != std::string::npos);
    CHECK(c.failures[0].find("[1, 2]") != std::string::npos);
    CHECK(c.failures[0].find("analytic") != std::string::npos);
    CHECK(c.failures[0].find("numeric") != std::string::npos);
  }
  SUBCASE("a NaN gradient and a wrong shape fail") {
    auto nan = map(xv, [](double) { return std::nan(""); });
    CHECK(compare("nan", nan, map(xv, [](double) { return 0.0; }), Tol{}).bad == s.numel());
    CHECK(compare("shape", mg::Tensor<double, 2>(mg::Shape<2>{4, 3}), mg::Tensor<double, 2>(s), Tol{}).bad == 1);
  }
}

TEST_CASE("autodiff: arithmetic on two expressions, both operands, every broadcast") {
  auto any = [](const auto& s) { return uniform(s, -2, 2); };
  SUBCASE("a + b") {
    check_binary(
        "add", [](const auto& a, const auto& b) { return a + b; }, any, any);
  }
  SUBCASE("a - b") {
    check_binary(
        "sub", [](const auto& a, const auto& b) { return a - b; }, any, any);
  }
  SUBCASE("a * b") {
    check_binary(
        "mul", [](const auto& a, const auto& b) { return a * b; }, any, any);
  }
  SUBCASE("a / b") {
    check_binary(
        "div", [](const auto& a, const auto& b) { return a / b; }, any, away_from_zero(0.5, 2));
  }
  SUBCASE("pow(a, b)") {
    check_binary(
        "pow", [](const auto& a, const auto& b) { return mg::pow(a, b); }, in(0.3, 2.0), any);
  }
  SUBCASE("atan2(a, b)") {
    check_binary(
        "atan2", [](const auto& a, const auto& b) { return mg::atan2(a, b); }, any, away_from_zero(0.3, 2));
  }
  SUBCASE("fmod(a, b), |a / b| in (1, 2) so that trunc(a / b) is +-1 and constant near each point") {
    check_binary(
        "fmod", [](const auto& a, const auto& b) { return mg::fmod(a, b); }, away_from_zero(2.5, 2.9), in(1.5, 2.4));
  }
  SUBCASE("minimum(a, b) and maximum(a, b) without ties") {
    // A broadcast operand may lose every comparison, and then its gradient is rightly zero.
    const Tol tol{1e-6, 1e-8, 1e-6, true};
    check_binary(
        "minimum", [](const auto& a, const auto& b) { return mg::minimum(a, b); }, any, any, tol);
    check_binary(
        "maximum", [](const auto& a, const auto& b) { return mg::maximum(a, b); }, any, any, tol);
  }
  SUBCASE("a composite using each operand twice") {
    check_binary(
        "a*b + a/b - b", [](const auto& a, const auto& b) { return a * b + a / b - b * b; }, any,
        away_from_zero(0.5, 2));
  }
}

TEST_CASE("autodiff: arithmetic with a C++ scalar operand on either side") {
  const auto any = in(-2, 2);
  SUBCASE("x + c, c + x, x - c, c - x") {
    check_unary(
        "x + 2.0", [](const auto& x) { return x + 2.0; }, any);
    check_unary(
        "2.0 + x", [](const auto& x) { return 2.0 + x; }, any);
    check_unary(
        "x - 2.0", [](const auto& x) { return x - 2.0; }, any);
    check_unary(
        "2.0 - x", [](const auto& x) { return 2.0 - x; }, any);
    check_unary(
        "3 - x (int scalar)", [](const auto& x) { return 3 - x; }, any);
  }
  SUBCASE("x * c, c * x, x / c, c / x") {
    check_unary(
        "x * 2.5", [](const auto& x) { return x * 2.5; }, any);
    check_unary(
        "2.5 * x", [](const auto& x) { return 2.5 * x; }, any);
    check_unary(
        "x * 2 (int scalar)", [](const auto& x) { return x * 2; }, any);
    check_unary(
        "x / 2.5", [](const auto& x) { return x / 2.5; }, any);
    check_unary(
        "2.5 / x", [](const auto& x) { return 2.5 / x; }, away_from_zero(0.4, 2));
  }
  SUBCASE("unary minus") {
    check_unary(
        "-x", [](const auto& x) { return -x; }, any);
    check_unary(
        "-(-x)", [](const auto& x) { return -(-x); }, any);
  }
  SUBCASE("pow(x, p) for scalar p") {
    check_unary(
        "pow(x, 3.0)", [](const auto& x) { return mg::pow(x, 3.0); }, any);
    check_unary(
        "pow(x, 2.0)", [](const auto& x) { return mg::pow(x, 2.0); }, any);
    check_unary(
        "pow(x, 1.0)", [](const auto& x) { return mg::pow(x, 1.0); }, any);
    check_unary(
        "pow(x, 0.5)", [](const auto& x) { return mg::pow(x, 0.5); }, in(0.2, 3));
    check_unary(
        "pow(x, -1.5)", [](const auto& x) { return mg::pow(x, -1.5); }, in(0.2, 3));
    check_unary(
        "pow(x, 2.7)", [](const auto& x) { return mg::pow(x, 2.7); }, in(0.2, 3));
    check_unary(
        "pow(x, 3) (int exponent)", [](const auto& x) { return mg::pow(x, 3); }, any);
  }
  SUBCASE("pow(x, 0.0) is constant: the gradient is zero, not 0 * x^-1") {
    check_unary(
        "pow(x, 0.0)", [](const auto& x) { return mg::pow(x, 0.0); }, any, Tol{1e-6, 1e-8, 1e-6, true});
    reseed(3);
    mg::Input<struct pow0_x, double, 1> x("x");
    x.bind(mg::Tensor<double, 1>{0.0, 1.5, -2.0});
    const auto [dx] = mg::grad(mg::sum(mg::pow(x, 0.0)), x);
    check_values("pow(x, 0.0) at 0", mg::eval(dx), mg::Tensor<double, 1>{0.0, 0.0, 0.0});
  }
  SUBCASE("pow(c, x) for scalar c") {
    check_unary(
        "pow(2.0, x)", [](const auto& x) { return mg::pow(2.0, x); }, any);
    check_unary(
        "pow(0.5, x)", [](const auto& x) { return mg::pow(0.5, x); }, any);
  }
  SUBCASE("minimum, maximum, fmod and atan2 with a scalar") {
    // On a 1 x 1 shape, x may lose the comparison, and then its gradient is rightly zero.
    const Tol tol{1e-6, 1e-8, 1e-6, true};
    check_unary(
        "minimum(x, 0.3)", [](const auto& x) { return mg::minimum(x, 0.3); }, in(-2, 2, {0.3}), tol);
    check_unary(
        "minimum(0.3, x)", [](const auto& x) { return mg::minimum(0.3, x); }, in(-2, 2, {0.3}), tol);
    check_unary(
        "maximum(x, 0.3)", [](const auto& x) { return mg::maximum(x, 0.3); }, in(-2, 2, {0.3}), tol);
    check_unary(
        "maximum(0.3, x)", [](const auto& x) { return mg::maximum(0.3, x); }, in(-2, 2, {0.3}), tol);
    // fmod(x, 0.7) jumps at multiples of 0.7; fmod(5, x) at x = 5/k (trunc(5/x) == 3 on (1.3, 1.6)).
    check_unary(
        "fmod(x, 0.7)", [](const auto& x) { return mg::fmod(x, 0.7); }, in(-2, 2, {-1.4, -0.7, 0, 0.7, 1.4}));
    check_unary(
        "fmod(5.0, x)", [](const auto& x) { return mg::fmod(5.0, x); }, in(1.3, 1.6));
    check_unary(
        "atan2(x, 0.7)", [](const auto& x) { return mg::atan2(x, 0.7); }, any);
    check_unary(
        "atan2(0.7, x)", [](const auto& x) { return mg::atan2(0.7, x); }, any);
  }
}

TEST_CASE("autodiff: exponentials, logarithms and powers") {
  SUBCASE("exp, exp2, expm1") {
    check_unary(
        "exp", [](const auto& x) { return mg::exp(x); }, in(-2, 2));
    check_unary(
        "exp2", [](const auto& x) { return mg::exp2(x); }, in(-2, 2));
    check_unary(
        "expm1", [](const auto& x) { return mg::expm1(x); }, in(-2, 2));
  }
  SUBCASE("log, log2, log1p on their domains") {
    check_unary(
        "log", [](const auto& x) { return mg::log(x); }, in(0.2, 3));
    check_unary(
        "log2", [](const auto& x) { return mg::log2(x); }, in(0.2, 3));
    check_unary(
        "log1p", [](const auto& x) { return mg::log1p(x); }, in(-0.6, 3));
  }
  SUBCASE("sqrt, rsqrt, square") {
    check_unary(
        "sqrt", [](const auto& x) { return mg::sqrt(x); }, in(0.2, 3));
    check_unary(
        "rsqrt", [](const auto& x) { return mg::rsqrt(x); }, in(0.2, 3));
    check_unary(
        "square", [](const auto& x) { return mg::square(x); }, in(-2, 2));
  }
  SUBCASE("abs away from 0") {
    check_unary(
        "abs", [](const auto& x) { return mg::abs(x); }, away_from_zero(0.05, 2));
  }
}

TEST_CASE("autodiff: trigonometric, hyperbolic and error functions") {
  SUBCASE("sin, cos, tan") {
    check_unary(
        "sin", [](const auto& x) { return mg::sin(x); }, in(-3, 3));
    check_unary(
        "cos", [](const auto& x) { return mg::cos(x); }, in(-3, 3));
    check_unary(
        "tan", [](const auto& x) { return mg::tan(x); }, in(-1.2, 1.2));
  }
  SUBCASE("asin, acos inside (-1, 1); atan") {
    check_unary(
        "asin", [](const auto& x) { return mg::asin(x); }, in(-0.9, 0.9));
    check_unary(
        "acos", [](const auto& x) { return mg::acos(x); }, in(-0.9, 0.9));
    check_unary(
        "atan", [](const auto& x) { return mg::atan(x); }, in(-3, 3));
  }
  SUBCASE("sinh, cosh, tanh") {
    check_unary(
        "sinh", [](const auto& x) { return mg::sinh(x); }, in(-2, 2));
    check_unary(
        "cosh", [](const auto& x) { return mg::cosh(x); }, in(-2, 2));
    check_unary(
        "tanh", [](const auto& x) { return mg::tanh(x); }, in(-2, 2));
  }
  SUBCASE("erf") {
    check_unary(
        "erf", [](const auto& x) { return mg::erf(x); }, in(-2, 2));
  }
}

TEST_CASE("autodiff: activations") {
  SUBCASE("sigmoid, softplus, silu") {
    check_unary(
        "sigmoid", [](const auto& x) { return mg::sigmoid(x); }, in(-4, 4));
    check_unary(
        "softplus", [](const auto& x) { return mg::softplus(x); }, in(-4, 4));
    check_unary(
        "silu", [](const auto& x) { return mg::silu(x); }, in(-4, 4));
  }
  SUBCASE("gelu, exact and tanh forms") {
    check_unary(
        "gelu(erf)", [](const auto& x) { return mg::gelu(x); }, in(-3, 3));
    check_unary(
        "gelu(tanh)", [](const auto& x) { return mg::gelu(x, true); }, in(-3, 3));
  }
  SUBCASE("relu, leaky_relu, elu, selu away from the kink at 0") {
    check_unary(
        "relu", [](const auto& x) { return mg::relu(x); }, in(-2, 2, {0}));
    check_unary(
        "leaky_relu(0.1)", [](const auto& x) { return mg::leaky_relu(x, 0.1); }, in(-2, 2, {0}));
    check_unary(
        "leaky_relu (default slope)", [](const auto& x) { return mg::leaky_relu(x); }, in(-2, 2, {0}));
    check_unary(
        "elu(0.7)", [](const auto& x) { return mg::elu(x, 0.7); }, in(-2, 2, {0}));
    check_unary(
        "elu (alpha 1)", [](const auto& x) { return mg::elu(x); }, in(-2, 2, {0}));
    check_unary(
        "selu", [](const auto& x) { return mg::selu(x); }, in(-2, 2, {0}));
  }
  SUBCASE("clamp inside, below and above the range") {
    check_unary(
        "clamp(-0.5, 0.8)", [](const auto& x) { return mg::clamp(x, -0.5, 0.8); }, in(-2, 2, {-0.5, 0.8}),
        Tol{1e-6, 1e-8, 1e-6, true});  // a small shape may lie outside [lo, hi] entirely
    // and one shape with every region populated, so that the check cannot pass on zeros alone
    mg::Input<struct clamp_x, double, 1> x("x");
    x.bind(mg::Tensor<double, 1>{-1.7, -0.9, -0.3, 0.1, 0.6, 1.1, 1.9});
    const mg::Tensor<double, 1> w{0.3, -0.7, 0.9, 1.1, -0.4, 0.5, 0.8};
    check_grad("clamp(-0.5, 0.8), every region", mg::sum(mg::clamp(x, -0.5, 0.8) * w), x);
  }
  SUBCASE("relu, abs, clamp at the kink itself take the documented subgradient") {
    mg::Input<struct kink_x, double, 1> x("x");
    x.bind(mg::Tensor<double, 1>{0.0, -0.5, 0.8, 1.0});
    const auto [dr] = mg::grad(mg::sum(mg::relu(x)), x);
    check_values("relu at 0", mg::eval(dr), mg::Tensor<double, 1>{0.0, 0.0, 1.0, 1.0});
    const auto [da] = mg::grad(mg::sum(mg::abs(x)), x);
    check_values("abs at 0", mg::eval(da), mg::Tensor<double, 1>{0.0, -1.0, 1.0, 1.0});
    // clamp passes the adjoint on [lo, hi], boundaries included (torch).
    const auto [dc] = mg::grad(mg::sum(mg::clamp(x, -0.5, 0.8)), x);
    check_values("clamp at its bounds", mg::eval(dc), mg::Tensor<double, 1>{1.0, 1.0, 1.0, 0.0});
  }
}

TEST_CASE("autodiff: where passes the adjoint to the branch it selects") {
  auto any = [](const auto& s) { return uniform(s, -2, 2); };
  SUBCASE("both branches expressions, a condition that does not depend on them, broadcast") {
    for (unsigned seed : kSeeds) {
      reseed(seed);
      const auto s = random_shape<2>(2, 4);
      const auto c_full = uniform(s, -1, 1);
      const auto c_col = uniform(mg::Shape<2>{s[0], 1}, -1, 1);
      check_binary_shapes(
          "where(c > 0, a, b)", [&](const auto& a, const auto& b) { return mg::where(c_full > 0.0, a, b); }, any, any,
          s, s, seed);
      check_binary_shapes(
          "where(c[m,1] > 0, a[1,n], b[m,n])",
          [&](const auto& a, const auto& b) { return mg::where(c_col > 0.0, a, b); }, any, any, mg::Shape<2>{1, s[1]},
          s, seed);
      check_binary_shapes(
          "where(c > 0, a[n], b[m,1])", [&](const auto& a, const auto& b) { return mg::where(c_full > 0.0, a, b); },
          any, any, mg::Shape<1>{s[1]}, mg::Shape<2>{s[0], 1}, seed);
    }
  }
  SUBCASE("a scalar on one branch") {
    // The condition is a random tensor held by value in the expression; some elements may select the scalar
    // everywhere on small shapes.
    const Tol tol{1e-6, 1e-8, 1e-6, true};
    check_unary(
        "where(c > 0, x, 0.0)", [](const auto& x) { return mg::where(uniform(x.shape(), -1, 1) > 0.0, x, 0.0); },
        in(-2, 2), tol);
    check_unary(
        "where(c > 0, 0.0, x)", [](const auto& x) { return mg::where(uniform(x.shape(), -1, 1) > 0.0, 0.0, x); },
        in(-2, 2), tol);
  }
  SUBCASE("a condition on the leaf itself: the derivative of the branch taken") {
    check_unary(
        "where(x > 0, x^2, -x/2)", [](const auto& x) { return mg::where(x > 0.0, mg::square(x), -x * 0.5); },
        in(-2, 2, {0}));
  }
  SUBCASE("exact values: the adjoint goes to the selected branch only") {
    mg::Input<struct where_a, double, 1> a("a");
    mg::Input<struct where_b, double, 1> b("b");
    a.bind(mg::Tensor<double, 1>{1.0, 2.0, 3.0, 4.0});
    b.bind(mg::Tensor<double, 1>{-1.0, -2.0, -3.0, -4.0});
    const mg::Tensor<bool, 1> c{true, false, false, true};
    const mg::Tensor<double, 1> w{10.0, 20.0, 30.0, 40.0};
    const auto [da, db] = mg::grad(mg::sum(mg::where(c, a, b) * w), a, b);
    check_values("where: d/da", mg::eval(da), mg::Tensor<double, 1>{10.0, 0.0, 0.0, 40.0});
    check_values("where: d/db", mg::eval(db), mg::Tensor<double, 1>{0.0, 20.0, 30.0, 0.0});
  }
}

TEST_CASE("autodiff: ties of minimum and maximum split the adjoint evenly") {
  mg::Input<struct tie_a, double, 2> a("a");
  mg::Input<struct tie_b, double, 2> b("b");
  const mg::Tensor<double, 2> av{{1.0, 2.0, 3.0}, {-1.0, 0.5, 0.5}};
  const mg::Tensor<double, 2> bv{{1.0, 1.0, 4.0}, {-1.0, 0.5, 0.25}};
  const mg::Tensor<double, 2> w{{3.0, 5.0, 7.0}, {11.0, 13.0, 17.0}};
  a.bind(av);
  b.bind(bv);
  SUBCASE("minimum: 1 to the smaller, 0.5 each on a tie") {
    const auto [da, db] = mg::grad(mg::sum(mg::minimum(a, b) * w), a, b);
    check_values("minimum ties d/da", mg::eval(da), mg::Tensor<double, 2>{{1.5, 0, 7}, {5.5, 6.5, 0}});
    check_values("minimum ties d/db", mg::eval(db), mg::Tensor<double, 2>{{1.5, 5, 0}, {5.5, 6.5, 17}});
  }
  SUBCASE("maximum: 1 to the larger, 0.5 each on a tie") {
    const auto [da, db] = mg::grad(mg::sum(mg::maximum(a, b) * w), a, b);
    check_values("maximum ties d/da", mg::eval(da), mg::Tensor<double, 2>{{1.5, 5, 0}, {5.5, 6.5, 17}});
    check_values("maximum ties d/db", mg::eval(db), mg::Tensor<double, 2>{{1.5, 0, 7}, {5.5, 6.5, 0}});
  }
  SUBCASE("minimum(x, x) and maximum(x, x): both halves reach x, so the gradient is the adjoint") {
    const auto [d1] = mg::grad(mg::sum(mg::minimum(a, a) * w), a);
    check_values("minimum(a, a)", mg::eval(d1), w.to<double>());
    const auto [d2] = mg::grad(mg::sum(mg::maximum(a, a) * w), a);
    check_values("maximum(a, a)", mg::eval(d2), w.to<double>());
  }
  SUBCASE("a tie against a broadcast operand sums the halves of the row") {
    mg::Input<struct tie_row, double, 2> r("r");
    r.bind(mg::Tensor<double, 2>{{1.0, 0.5, 3.5}});
    const auto [dr, da] = mg::grad(mg::sum(mg::maximum(r, a) * w), r, a);
    // Column 0: a tie in row 0 (1 vs 1), r wins in row 1 (1 vs -1). Column 1: a wins in row 0 (0.5 vs 2), a tie
    // in row 1 (0.5 vs 0.5). Column 2: r wins in both rows (3.5 vs 3 and 0.5).
    check_values("maximum(row, a) d/drow", mg::eval(dr), mg::Tensor<double, 2>{{1.5 + 11.0, 6.5, 7.0 + 17.0}});
    check_values("maximum(row, a) d/da", mg::eval(da), mg::Tensor<double, 2>{{1.5, 5.0, 0.0}, {0.0, 6.5, 0.0}});
  }
  SUBCASE("minimum with a scalar tie") {
    const auto [da] = mg::grad(mg::sum(mg::minimum(a, 0.5) * w), a);
    check_values("minimum(a, 0.5)", mg::eval(da), mg::Tensor<double, 2>{{0, 0, 0}, {11.0, 6.5, 8.5}});
  }
}

TEST_CASE("autodiff: piecewise-constant ops have zero gradient") {
  reseed(21);
  const mg::Shape<2> s{3, 5};
  mg::Input<struct pc_x, double, 2> x("x");
  x.bind(away_from_halves(s, -3, 3));
  const auto w = uniform(s, -1, 1);
  const auto zero = mg::Tensor<double, 2>(s);
  const Tol zero_ok{1e-6, 1e-8, 1e-6, true};
  auto check_zero = [&](const char* op, const auto& y) {
    const auto loss = mg::sum(y * w);
    const auto [dx] = mg::grad(loss, x);
    check_values(op, mg::eval(dx), zero, Tol{0, 0, 0, true});
    check_grad(op, zero_ok, loss, x);  // the forward pass agrees: flat away from the jumps
  };
  SUBCASE("floor, ceil, round, trunc, sign") {
    check_zero("floor", mg::floor(x));
    check_zero("ceil", mg::ceil(x));
    check_zero("round", mg::round(x));
    check_zero("trunc", mg::trunc(x));
    check_zero("sign", mg::sign(x));
  }
  SUBCASE("comparisons cast to double, and a condition selecting constants") {
    check_zero("cast<double>(x > 0.25)", mg::cast<double>(x > 0.25));
    check_zero("cast<double>(x <= x * 0.5)", mg::cast<double>(x <= x * 0.5));
    check_zero("where(x > 0, w, -w)", mg::where(x > 0.0, w, -w));
  }
  SUBCASE("a cast through an integer type") {
    check_zero("cast<double>(cast<int32_t>(x))", mg::cast<double>(mg::cast<std::int32_t>(x)));
    check_zero("cast<double>(cast<int64_t>(x * 3))", mg::cast<double>(mg::cast<std::int64_t>(x * 3.0)));
  }
  SUBCASE("a piecewise-constant path beside a smooth one contributes nothing") {
    const auto loss = mg::sum((mg::floor(x) * x + mg::cast<double>(mg::cast<std::int32_t>(x)) + x) * w);
    const auto [dx] = mg::grad(loss, x);
    const auto xv = leaf_tensor(x);
    check_values("floor(x) * x + int(x) + x", mg::eval(dx),
                 tabulate(s, [&](index_t i) { return (std::floor(xv.data()[i]) + 1.0) * w.data()[i]; }),
                 Tol{1e-14, 0, 0, false});
    check_grad("floor(x) * x + int(x) + x", loss, x);
  }
}

TEST_CASE("autodiff: casts between floating types") {
  reseed(31);
  const mg::Shape<2> s{3, 4};
  const auto xv = uniform(s, -2, 2);
  const auto w = uniform(s, -1, 1);
  SUBCASE("cast<double> of a double expression is the identity") {
    check_unary(
        "cast<double>(x)", [](const auto& x) { return mg::cast<double>(x); }, in(-2, 2));
    check_unary(
        "cast<double>(sin(x)) * x", [](const auto& x) { return mg::cast<double>(mg::sin(x)) * x; }, in(-2, 2));
  }
  SUBCASE("double -> float -> double: the adjoint comes back rounded to float") {
    mg::Input<struct cast_x, double, 2> x("x");
    x.bind(xv);
    const auto [dx] = mg::grad(mg::sum(mg::cast<double>(mg::cast<float>(x)) * w), x);
    const auto expected = map(w, [](double v) { return static_cast<double>(static_cast<float>(v)); });
    check_values("cast round trip", mg::eval(dx), expected);
    // and through a float op in the middle: d/dx float(x)^2 = 2 x, to float precision
    const auto [d2] = mg::grad(mg::sum(mg::cast<double>(mg::square(mg::cast<float>(x))) * w), x);
    check_values("cast round trip of square", mg::eval(d2),
                 tabulate(s, [&](index_t i) { return 2 * xv.data()[i] * w.data()[i]; }), Tol{1e-6, 1e-7, 0, false});
  }
  SUBCASE("a float leaf inside a double loss gets a float gradient") {
    mg::Input<struct cast_f, float, 2> xf("xf");
    const mg::Tensor<float, 2> fv = xv.to<float>();
    xf.bind(fv);
    const auto [d1] = mg::grad(mg::sum(mg::cast<double>(xf) * w), xf);
    static_assert(std::is_same_v<mg::expr_value_t<decltype(d1)>, float>);
    check_values("float leaf, linear", mg::eval(d1),
                 map(w, [](double v) { return static_cast<double>(static_cast<float>(v)); }));
    const auto [d2] = mg::grad(mg::sum(mg::cast<double>(mg::exp(xf)) * w), xf);
    check_values("float leaf, exp", mg::eval(d2),
                 tabulate(s, [&](index_t i) { return std::exp(double(fv.data()[i])) * w.data()[i]; }),
                 Tol{1e-5, 1e-6, 0, false});
  }
}
