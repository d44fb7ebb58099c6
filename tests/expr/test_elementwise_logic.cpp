// Comparisons, logic, where and the special-value tests, against plain C++ references, for every dtype, on
// every pair of edge values (NaN, infinities, signed zeros, integer limits) and random values, through the flat
// and the strided loop. Several bool results are checked at once by packing them into the bits of one int32
// expression (bit k = the k-th operation), so each is still compared element by element with its reference.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
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

}  // namespace

TEST_CASE_TEMPLATE("elementwise: comparisons and logic give bool with IEEE semantics", T, float, double, std::int32_t,
                   std::int64_t, bool) {
  std::mt19937 rng(44);
  std::vector<T> a, b;
  all_pairs(values_of<T>(rng, true), a, b, rng, 500);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(mg::Tensor<T, 1>{} < mg::Tensor<T, 1>{})>, bool>);
  static_assert(
      std::is_same_v<mg::expr_value_t<decltype(mg::logical_xor(mg::Tensor<T, 1>{}, mg::Tensor<T, 1>{}))>, bool>);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(!mg::Tensor<T, 1>{})>, bool>);
  static_assert(std::is_same_v<mg::expr_value_t<decltype(mg::isnan(mg::Tensor<T, 1>{}))>, bool>);

  SUBCASE("== != < <= > >= are false with NaN except !=") {
    check_exact(
        a, b,
        [](const auto& x, const auto& y) {
          return bit(x == y, 0) + bit(x != y, 1) + bit(x < y, 2) + bit(x <= y, 3) + bit(x > y, 4) + bit(x >= y, 5);
        },
        [](T x, T y) {
          return bits_of({x == y, x != y, x<y, x <= y, x> y, x >= y});
        });
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
    check_exact(
        a, b, [](const auto& x, const auto& y) { return mg::where(x < y, x, y); },
        [](T x, T y) { return x < y ? x : y; });
    if constexpr (!std::is_same_v<T, bool>) {
      // A scalar branch takes the dtype of the other branch.
      check_exact(
          a, b, [](const auto& x, const auto& y) { return mg::where(x >= y, x, 3); },
          [](T x, T y) { return x >= y ? x : T(3); });
      check_exact(
          a, b, [](const auto& x, const auto& y) { return mg::where(x != y, 5, y); },
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
