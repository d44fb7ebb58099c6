// The activation functions of expr/functions.hpp (sigmoid, softplus, silu, relu, leaky_relu, elu, selu, both
// GELUs) against references written from their mathematical definitions in double (long double for double
// tensors), on random inputs at several magnitudes and edge values, through the flat and the strided loop.
//
// Errors are in ulps against the exact value (the metric of core/math.hpp). Float bounds: the maximum error
// documented in core/math.hpp for sigmoid, softplus and the GELUs. Functions built from several rounded operations
// (silu, leaky_relu, elu, selu) compose: a math function within B ulp of its own result has a relative error of at
// most 2B * 2^-24 and so adds at most 2B ulp to the final result, every further rounded operation at most 1 ulp,
// and the final rounding 0.5. Double bounds: the same with 2 ulp for libm and 4 for the double sigmoid, or, where
// the double formula rounds an argument that the result is very sensitive to, a bound proportional to that
// sensitivity (see each case).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <metagrad/metagrad.hpp>
#include <random>
#include <type_traits>
#include <vector>

#include "elementwise_reference.hpp"

using namespace elementwise_test;

namespace {

template <class X>
X sigmoid_ref(X x) {
  // Both branches are the same function; each avoids overflow on its side.
  return x >= 0 ? X(1) / (X(1) + std::exp(-x)) : std::exp(x) / (X(1) + std::exp(x));
}

template <class X>
X gelu_erf_ref(X x) {
  // x Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2: no cancellation for negative x.
  if (x == -std::numeric_limits<X>::infinity()) return X(-0.0);  // the limit
  return X(0.5) * x * std::erfc(-x * X(0.707106781186547524400844362104849039L));
}

template <class X>
X gelu_tanh_ref(X x) {
  // x/2 (1 + tanh v) = x sigmoid(2v), v = sqrt(2/pi) (x + 0.044715 x^3): the tanh form without cancellation.
  if (x == -std::numeric_limits<X>::infinity()) return X(-0.0);
  const X v = X(0.797884560802865355879892119868763737L) * (x + X(0.044715L) * x * x * x);
  return x * sigmoid_ref(X(2) * v);
}

/// The reference of a float result is computed in double.
template <class X>
constexpr bool for_float = std::is_same_v<X, double>;

}  // namespace

