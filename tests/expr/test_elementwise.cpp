// The exact arithmetic elementwise operations of expr/functions.hpp against plain C++ references: + - * / (true
// division), negation, fmod, minimum and maximum, for every numeric dtype, on every pair of edge values and on
// random values, through the flat and the strided loop; and the dtype of each result (type promotion, scalars,
// bool results). Floating references are computed in double and rounded, which is exact for + - * / of floats.
// Elsewhere: comparisons, logic, where and cast in test_elementwise_logic.cpp; abs, sign, square, clamp and
// rounding in test_elementwise_rounding.cpp; math functions in test_elementwise_{math,trig,activation}.cpp;
// evaluation semantics (in place, aliasing, closures, threads) in test_elementwise_eval.cpp.
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

template <class A, class E>
constexpr bool yields = std::is_same_v<mg::expr_value_t<E>, A>;

}  // namespace

TEST_CASE_TEMPLATE("elementwise: + - * / and negation match the C++ reference exactly", T, float, double, std::int32_t,
                   std::int64_t) {
  std::mt19937 rng(42);
  std::vector<T> a, b;
  all_pairs(values_of<T>(rng, false), a, b, rng);
  using W = wide_t<T>;
  using R = result_t<T>;  // true division: integers divide as float
  SUBCASE("add") {
    check_exact(
        a, b, [](const auto& x, const auto& y) { return x + y; }, [](T x, T y) { return static_cast<T>(W(x) + W(y)); });
  }
  SUBCASE("sub") {
    check_exact(
        a, b, [](const auto& x, const auto& y) { return x - y; }, [](T x, T y) { return static_cast<T>(W(x) - W(y)); });
  }
  SUBCASE("mul") {
    check_exact(
        a, b, [](const auto& x, const auto& y) { return x * y; }, [](T x, T y) { return static_cast<T>(W(x) * W(y)); });
  }
  SUBCASE("true division, by zero included") {
    check_exact(
        a, b, [](const auto& x, const auto& y) { return x / y; },
        [](T x, T y) { return static_cast<R>(wide_t<R>(static_cast<R>(x)) / wide_t<R>(static_cast<R>(y))); });
  }
  SUBCASE("negation") {
    check_exact(
        a, [](const auto& x) { return -x; }, [](T x) { return static_cast<T>(-x); });
  }
}

TEST_CASE_TEMPLATE("elementwise: fmod, minimum and maximum match the C++ reference", T, float, double, std::int32_t,
                   std::int64_t) {
  std::mt19937 rng(43);
  std::vector<T> a, b;
  all_pairs(values_of<T>(rng, true), a, b, rng);
  SUBCASE("fmod takes the sign of the dividend; integer fmod by 0 gives 0") {
    check_exact(
        a, b, [](const auto& x, const auto& y) { return mg::fmod(x, y); },
        [](T x, T y) -> T {
          if constexpr (std::is_floating_point_v<T>)
            return static_cast<T>(std::fmod(static_cast<long double>(x), static_cast<long double>(y)));
          else  // the remainder of the truncating division; by -1 it is 0 (min % -1 itself would overflow)
            return y == 0 || y == -1 ? T(0) : static_cast<T>(x % y);
        });
  }
  SUBCASE("minimum and maximum propagate NaN") {
    const auto lo = [](T x, T y) -> T {
      if constexpr (std::is_floating_point_v<T>)
        if (std::isnan(x) || std::isnan(y)) return std::numeric_limits<T>::quiet_NaN();
      return y < x ? y : x;
    };
    const auto hi = [](T x, T y) -> T {
      if constexpr (std::is_floating_point_v<T>)
        if (std::isnan(x) || std::isnan(y)) return std::numeric_limits<T>::quiet_NaN();
      return x < y ? y : x;
    };
    // Which zero minimum(-0, +0) returns is not specified.
    check_exact(
        a, b, [](const auto& x, const auto& y) { return mg::minimum(x, y); }, lo, true);
    check_exact(
        a, b, [](const auto& x, const auto& y) { return mg::maximum(x, y); }, hi, true);
  }
}

TEST_CASE_TEMPLATE("elementwise: integer division is true division and integer fmod never traps", T, std::int32_t,
                   std::int64_t) {
  using L = std::numeric_limits<T>;
  const mg::Tensor<T, 1> a = {7, -7, 1, -1, 0, L::min(), L::min(), L::max(), 5};
  const mg::Tensor<T, 1> b = {2, 2, 0, 0, 0, -1, 1, -1, -3};
  const mg::Tensor<float, 1> q = a / b;
  CHECK(q(0) == 3.5f);
  CHECK(q(1) == -3.5f);
  CHECK(q(2) == std::numeric_limits<float>::infinity());
  CHECK(q(3) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(q(4)));
  const mg::Tensor<T, 1> r = mg::fmod(a, b);
  CHECK(r.to_vector() == std::vector<T>{1, -1, 0, 0, 0, 0, 0, 0, 2});
}

