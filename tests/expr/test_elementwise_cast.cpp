// cast<U> and Tensor::to<U>() against plain C++ references: float and double to integers truncate toward zero,
// saturate at the limits and map NaN to 0; to bool tests != 0; everything else is the C++ conversion. Edge values
// (NaN, infinities, the exact integer limits and their float neighbours) and random values, through the flat and
// the strided loop.
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

/// Float to integer conversion as documented for cast<U>: truncation toward zero, saturation at U's limits,
/// NaN to 0. Written with comparisons in long double, where every limit of int32 and int64 is exact.
template <class U, class F>
U saturating_cast(F x) {
  if (std::isnan(x)) return 0;
  const long double lim = std::ldexp(1.0L, std::numeric_limits<U>::digits);  // 2^31 or 2^63
  const long double t = std::trunc(static_cast<long double>(x));
  if (t >= lim) return std::numeric_limits<U>::max();
  if (t < -lim) return std::numeric_limits<U>::min();
  return static_cast<U>(t);
}

}  // namespace

TEST_CASE("elementwise: cast converts as documented") {
  std::mt19937 rng(46);
  SUBCASE("float and double to integers truncate toward zero, saturate, and map NaN to 0") {
    auto fx = values_of<float>(rng, true);
    fx.insert(fx.end(), {2147483648.0f, 2147483520.0f, -2147483648.0f, -2147483904.0f, 9.2233720e18f, -9.2233720e18f,
                         -0.99f, 0.99f, 1e10f, -1e10f});
    auto dx = values_of<double>(rng, true);
    dx.insert(dx.end(), {2147483647.9, 2147483648.0, -2147483648.9, -2147483649.0, 9223372036854774784.0,
                         9223372036854775808.0, -9223372036854775808.0, -9223372036854777856.0});
    check_exact(
        fx, [](const auto& e) { return mg::cast<std::int32_t>(e); },
        [](float v) { return saturating_cast<std::int32_t>(v); });
    check_exact(
        fx, [](const auto& e) { return mg::cast<std::int64_t>(e); },
        [](float v) { return saturating_cast<std::int64_t>(v); });
    check_exact(
        dx, [](const auto& e) { return mg::cast<std::int32_t>(e); },
        [](double v) { return saturating_cast<std::int32_t>(v); });
    check_exact(
        dx, [](const auto& e) { return mg::cast<std::int64_t>(e); },
        [](double v) { return saturating_cast<std::int64_t>(v); });
  }
  SUBCASE("to bool tests != 0 (NaN is true); from bool gives 0 or 1") {
    const auto fx = values_of<float>(rng, true);
    check_exact(
        fx, [](const auto& e) { return mg::cast<bool>(e); }, [](float v) { return v != 0.0f; });
    const auto bt = mg::Tensor<bool, 1>{false, true, true};
    CHECK(mg::eval(mg::cast<float>(bt)).to_vector() == std::vector<float>{0, 1, 1});
    CHECK(mg::eval(mg::cast<std::int64_t>(bt)).to_vector() == std::vector<std::int64_t>{0, 1, 1});
    const auto ix = values_of<std::int32_t>(rng, true);
    check_exact(
        ix, [](const auto& e) { return mg::cast<bool>(e); }, [](std::int32_t v) { return v != 0; });
  }
  SUBCASE("between floating types and from integers, C++ conversion (round to nearest)") {
    const auto dx = values_of<double>(rng, true);
    check_exact(
        dx, [](const auto& e) { return mg::cast<float>(e); }, [](double v) { return static_cast<float>(v); });
    const auto fx = values_of<float>(rng, true);
    check_exact(
        fx, [](const auto& e) { return mg::cast<double>(e); }, [](float v) { return static_cast<double>(v); });
    const auto lx = values_of<std::int64_t>(rng, true);
    check_exact(
        lx, [](const auto& e) { return mg::cast<float>(e); }, [](std::int64_t v) { return static_cast<float>(v); });
    // int64 to int32 keeps the low 32 bits (modular since C++20).
    check_exact(
        lx, [](const auto& e) { return mg::cast<std::int32_t>(e); },
        [](std::int64_t v) { return static_cast<std::int32_t>(v); });
  }
  SUBCASE("Tensor::to<U>() is cast<U>") {
    const mg::Tensor<float, 1> f = {1.9f, -1.9f, std::numeric_limits<float>::quiet_NaN(), 1e20f};
    CHECK(f.to<std::int32_t>().to_vector() == std::vector<std::int32_t>{1, -1, 0, INT32_MAX});
  }
}
