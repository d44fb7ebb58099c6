// The trigonometric and hyperbolic functions and erf of expr/functions.hpp against std:: references: random inputs
// at several magnitudes plus the edge values (signed zeros, infinities, NaN, the largest, smallest normal and
// subnormal magnitudes), through the flat and the strided loop, for float, double and integer tensors.
//
// Float results must lie within the maximum error documented beside each function in core/math.hpp, in its metric:
// ulps (of the correctly rounded result) against the exact value, here the double-precision std:: value. The double
// versions call libm; their references are computed in long double, and they must be within 2 ulp. Exponentials,
// logarithms and powers are in test_elementwise_math.cpp, activations in test_elementwise_activation.cpp.
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

TEST_CASE_TEMPLATE("elementwise math: trigonometric and hyperbolic functions match std:: within the documented ulps", T,
                   float, double, std::int32_t) {
  std::mt19937 rng(5678);
  // sin, cos and tan are specified for |x| < 3.2e9 (beyond, the float versions are documented to give NaN).
  const auto xt = math_inputs<T>(rng, 3e9);
  const auto x = math_inputs<T>(rng);
  SUBCASE("sin") {
    check_unary(
        xt, [](const auto& e) { return mg::sin(e); }, [](auto v) { return std::sin(v); }, {1.55, 2});
  }
  SUBCASE("cos") {
    check_unary(
        xt, [](const auto& e) { return mg::cos(e); }, [](auto v) { return std::cos(v); }, {1.55, 2});
  }
  SUBCASE("tan") {
    check_unary(
        xt, [](const auto& e) { return mg::tan(e); }, [](auto v) { return std::tan(v); }, {2.78, 2});
  }
  SUBCASE("asin") {
    check_unary(
        x, [](const auto& e) { return mg::asin(e); }, [](auto v) { return std::asin(v); }, {2.35, 2});
  }
  SUBCASE("acos") {
    check_unary(
        x, [](const auto& e) { return mg::acos(e); }, [](auto v) { return std::acos(v); }, {1.14, 2});
  }
  SUBCASE("atan") {
    check_unary(
        x, [](const auto& e) { return mg::atan(e); }, [](auto v) { return std::atan(v); }, {2.30, 2});
  }
  SUBCASE("sinh") {
    check_unary(
        x, [](const auto& e) { return mg::sinh(e); }, [](auto v) { return std::sinh(v); }, {1.66, 2});
  }
  SUBCASE("cosh") {
    check_unary(
        x, [](const auto& e) { return mg::cosh(e); }, [](auto v) { return std::cosh(v); }, {1.60, 2});
  }
  SUBCASE("tanh") {
    check_unary(
        x, [](const auto& e) { return mg::tanh(e); }, [](auto v) { return std::tanh(v); }, {1.35, 2});
  }
  SUBCASE("erf") {
    check_unary(
        x, [](const auto& e) { return mg::erf(e); }, [](auto v) { return std::erf(v); }, {1.33, 2});
  }
}

TEST_CASE("elementwise math: float sin, cos and tan are NaN beyond the documented range, exact at zero") {
  const mg::Tensor<float, 1> x = {3.3e9f, -1e10f, 1e30f, std::numeric_limits<float>::max()};
  for (float v : mg::eval(mg::sin(x)).to_vector()) CHECK(std::isnan(v));
  for (float v : mg::eval(mg::cos(x)).to_vector()) CHECK(std::isnan(v));
  for (float v : mg::eval(mg::tan(x)).to_vector()) CHECK(std::isnan(v));
  const mg::Tensor<float, 1> z = {0.0f, -0.0f};
  const auto s = mg::eval(mg::sin(z)).to_vector(), t = mg::eval(mg::tan(z)).to_vector();
  CHECK((s[0] == 0.0f && !std::signbit(s[0]) && s[1] == 0.0f && std::signbit(s[1])));
  CHECK((t[0] == 0.0f && !std::signbit(t[0]) && t[1] == 0.0f && std::signbit(t[1])));
  CHECK(mg::eval(mg::cos(z)).to_vector() == std::vector<float>{1.0f, 1.0f});
}
