// The exponential, logarithmic and power functions of expr/functions.hpp against std:: references: random inputs
// at several magnitudes plus the edge values (signed zeros, infinities, NaN, the largest, smallest normal and
// subnormal magnitudes), through the flat and the strided loop, for float, double and integer tensors.
//
// Float results must lie within the maximum error documented beside each function in core/math.hpp, in its metric:
// ulps (of the correctly rounded result) against the exact value, here the double-precision std:: value. The double
// versions call libm; their references are computed in long double, and they must be within 2 ulp. Trigonometric and
// hyperbolic functions are in test_elementwise_trig.cpp, activations in test_elementwise_activation.cpp.
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

TEST_CASE_TEMPLATE("elementwise math: exponentials and logarithms match std:: within the documented ulps", T, float,
                   double, std::int32_t) {
  std::mt19937 rng(1234);
  const auto x = math_inputs<T>(rng);
  SUBCASE("exp") {
    check_unary(
        x, [](const auto& e) { return mg::exp(e); }, [](auto v) { return std::exp(v); }, {1.17, 2});
  }
  SUBCASE("exp2") {
    check_unary(
        x, [](const auto& e) { return mg::exp2(e); }, [](auto v) { return std::exp2(v); }, {1.22, 2});
  }
  SUBCASE("expm1") {
    check_unary(
        x, [](const auto& e) { return mg::expm1(e); }, [](auto v) { return std::expm1(v); }, {1.56, 2});
  }
  SUBCASE("log") {
    check_unary(
        x, [](const auto& e) { return mg::log(e); }, [](auto v) { return std::log(v); }, {0.89, 2});
  }
  SUBCASE("log2") {
    check_unary(
        x, [](const auto& e) { return mg::log2(e); }, [](auto v) { return std::log2(v); }, {1.44, 2});
  }
  SUBCASE("log1p") {
    check_unary(
        x, [](const auto& e) { return mg::log1p(e); }, [](auto v) { return std::log1p(v); }, {0.90, 2});
  }
  // sqrt is correctly rounded (IEEE): 0.5 ulp. rsqrt is 1 / sqrt(x): the relative error of the rounded root (at
  // most 2^-24, so at most 1 ulp of any result) and the final rounding.
  SUBCASE("sqrt") {
    check_unary(
        x, [](const auto& e) { return mg::sqrt(e); }, [](auto v) { return std::sqrt(v); }, {0.5, 0.5});
  }
  SUBCASE("rsqrt") {
    check_unary(
        x, [](const auto& e) { return mg::rsqrt(e); }, [](auto v) { return decltype(v)(1) / std::sqrt(v); },
        {1.5, 1.5});
  }
}

TEST_CASE_TEMPLATE("elementwise math: pow and atan2 match std:: within the documented ulps", T, float, double) {
  std::mt19937 rng(1213);
  using L = std::numeric_limits<T>;
  // Every pair of edge values (the special cases of std::pow and std::atan2), then random bases at several
  // magnitudes with exponents in [-10, 10], half of them integers (negative bases give NaN for the others).
  const std::vector<T> edges = {T(0),          T(-0.0),        T(1),          T(-1),    T(0.5),   T(-0.5),
                                T(2),          T(-2),          T(3),          T(-3),    T(2.5),   T(-2.5),
                                T(1e30),       T(-1e30),       T(1e-30),      L::max(), L::min(), L::denorm_min(),
                                L::infinity(), -L::infinity(), L::quiet_NaN()};
  std::vector<T> a, b;
  for (T u : edges)
    for (T v : edges) a.push_back(u), b.push_back(v);
  std::uniform_real_distribution<double> mag(-3, 3), expo(-10, 10);
  std::bernoulli_distribution coin(0.5);
  for (int i = 0; i < 3000; ++i) {
    const double base = std::pow(10.0, mag(rng));
    const double e = expo(rng);
    a.push_back(static_cast<T>(coin(rng) ? -base : base));
    b.push_back(static_cast<T>(coin(rng) ? std::round(e) : e));
  }
  SUBCASE("pow(tensor, tensor)") {
    check_binary(
        a, b, [](const auto& x, const auto& y) { return mg::pow(x, y); }, [](auto x, auto y) { return std::pow(x, y); },
        std::is_same_v<T, float> ? 1.35 : 2);
  }
  SUBCASE("atan2(y, x)") {
    check_binary(
        a, b, [](const auto& y, const auto& x) { return mg::atan2(y, x); },
        [](auto y, auto x) { return std::atan2(y, x); }, std::is_same_v<T, float> ? 2.22 : 2);
  }
  SUBCASE("pow(tensor, scalar) agrees with std::pow, special values included") {
    // pow(x, 2), pow(x, 1) and pow(x, 0.5) take shortcuts (x * x, x, sqrt); they must keep pow's semantics.
    for (double p : {2.0, 1.0, 0.5, 0.0, 3.0, -1.0, -1.5, 1.0 / 3.0}) {
      CAPTURE(p);
      const auto ref = [p](auto x) { return std::pow(x, static_cast<decltype(x)>(static_cast<T>(p))); };
      check_unary(edges, [p](const auto& x) { return mg::pow(x, p); }, ref, {1.35, 2});
      check_unary(a, [p](const auto& x) { return mg::pow(x, p); }, ref, {1.35, 2});
    }
    // The sign of a zero result, which the ulp distance does not see: pow(-0, 0.5) is +0, as std::pow.
    const mg::Tensor<T, 1> z = {T(-0.0)};
    CHECK_FALSE(std::signbit(mg::eval(mg::pow(z, 0.5))(0)));
    CHECK(std::signbit(mg::eval(mg::pow(z, 3.0))(0)));
  }
}

