// abs, sign, square, clamp, floor, ceil, trunc and round against plain C++ references, for every numeric dtype, on
// edge values (signed zeros, infinities, NaN, halves) and random values, through the flat and the strided loop.
// Each keeps the dtype of its operand; on integers the rounding functions are the identity.
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

TEST_CASE_TEMPLATE("elementwise: abs, sign, square, clamp and rounding keep the dtype", T, float, double, std::int32_t,
                   std::int64_t) {
  std::mt19937 rng(45);
  // No integer limits here: abs and negation of the most negative integer overflow.
  const auto x = values_of<T>(rng, false);
  SUBCASE("abs") {
    check_exact(
        x, [](const auto& e) { return mg::abs(e); },
        [](T v) -> T {
          if constexpr (std::is_floating_point_v<T>)
            return std::fabs(v);
          else
            return v < 0 ? -v : v;
        });
  }
  SUBCASE("sign is -1, 0 or 1 and NaN for NaN") {
    const auto got = evaluate_flat_and_strided(x, [](const auto& e) { return mg::sign(e); });
    static_assert(std::is_same_v<typename decltype(got)::value_type, T>);
    for (std::size_t i = 0; i < x.size(); ++i) {
      CAPTURE(show(x[i]));
      if constexpr (std::is_floating_point_v<T>)
        if (std::isnan(x[i])) {
          CHECK(std::isnan(got[i]));
          continue;
        }
      CHECK(got[i] == (x[i] > 0 ? T(1) : (x[i] < 0 ? T(-1) : T(0))));
    }
  }
  SUBCASE("square") {
    check_exact(
        x, [](const auto& e) { return mg::square(e); },
        [](T v) { return static_cast<T>(wide_t<T>(v) * wide_t<T>(v)); });
  }
  SUBCASE("clamp, NaN passing through") {
    // Integer tensors convert the bounds to their own dtype (-2.5 -> -2, 3.5 -> 3).
    check_exact(
        x, [](const auto& e) { return mg::clamp(e, -2.5, 3.5); },
        [](T v) -> T {
          const T lo = static_cast<T>(-2.5), hi = static_cast<T>(3.5);
          if constexpr (std::is_floating_point_v<T>)
            if (std::isnan(v)) return v;
          return v < lo ? lo : (v > hi ? hi : v);
        });
  }
  SUBCASE("floor, ceil, trunc and round (half away from zero); identity on integers") {
    auto rounded = [](auto fn) {
      return [fn](T v) -> T {
        if constexpr (std::is_floating_point_v<T>) return fn(v);
        (void)fn;  // integers: the identity
        return v;
      };
    };
    check_exact(
        x, [](const auto& e) { return mg::floor(e); }, rounded([](auto v) { return std::floor(v); }));
    check_exact(
        x, [](const auto& e) { return mg::ceil(e); }, rounded([](auto v) { return std::ceil(v); }));
    check_exact(
        x, [](const auto& e) { return mg::trunc(e); }, rounded([](auto v) { return std::trunc(v); }));
    check_exact(
        x, [](const auto& e) { return mg::round(e); }, rounded([](auto v) { return std::round(v); }));
    if constexpr (std::is_floating_point_v<T>) {
      const mg::Tensor<T, 1> h = {T(0.5), T(-0.5), T(1.5), T(2.5), T(-2.5)};
      CHECK(mg::eval(mg::round(h)).to_vector() == std::vector<T>{1, -1, 2, 3, -3});
    }
  }
}
