// Comparisons, logic, where, the special-value tests and cast, against plain C++ references, for every dtype, on
// every pair of edge values (NaN, infinities, signed zeros, integer limits) and random values, through the flat
// and the strided loop. Several bool results are checked at once by packing them into the bits of one int32
// expression (bit k = the k-th operation), so each is still compared element by element with its reference.
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

/// bools b[0], b[1], ... as the bits of an int32: bit k is b[k].
inline std::int32_t bits_of(std::initializer_list<bool> b) {
  std::int32_t r = 0, k = 0;
  for (bool v : b) r |= static_cast<std::int32_t>(v) << k++;
  return r;
}

template <class E>
auto bit(const E& e, int k) {
  return mg::cast<std::int32_t>(e) * (1 << k);
}

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

TEST_CASE_TEMPLATE("elementwise: comparisons and logic give bool with IEEE semantics", T, float, double, std::int32_t,
                   std::int64_t, bool) {
  std::mt19937 rng(44);
  std::vector<T> a, b;
  all_pairs(values_of<T>(rng, true), a, b, rng, 500);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(mg::Tensor<T, 1>{} < mg::Tensor<T, 1>{})>, bool>);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(mg::logical_xor(mg::Tensor<T, 1>{}, mg::Tensor<T, 1>{}))>, bool>);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(!mg::Tensor<T, 1>{})>, bool>);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(mg::isnan(mg::Tensor<T, 1>{}))>, bool>);

  SUBCASE("== != < <= > >= are false with NaN except !=") {
    check_exact(
        a, b,
        [](const auto& x, const auto& y) {
          return bit(x == y, 0) + bit(x != y, 1) + bit(x < y, 2) + bit(x <= y, 3) + bit(x > y, 4) + bit(x >= y, 5);
        },
        [](T x, T y) { return bits_of({x == y, x != y, x < y, x <= y, x > y, x >= y}); });
  }
  SUBCASE("logic reads non-zero (NaN included) as true") {
    check_exact(
        a, b,
        [](const auto& x, const auto& y) {
          return bit(x && y, 0) + bit(x || y, 1) + bit(mg::logical_and(x, y), 2) + bit(mg::logical_or(x, y), 3) +
                 bit(mg::logical_xor(x, y), 4) + bit(!x, 5) + bit(mg::logical_not(y), 6);
        },
        [](T x, T y) {
          const bool p = x != T(0), q = y != T(0);
          return bits_of({p && q, p || q, p && q, p || q, p != q, !p, !q});
        });
  }
  SUBCASE("isnan, isinf and isfinite (integers are always finite)") {
    check_exact(
        a, [](const auto& x) { return bit(mg::isnan(x), 0) + bit(mg::isinf(x), 1) + bit(mg::isfinite(x), 2); },
        [](T x) {
          if constexpr (std::is_floating_point_v<T>)
            return bits_of({std::isnan(x), std::isinf(x), std::isfinite(x)});
          else
            return bits_of({false, false, true});
        });
  }
  SUBCASE("where selects elementwise") {
    check_exact(a, b, [](const auto& x, const auto& y) { return mg::where(x < y, x, y); },
                [](T x, T y) { return x < y ? x : y; });
    if constexpr (!std::is_same_v<T, bool>) {
      // A scalar branch takes the dtype of the other branch.
      check_exact(a, b, [](const auto& x, const auto& y) { return mg::where(x >= y, x, 3); },
                  [](T x, T y) { return x >= y ? x : T(3); });
      check_exact(a, b, [](const auto& x, const auto& y) { return mg::where(x != y, 5, y); },
                  [](T x, T y) { return x != y ? T(5) : y; });
    }
  }
}