TEST_CASE_TEMPLATE("elementwise activations: match their definitions within the documented ulps", T, float, double,
                   std::int32_t) {
  std::mt19937 rng(91011);
  const auto x = math_inputs<T>(rng);
  SUBCASE("sigmoid") {
    check_unary(
        x, [](const auto& e) { return mg::sigmoid(e); }, [](auto v) { return sigmoid_ref(v); }, {2.40, 4});
  }
  SUBCASE("softplus") {
    check_unary(
        x, [](const auto& e) { return mg::softplus(e); },
        [](auto v) { return v > 0 ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v)); }, {1.75, 4});
  }
  SUBCASE("silu") {
    // x sigmoid(x): twice sigmoid's bound and the final rounding; where sigmoid(x) is subnormal its error is
    // absolute (a few subnormal spacings) and multiplied by x.
    Bound b{2 * 2.40 + 0.5, 2 * 4 + 0.5};
    b.per_x_if_tiny = 4;
    check_unary(
        x, [](const auto& e) { return mg::silu(e); }, [](auto v) { return v * sigmoid_ref(v); }, b);
  }
  SUBCASE("relu passes NaN through") {
    check_unary(
        x, [](const auto& e) { return mg::relu(e); },
        [](auto v) { return std::isnan(v) ? v : (v > 0 ? v : decltype(v)(0)); }, {0, 0});
  }
  // leaky_relu, elu, selu: each constant is rounded to the compute type (1 ulp), then multiplied.
  SUBCASE("leaky_relu") {
    check_unary(
        x, [](const auto& e) { return mg::leaky_relu(e, 0.01); },
        [](auto v) { return v < 0 ? decltype(v)(0.01L) * v : v; }, {1.5, 1.5});
  }
  SUBCASE("elu") {
    check_unary(
        x, [](const auto& e) { return mg::elu(e, 0.3); },
        [](auto v) { return v > 0 ? v : decltype(v)(0.3L) * std::expm1(v); }, {2 * 1.56 + 1.5, 2 * 2 + 1.5});
  }
  SUBCASE("selu") {
    check_unary(
        x, [](const auto& e) { return mg::selu(e); },
        [](auto v) {
          using X = decltype(v);
          return X(1.05070098735548049341933498529460270L) *
                 (v > 0 ? v : X(1.67326324235437728481704299167171454L) * std::expm1(v));
        },
        {2 * 1.56 + 3.5, 2 * 2 + 3.5});
  }
  SUBCASE("gelu, exact erf form") {
    // Double: the formula rounds x / sqrt(2) (about 1.5 ulp with its constant) before erfc, whose relative
    // sensitivity to its argument u is 2u^2 = x^2, so the bound grows by 2 x^2 ulps in the negative tail.
    Bound b{2.63, 4};
    b.d_per_x2 = 2;
    check_unary(
        x, [](const auto& e) { return mg::gelu(e); }, [](auto v) { return gelu_erf_ref(v); }, b);
  }
  SUBCASE("gelu, tanh approximation") {
    // Float: x < -12 is documented to give -0. Double: sigmoid(2v) with 2v rounded (about 2 ulp), and the
    // relative sensitivity of sigmoid(2v) is |2v| < 0.15 |x|^3 + 1.6 |x|.
    Bound b{3.52, 6};
    b.d_per_x2 = 4;
    b.d_per_x3 = 0.3;
    check_unary(
        x, [](const auto& e) { return mg::gelu(e, true); },
        [](auto v) {
          if constexpr (for_float<decltype(v)>)
            if (v < -12) return decltype(v)(-0.0);
          return gelu_tanh_ref(v);
        },
        b);
  }
}

TEST_CASE("elementwise activations: special values") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const mg::Tensor<float, 1> x = {-inf, -0.0f, 0.0f, inf, nan};
  const auto values = [](const auto& e) { return mg::eval(e).to_vector(); };
  SUBCASE("limits at the infinities") {
    const auto s = values(mg::sigmoid(x));
    CHECK(s[0] == 0.0f);
    CHECK(s[3] == 1.0f);
    CHECK(s[1] == 0.5f);
    const auto sp = values(mg::softplus(x));
    CHECK(sp[0] == 0.0f);
    CHECK(sp[3] == inf);
    const auto g = values(mg::gelu(x));
    CHECK(g[0] == 0.0f);
    CHECK(g[3] == inf);
    const auto gt = values(mg::gelu(x, true));
    CHECK(gt[0] == 0.0f);
    CHECK(gt[3] == inf);
    CHECK(values(mg::elu(x, 2.0))[0] == -2.0f);
    CHECK(values(mg::relu(x))[0] == 0.0f);
    CHECK(values(mg::leaky_relu(x, 0.5))[0] == -inf);
  }
  SUBCASE("NaN propagates through every activation") {
    CHECK(std::isnan(values(mg::sigmoid(x))[4]));
    CHECK(std::isnan(values(mg::softplus(x))[4]));
    CHECK(std::isnan(values(mg::silu(x))[4]));
    CHECK(std::isnan(values(mg::relu(x))[4]));
    CHECK(std::isnan(values(mg::leaky_relu(x))[4]));
    CHECK(std::isnan(values(mg::elu(x))[4]));
    CHECK(std::isnan(values(mg::selu(x))[4]));
    CHECK(std::isnan(values(mg::gelu(x))[4]));
    CHECK(std::isnan(values(mg::gelu(x, true))[4]));
  }
  SUBCASE("the default slope of leaky_relu is 0.01 and of elu alpha is 1") {
    const mg::Tensor<float, 1> y = {-2.0f, 3.0f};
    CHECK(values(mg::leaky_relu(y)) == std::vector<float>{-2.0f * 0.01f, 3.0f});
    CHECK(ulp_distance(values(mg::elu(y))[0], static_cast<float>(std::expm1(-2.0))) <= 2);
  }
}