TEST_CASE("elementwise: result dtypes follow the promotion rules") {
  const mg::Tensor<float, 1> f = {1.5f, -2.0f};
  const mg::Tensor<double, 1> d = {1.5, -2.0};
  const mg::Tensor<std::int32_t, 1> i = {3, -4};
  const mg::Tensor<std::int64_t, 1> l = {3, -4};
  const mg::Tensor<bool, 1> b = {true, false};

  SUBCASE("mixed tensors promote bool < int32 < int64 < float < double") {
    static_assert(yields<float, decltype(i + f)>);
    static_assert(yields<float, decltype(l * f)>);
    static_assert(yields<double, decltype(f - d)>);
    static_assert(yields<double, decltype(l + d)>);
    static_assert(yields<std::int64_t, decltype(i + l)>);
    static_assert(yields<std::int32_t, decltype(b + i)>);
    static_assert(yields<float, decltype(mg::maximum(i, f))>);
    static_assert(yields<std::int64_t, decltype(mg::fmod(l, i))>);
    CHECK(mg::eval(i + f).to_vector() == std::vector<float>{4.5f, -6.0f});
    CHECK(mg::eval(b + i).to_vector() == std::vector<std::int32_t>{4, -4});
    CHECK(mg::eval(i * l).to_vector() == std::vector<std::int64_t>{9, 16});
  }
  SUBCASE("a C++ scalar adopts the tensor's dtype; integer tensors take a floating scalar's type") {
    static_assert(yields<float, decltype(f * 2.0)>);
    static_assert(yields<float, decltype(2.0 * f)>);
    static_assert(yields<double, decltype(d + 1)>);
    static_assert(yields<std::int32_t, decltype(i * 2)>);
    static_assert(yields<std::int32_t, decltype(i + 3LL)>);
    static_assert(yields<std::int64_t, decltype(l - 1)>);
    static_assert(yields<double, decltype(i * 2.5)>);
    static_assert(yields<float, decltype(i * 2.5f)>);
    static_assert(yields<std::int32_t, decltype(b + 1)>);
    static_assert(yields<double, decltype(b * 1.5)>);
    CHECK(mg::eval(i * 2.5).to_vector() == std::vector<double>{7.5, -10.0});
    CHECK(mg::eval(f * 0.1).to_vector() == std::vector<float>{1.5f * 0.1f, -2.0f * 0.1f});
    CHECK(mg::eval(b + 1).to_vector() == std::vector<std::int32_t>{2, 1});
  }
  SUBCASE("division of integers gives float; of doubles double") {
    static_assert(yields<float, decltype(i / i)>);
    static_assert(yields<float, decltype(l / l)>);
    static_assert(yields<float, decltype(i / 2)>);
    static_assert(yields<double, decltype(d / i)>);
    static_assert(yields<float, decltype(f / 2.0)>);
    CHECK(mg::eval(i / 2).to_vector() == std::vector<float>{1.5f, -2.0f});
  }
  SUBCASE("comparisons, logic and tests give bool; the comparison happens in the promoted type") {
    static_assert(yields<bool, decltype(i < f)>);
    static_assert(yields<bool, decltype(f == 1.5)>);
    static_assert(yields<bool, decltype(i < 2.5)>);
    static_assert(yields<bool, decltype(l != i)>);
    static_assert(yields<bool, decltype(f && i)>);
    static_assert(yields<bool, decltype(!f)>);
    static_assert(yields<bool, decltype(mg::logical_xor(b, i))>);
    static_assert(yields<bool, decltype(mg::isnan(d))>);
    CHECK(mg::eval(i < 3.5).to_vector() == std::vector<bool>{true, true});  // 3 < 3.5 in double, not 3 < 3
    CHECK(mg::eval(f == 1.5).to_vector() == std::vector<bool>{true, false});
  }
  SUBCASE("where promotes its branches; cast gives its target; unary ops keep the dtype") {
    static_assert(yields<float, decltype(mg::where(b, i, f))>);
    static_assert(yields<std::int32_t, decltype(mg::where(b, i, 7))>);
    static_assert(yields<double, decltype(mg::where(b, i, 2.5))>);
    static_assert(yields<std::int64_t, decltype(mg::where(b, 1, l))>);
    static_assert(yields<std::int32_t, decltype(mg::cast<std::int32_t>(d))>);
    static_assert(yields<bool, decltype(mg::cast<bool>(f))>);
    static_assert(yields<double, decltype(mg::cast<double>(b))>);
    static_assert(yields<std::int64_t, decltype(mg::abs(l))>);
    static_assert(yields<std::int32_t, decltype(mg::sign(i))>);
    static_assert(yields<std::int32_t, decltype(mg::floor(i))>);
    static_assert(yields<float, decltype(mg::clamp(f, 0, 1))>);
    static_assert(yields<std::int64_t, decltype(-l)>);
    CHECK(mg::eval(mg::where(b, i, 2.5)).to_vector() == std::vector<double>{3.0, 2.5});
  }
}

TEST_CASE("elementwise: integer overflow wraps around (two's complement) instead of being undefined") {
  using metagrad::index_t;
  using metagrad::Tensor;
  using I = std::int32_t;
  constexpr I hi = std::numeric_limits<I>::max(), lo = std::numeric_limits<I>::min();
  Tensor<I, 1> a = {hi, lo, 7};
  // Reference: the exact result in int64, reduced modulo 2^32 into [lo, hi].
  auto wrap = [](std::int64_t v) {
    std::int64_t m = ((v - lo) % (std::int64_t{1} << 32) + (std::int64_t{1} << 32)) % (std::int64_t{1} << 32);
    return static_cast<I>(m + lo);
  };
  const Tensor<I, 1> sum1 = a + 1, diff = a - 1, prod = a * 3, neg = -a, absolute = metagrad::abs(a),
                     sq = metagrad::square(a);
  for (index_t i = 0; i < 3; ++i) {
    const std::int64_t v = a(i);
    CHECK(sum1(i) == wrap(v + 1));
    CHECK(diff(i) == wrap(v - 1));
    CHECK(prod(i) == wrap(v * 3));
    CHECK(neg(i) == wrap(-v));
    CHECK(absolute(i) == wrap(v < 0 ? -v : v));
    CHECK(sq(i) == wrap(v * v));
  }
}
