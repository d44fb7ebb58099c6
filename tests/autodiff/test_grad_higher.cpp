// Second derivatives: grad() of an expression built from a gradient (autodiff/grad.hpp). For elementwise f,
// grad(sum(grad(sum(f(x)), x)), x) is f''(x); it is checked against the closed form written out here and, with
// random weights, against central differences of the first gradient as metagrad evaluates it
// (tests/autodiff/grad_check.hpp). For mul, div and pow every block of the Hessian that depends on a leaf is
// checked the same way. A few composites (reductions, softmax, views, a matmul layer) check second derivatives
// through the non-elementwise rules against finite differences.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <metagrad/metagrad.hpp>
#include <string>
#include <vector>

#include "grad_check.hpp"

using namespace grad_test;

namespace {

constexpr unsigned kSeeds[] = {61, 62, 63};
constexpr double kPi = 3.141592653589793;
// Closed forms are evaluated with std:: functions; metagrad's own are accurate to a few ulps.
const Tol kClosed{1e-10, 1e-12, 0, false};

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }
double phi(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2 * kPi); }

// f'' of elementwise f: against `d2` (the closed form) and against central differences of sum(f'(x) * W).
template <class F, class D2, class Gen>
void check_second(const char* op, F f, D2 d2, Gen gen) {
  for (unsigned seed : kSeeds) {
    reseed(seed);
    const auto s = random_shape<2>(1, 4);
    mg::Input<struct second_x, double, 2> x("x");
    const auto xv = gen(s);
    x.bind(xv);
    const auto [dx] = mg::grad(mg::sum(f(x)), x);
    const auto [ddx] = mg::grad(mg::sum(dx), x);
    const std::string name = std::string(op) + "'' (seed " + std::to_string(seed) + ", " + shape_string(s) + ")";
    check_values(name + " closed form", mg::eval(ddx), map(xv, d2), kClosed);
    const auto w = uniform(s, -1, 1);
    check_grad(name + " finite differences of the first gradient", mg::sum(dx * w), x);
  }
}

}  // namespace

TEST_CASE("autodiff: second derivatives of unary functions") {
  SUBCASE("sin, cos, atan") {
    check_second(
        "sin", [](const auto& x) { return mg::sin(x); }, [](double x) { return -std::sin(x); }, in(-3, 3));
    check_second(
        "cos", [](const auto& x) { return mg::cos(x); }, [](double x) { return -std::cos(x); }, in(-3, 3));
    check_second(
        "atan", [](const auto& x) { return mg::atan(x); },
        [](double x) { return -2 * x / ((1 + x * x) * (1 + x * x)); }, in(-2, 2));
  }
  SUBCASE("exp, log, sqrt, square") {
    check_second(
        "exp", [](const auto& x) { return mg::exp(x); }, [](double x) { return std::exp(x); }, in(-2, 2));
    check_second(
        "log", [](const auto& x) { return mg::log(x); }, [](double x) { return -1 / (x * x); }, in(0.3, 3));
    check_second(
        "sqrt", [](const auto& x) { return mg::sqrt(x); }, [](double x) { return -0.25 / (x * std::sqrt(x)); },
        in(0.3, 3));
    check_second(
        "square", [](const auto& x) { return mg::square(x); }, [](double) { return 2.0; }, in(-2, 2));
  }
  SUBCASE("tanh, sigmoid, softplus, silu, erf") {
    check_second(
        "tanh", [](const auto& x) { return mg::tanh(x); },
        [](double x) { return -2 * std::tanh(x) * (1 - std::tanh(x) * std::tanh(x)); }, in(-2, 2));
    check_second(
        "sigmoid", [](const auto& x) { return mg::sigmoid(x); },
        [](double x) { return sigmoid(x) * (1 - sigmoid(x)) * (1 - 2 * sigmoid(x)); }, in(-4, 4));
    check_second(
        "softplus", [](const auto& x) { return mg::softplus(x); },
        [](double x) { return sigmoid(x) * (1 - sigmoid(x)); }, in(-4, 4));
    check_second(
        "silu", [](const auto& x) { return mg::silu(x); },
        [](double x) { return sigmoid(x) * (1 - sigmoid(x)) * (2 + x * (1 - 2 * sigmoid(x))); }, in(-4, 4));
    check_second(
        "erf", [](const auto& x) { return mg::erf(x); },
        [](double x) { return -4 * x / std::sqrt(kPi) * std::exp(-x * x); }, in(-2, 2));
  }
  SUBCASE("gelu, exact form: phi(x) (2 - x^2)") {
    check_second(
        "gelu(erf)", [](const auto& x) { return mg::gelu(x); }, [](double x) { return phi(x) * (2 - x * x); },
        in(-3, 3));
  }
  SUBCASE("gelu, tanh form") {
    // f = x (1 + t) / 2 with t = tanh(u), u = k (x + c x^3): f'' = t' + x t'' / 2, where t' = (1 - t^2) u' and
    // t'' = (1 - t^2) (u'' - 2 t u'^2).
    check_second(
        "gelu(tanh)", [](const auto& x) { return mg::gelu(x, true); },
        [](double x) {
          const double k = std::sqrt(2 / kPi), c = 0.044715;
          const double t = std::tanh(k * (x + c * x * x * x));
          const double u1 = k * (1 + 3 * c * x * x), u2 = 6 * k * c * x;
          return (1 - t * t) * u1 + 0.5 * x * (1 - t * t) * (u2 - 2 * t * u1 * u1);
        },
        in(-3, 3));
  }
  SUBCASE("pow with a scalar exponent") {
    check_second(
        "pow(x, 3.0)", [](const auto& x) { return mg::pow(x, 3.0); }, [](double x) { return 6 * x; }, in(-2, 2));
    check_second(
        "pow(x, 2.5)", [](const auto& x) { return mg::pow(x, 2.5); }, [](double x) { return 2.5 * 1.5 * std::sqrt(x); },
        in(0.3, 3));
    check_second(
        "pow(x, -1.0)", [](const auto& x) { return mg::pow(x, -1.0); }, [](double x) { return 2 / (x * x * x); },
        in(0.3, 3));
  }
  SUBCASE("piecewise: elu below 0 is alpha e^x, above 0 is 0") {
    check_second(
        "elu(0.7)", [](const auto& x) { return mg::elu(x, 0.7); },
        [](double x) { return x > 0 ? 0.0 : 0.7 * std::exp(x); }, in(-2, -0.1));
  }
}