TEST_CASE("elementwise math: integer and bool inputs compute in float") {
  const mg::Tensor<std::int32_t, 1> i = {-2, 0, 1, 4};
  const mg::Tensor<std::int64_t, 1> l = {-2, 0, 1, 4};
  const mg::Tensor<bool, 1> b = {false, true};
  static_assert(std::is_same_v<mg::expr_value_t<decltype(mg::exp(i))>, float>);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(mg::sqrt(l))>, float>);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(mg::sigmoid(b))>, float>);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(mg::gelu(l))>, float>);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(mg::pow(i, i))>, float>);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(mg::pow(i, 2))>, float>);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(mg::atan2(l, l))>, float>);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(mg::relu(i))>, float>);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(mg::exp(mg::Tensor<double, 1>{}))>, double>);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(mg::pow(mg::Tensor<double, 1>{}, 2))>, double>);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(mg::pow(i, mg::Tensor<double, 1>{}))>, double>);

  const mg::Tensor<float, 1> s = mg::sqrt(l);
  CHECK(std::isnan(s(0)));
  CHECK(s(3) == 2.0f);
  const mg::Tensor<float, 1> e = mg::exp(b);
  CHECK(e(0) == 1.0f);
  CHECK(ulp_distance(e(1), static_cast<float>(std::exp(1.0))) <= 1);
  const mg::Tensor<float, 1> p = mg::pow(i, 3);
  CHECK(p.to_vector() == std::vector<float>{-8.0f, 0.0f, 1.0f, 64.0f});
  const mg::Tensor<float, 1> q = mg::pow(i, i);
  CHECK(q.to_vector() == std::vector<float>{0.25f, 1.0f, 1.0f, 256.0f});

  SUBCASE("int64 inputs through the flat and the strided loop") {
    std::mt19937 rng(1415);
    const auto x = math_inputs<std::int64_t>(rng);
    check_unary(
        x, [](const auto& v) { return mg::log1p(v); }, [](auto v) { return std::log1p(v); }, {0.90, 2});
    check_unary(
        x, [](const auto& v) { return mg::atan(v); }, [](auto v) { return std::atan(v); }, {2.30, 2});
  }
}

TEST_CASE("elementwise math: the ulp distance the bounds above are measured with") {
  const float one_up = std::nextafter(1.0f, 2.0f);
  CHECK(ulp_distance(1.0f, one_up) == 1);
  CHECK(ulp_distance(one_up, 1.0f) == 1);
  CHECK(ulp_distance(1.0f, std::nextafter(std::nextafter(1.0f, 0.0f), 0.0f)) == 2);
  CHECK(ulp_distance(0.0f, -0.0f) == 0);
  const float tiny = std::numeric_limits<float>::denorm_min();
  CHECK(ulp_distance(tiny, -tiny) == 2);
  CHECK(ulp_distance(std::nextafter(0.0, 1.0), 0.0) == 1);
  CHECK(ulp_distance(2.0, std::nextafter(2.0, 3.0)) == 1);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  CHECK(ulp_distance(nan, -nan) == 0);
  CHECK(ulp_distance(nan, 1.0f) > 1000000);
  CHECK(ulp_distance(inf, inf) == 0);
  CHECK(ulp_distance(inf, std::numeric_limits<float>::max()) > 1000000);
  CHECK(ulp_distance(-inf, inf) > 1000000);
}
