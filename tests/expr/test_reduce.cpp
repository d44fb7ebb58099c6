// Tests of the reductions of expr/reduce.hpp in every calling form: over all axes, one axis, a list of axes
// (adjacent or not) and with keepdims, on random shapes of every dtype, each against a naive loop in double
// (tests/expr/reduce_reference.hpp). The CPU driver's three loop shapes (reduced axes trailing, leading, or
// interleaved with kept ones) are all reached. This file: sum, mean, prod, max, min, rank-4 axis sets and
// bad axes; argmax/argmin, all/any, logsumexp, var/stddev and norm are in test_reduce_stats.cpp; special
// values, views, fused inputs, destinations and large inputs in test_reduce_numerics.cpp.
#include <doctest/doctest.h>

#include <cstdint>
#include <metagrad/metagrad.hpp>
#include <type_traits>

#include "reduce_reference.hpp"

using namespace reduce_test;

TEST_CASE_TEMPLATE("reduce: sum over every set of axes", T, float, double, std::int32_t, std::int64_t, bool) {
  SUBCASE("against a naive loop on random shapes") { check_random_shapes<Sum, T>(Sum{}, -2, 2); }
  SUBCASE("sum of integers and bools is int64, of floats the same float") {
    using U = mg::expr_value_t<decltype(mg::sum(std::declval<const mg::Tensor<T, 2>&>()))>;
    CHECK(std::is_same_v<U, std::conditional_t<std::is_floating_point_v<T>, T, std::int64_t>>);
  }
}

TEST_CASE_TEMPLATE("reduce: mean over every set of axes", T, float, double, std::int32_t) {
  SUBCASE("against a naive loop on random shapes") { check_random_shapes<Mean, T>(Mean{}, -3, 3); }
  SUBCASE("mean of integers is float") {
    using U = mg::expr_value_t<decltype(mg::mean(std::declval<const mg::Tensor<T, 2>&>(), 0))>;
    CHECK(std::is_same_v<U, std::conditional_t<std::is_same_v<T, double>, double, float>>);
  }
}

TEST_CASE_TEMPLATE("reduce: prod over every set of axes", T, float, double, std::int64_t) {
  // Integers in [-1, 2] over at most 3^3 elements stay far from overflow; floats in [0.5, 1.5) likewise.
  if constexpr (std::is_integral_v<T>)
    check_random_shapes<Prod, T>(Prod{}, -1, 2, 3);
  else
    check_random_shapes<Prod, T>(Prod{}, 0.5, 1.5);
  if constexpr (std::is_floating_point_v<T>) check_random_shapes<Prod, T>(Prod{}, -1.5, 1.5, 4);
}

TEST_CASE_TEMPLATE("reduce: max and min over every set of axes", T, float, double, std::int32_t, std::int64_t) {
  // Small integer ranges make ties common.
  SUBCASE("against a naive loop on random shapes") {
    check_random_shapes<Max, T>(Max{}, -4, 4);
    check_random_shapes<Min, T>(Min{}, -4, 4);
  }
  SUBCASE("the result keeps the input dtype") {
    CHECK(std::is_same_v<mg::expr_value_t<decltype(mg::max(std::declval<const mg::Tensor<T, 2>&>()))>, T>);
  }
}

TEST_CASE("reduce: non-adjacent axes of a rank-4 tensor") {
  // {0, 2}, {1, 3}, {0, 3} and {0, 1, 3} interleave reduced and kept axes: the general multi-index walk.
  for (int t = 0; t < 3; ++t) {
    const auto x = random_tensor<float>(random_shape<4>(1, 5), -2, 2);
    CAPTURE(mg::to_string(x.shape()));
    const int a02[2] = {0, 2}, a13[2] = {1, 3}, a03[2] = {0, 3}, a013[3] = {0, 1, 3}, a23[2] = {3, 2};
    for (const int* a : {a02, a13, a03, a23}) {
      const int ax[2] = {a[0], a[1]};
      const auto m = mask_of<4>({a[0], a[1]});
      check_against_ref(Sum{}, x, m, false, mg::sum(x, ax));
      check_against_ref(Sum{}, x, m, true, mg::sum(x, ax, mg::keepdims));
      check_against_ref(ArgMax{}, x, m, false, mg::argmax(x, ax));
      check_against_ref(Var{1}, x, m, true, mg::var(x, ax, mg::keepdims, 1));
      check_against_ref(Max{}, x, m, false, mg::max(x, ax));
    }
    check_against_ref(Sum{}, x, mask_of<4>({0, 1, 3}), false, mg::sum(x, a013));
    check_against_ref(ArgMin{}, x, mask_of<4>({0, 1, 3}), true, mg::argmin(x, a013, mg::keepdims));
  }
}

TEST_CASE("reduce: bad axes are refused") {
  const auto x = mg::zeros<float>({2, 3, 4});
  CHECK_THROWS_AS(mg::sum(x, 3), mg::index_error);
  CHECK_THROWS_AS(mg::sum(x, -4), mg::index_error);
  CHECK_THROWS_AS(mg::max(x, {0, 0}), mg::index_error);
  CHECK_THROWS_AS(mg::mean(x, {1, -2}), mg::index_error);
  CHECK_THROWS_AS(mg::var(x, {0, 5}), mg::index_error);
}