TEST_CASE("autodiff: second derivatives of mul, div and pow, every Hessian block") {
  for (unsigned seed : kSeeds) {
    reseed(seed);
    const auto s = random_shape<2>(1, 4);
    mg::Input<struct hess_a, double, 2> a("a");
    mg::Input<struct hess_b, double, 2> b("b");
    const auto av = uniform(s, 0.3, 2);
    const auto bv = signed_uniform(s, 0.4, 2);
    a.bind(av);
    b.bind(bv);
    const auto u = uniform(s, -1, 1);
    const auto v = uniform(s, -1, 1);
    auto closed = [&](auto f) { return tabulate(s, [&](index_t i) { return f(av.data()[i], bv.data()[i]); }); };
    const std::string tag = " (seed " + std::to_string(seed) + ", " + shape_string(s) + ")";
    SUBCASE("a * b: d/da = b, d/db = a") {
      const auto [da, db] = mg::grad(mg::sum(a * b), a, b);
      const auto [dda_b] = mg::grad(mg::sum(da), b);
      const auto [ddb_a] = mg::grad(mg::sum(db), a);
      check_values("mul d2/da db" + tag, mg::eval(dda_b), closed([](double, double) { return 1.0; }));
      check_values("mul d2/db da" + tag, mg::eval(ddb_a), closed([](double, double) { return 1.0; }));
      check_grad("mul second order" + tag, mg::sum(da * u) + mg::sum(db * v), a, b);
    }
    SUBCASE("a / b: d/da = 1/b, d/db = -a/b^2") {
      const auto [da, db] = mg::grad(mg::sum(a / b), a, b);
      const auto [dda_b] = mg::grad(mg::sum(da), b);
      const auto [ddb_a, ddb_b] = mg::grad(mg::sum(db), a, b);
      check_values("div d2/da db" + tag, mg::eval(dda_b), closed([](double, double y) { return -1 / (y * y); }),
                   kClosed);
      check_values("div d2/db da" + tag, mg::eval(ddb_a), closed([](double, double y) { return -1 / (y * y); }),
                   kClosed);
      check_values("div d2/db2" + tag, mg::eval(ddb_b), closed([](double x, double y) { return 2 * x / (y * y * y); }),
                   kClosed);
      check_grad("div second order" + tag, mg::sum(da * u) + mg::sum(db * v), a, b);
    }
    SUBCASE("pow(a, b): d/da = b a^(b-1), d/db = a^b ln a") {
      const auto [da, db] = mg::grad(mg::sum(mg::pow(a, b)), a, b);
      const auto [dda_a, dda_b] = mg::grad(mg::sum(da), a, b);
      const auto [ddb_a, ddb_b] = mg::grad(mg::sum(db), a, b);
      auto cross = [](double x, double y) { return std::pow(x, y - 1) * (1 + y * std::log(x)); };
      check_values("pow d2/da2" + tag, mg::eval(dda_a),
                   closed([](double x, double y) { return y * (y - 1) * std::pow(x, y - 2); }), kClosed);
      check_values("pow d2/da db" + tag, mg::eval(dda_b), closed(cross), kClosed);
      check_values("pow d2/db da" + tag, mg::eval(ddb_a), closed(cross), kClosed);
      check_values("pow d2/db2" + tag, mg::eval(ddb_b),
                   closed([](double x, double y) { return std::pow(x, y) * std::log(x) * std::log(x); }), kClosed);
      check_grad("pow second order" + tag, mg::sum(da * u) + mg::sum(db * v), a, b);
    }
  }
  SUBCASE("with a broadcast operand") {
    reseed(7);
    mg::Input<struct hess_m, double, 2> a("a");
    mg::Input<struct hess_r, double, 1> b("b");
    a.bind(uniform(mg::Shape<2>{3, 4}, 0.3, 2));
    b.bind(signed_uniform(mg::Shape<1>{4}, 0.4, 2));
    const auto u = uniform(mg::Shape<2>{3, 4}, -1, 1);
    const auto v = uniform(mg::Shape<1>{4}, -1, 1);
    const auto [da, db] = mg::grad(mg::sum(mg::pow(a, b) + a / b * a), a, b);
    check_grad("pow and div, b broadcast, second order", mg::sum(da * u) + mg::sum(db * v), a, b);
  }
}