TEST_CASE("elementwise: where broadcasts a condition and mixes dtypes") {
  const mg::Tensor<bool, 2> c = {{true}, {false}};
  const mg::Tensor<std::int32_t, 1> i = {1, 2, 3};
  const mg::Tensor<float, 1> f = {0.5f, 1.5f, 2.5f};
  const mg::Tensor<float, 2> y = mg::where(c, i, f);
  CHECK(y.shape() == mg::Shape<2>{2, 3});
  CHECK(y.to_vector() == std::vector<float>{1, 2, 3, 0.5f, 1.5f, 2.5f});
  const mg::Tensor<double, 1> z = mg::where(i > 1, i, -0.5);
  CHECK(z.to_vector() == std::vector<double>{-0.5, 2, 3});
}

TEST_CASE("elementwise: cast converts as documented") {
  std::mt19937 rng(46);
  SUBCASE("float and double to integers truncate toward zero, saturate, and map NaN to 0") {
    auto fx = values_of<float>(rng, true);
    fx.insert(fx.end(), {2147483648.0f, 2147483520.0f, -2147483648.0f, -2147483904.0f, 9.2233720e18f, -9.2233720e18f,
                         -0.99f, 0.99f, 1e10f, -1e10f});
    auto dx = values_of<double>(rng, true);
    dx.insert(dx.end(), {2147483647.9, 2147483648.0, -2147483648.9, -2147483649.0, 9223372036854774784.0,
                         9223372036854775808.0, -9223372036854775808.0, -9223372036854777856.0});
    check_exact(fx, [](const auto& e) { return mg::cast<std::int32_t>(e); }, [](float v) { return saturating_cast<std::int32_t>(v); });
    check_exact(fx, [](const auto& e) { return mg::cast<std::int64_t>(e); }, [](float v) { return saturating_cast<std::int64_t>(v); });
    check_exact(dx, [](const auto& e) { return mg::cast<std::int32_t>(e); }, [](double v) { return saturating_cast<std::int32_t>(v); });
    check_exact(dx, [](const auto& e) { return mg::cast<std::int64_t>(e); }, [](double v) { return saturating_cast<std::int64_t>(v); });
  }
  SUBCASE("to bool tests != 0 (NaN is true); from bool gives 0 or 1") {
    const auto fx = values_of<float>(rng, true);
    check_exact(fx, [](const auto& e) { return mg::cast<bool>(e); }, [](float v) { return v != 0.0f; });
    const auto bt = mg::Tensor<bool, 1>{false, true, true};
    CHECK(mg::eval(mg::cast<float>(bt)).to_vector() == std::vector<float>{0, 1, 1});
    CHECK(mg::eval(mg::cast<std::int64_t>(bt)).to_vector() == std::vector<std::int64_t>{0, 1, 1});
    const auto ix = values_of<std::int32_t>(rng, true);
    check_exact(ix, [](const auto& e) { return mg::cast<bool>(e); }, [](std::int32_t v) { return v != 0; });
  }
  SUBCASE("between floating types and from integers, C++ conversion (round to nearest)") {
    const auto dx = values_of<double>(rng, true);
    check_exact(dx, [](const auto& e) { return mg::cast<float>(e); }, [](double v) { return static_cast<float>(v); });
    const auto fx = values_of<float>(rng, true);
    check_exact(fx, [](const auto& e) { return mg::cast<double>(e); }, [](float v) { return static_cast<double>(v); });
    const auto lx = values_of<std::int64_t>(rng, true);
    check_exact(lx, [](const auto& e) { return mg::cast<float>(e); }, [](std::int64_t v) { return static_cast<float>(v); });
    // int64 to int32 keeps the low 32 bits (modular since C++20).
    check_exact(lx, [](const auto& e) { return mg::cast<std::int32_t>(e); }, [](std::int64_t v) { return static_cast<std::int32_t>(v); });
  }
  SUBCASE("Tensor::to<U>() is cast<U>") {
    const mg::Tensor<float, 1> f = {1.9f, -1.9f, std::numeric_limits<float>::quiet_NaN(), 1e20f};
    CHECK(f.to<std::int32_t>().to_vector() == std::vector<std::int32_t>{1, -1, 0, INT32_MAX});
  }
}