TEST_CASE("autodiff: second derivatives through reductions, views and matmul") {
  for (unsigned seed : kSeeds) {
    reseed(seed);
    const auto s = random_shape<2>(2, 4);
    mg::Input<struct comp_x, double, 2> x("x");
    x.bind(uniform(s, -1, 1));
    const auto w = uniform(s, -1, 1);
    const std::string tag = " (seed " + std::to_string(seed) + ", " + shape_string(s) + ")";
    auto hvp = [&](const std::string& op, const auto& loss) {
      const auto [dx] = mg::grad(loss, x);
      check_grad(op + " second order" + tag, mg::sum(dx * w), x);
    };
    SUBCASE("logsumexp (the softmax Jacobian)") {
      hvp("logsumexp over axis 1", mg::sum(mg::logsumexp(x, 1)));
      hvp("logsumexp over all", mg::logsumexp(x * 2.0));
    }
    SUBCASE("softmax and log_softmax (the backward node's own rules, in both operands)") {
      // square() makes the adjoint reaching the backward node depend on x, so its rules in g and in y both run.
      hvp("softmax over axis 1", mg::sum(mg::square(mg::softmax(x, 1)) * mg::exp(x)));
      hvp("softmax over axis 0", mg::sum(mg::square(mg::softmax(x * 3.0, 0))));
      hvp("log_softmax over axis 1", mg::sum(mg::square(mg::log_softmax(x, 1))));
      hvp("log_softmax over axis 0", mg::sum(mg::square(mg::log_softmax(x, 0)) * mg::sin(x)));
    }
    SUBCASE("mean, var, stddev, norm") {
      hvp("var ddof 1 over axis 0", mg::sum(mg::var(x, {0}, 1)));
      hvp("stddev over all", mg::stddev(x));
      hvp("norm p=2", mg::norm(x));
      hvp("norm p=3 over axis 1", mg::sum(mg::norm(x, {1}, 3.0)));
      hvp("mean of squares, squared", mg::square(mg::mean(mg::square(x))));
      hvp("prod over axis 1 of exp", mg::sum(mg::prod(mg::exp(x), 1) * mg::sum(x)));
    }
    SUBCASE("views") {
      hvp("slice with a negative step", mg::sum(mg::square(mg::slice(x, 1, mg::Slice::none, mg::Slice::none, -1)) * x));
      hvp("transpose and reshape", mg::sum(mg::exp(x.t().reshape({-1}))));
      hvp("broadcast of a column",
          mg::sum(mg::sin(mg::broadcast_to(mg::unsqueeze(mg::select(x, 1, 0), 0), {3, s[0]}))));
    }
    SUBCASE("a matmul layer") {
      mg::Param<struct comp_w, double, 2> W("W", uniform(mg::Shape<2>{s[1], 3}, -1, 1));
      const auto loss = mg::sum(mg::tanh(mg::matmul(x, W)));
      const auto [dW] = mg::grad(loss, W);
      const auto v = uniform(mg::Shape<2>{s[1], 3}, -1, 1);
      check_grad("tanh(x W): d/dW, second order" + tag, mg::sum(dW * v), W, x);
      hvp("tanh(x W): d/dx", loss);
    }
  }
}
