// Tests of argmax/argmin, all/any, logsumexp, var/stddev and norm (expr/reduce.hpp) in every calling form
// (all axes, one axis, lists of adjacent and non-adjacent axes, keepdims) on random shapes, each against a
// naive loop in double (tests/expr/reduce_reference.hpp): first-occurrence ties, two-pass variance, every
// order of norm. Split from test_reduce.cpp to keep each file's compile time short.
#include <doctest/doctest.h>

#include <cstdint>
#include <metagrad/metagrad.hpp>
#include <type_traits>

#include "reduce_reference.hpp"

using namespace reduce_test;

TEST_CASE_TEMPLATE("reduce: argmax and argmin give the first extreme position", T, float, double, std::int32_t) {
  // Integers in [-2, 2] tie often, so the first-occurrence rule is exercised on every loop shape.
  SUBCASE("against a naive loop on random shapes") {
    check_random_shapes<ArgMax, T>(ArgMax{}, -2, 2);
    check_random_shapes<ArgMin, T>(ArgMin{}, -2, 2);
  }
  SUBCASE("the result is int64") {
    CHECK(std::is_same_v<mg::expr_value_t<decltype(mg::argmax(std::declval<const mg::Tensor<T, 2>&>(), 1))>,
                         std::int64_t>);
  }
}

TEST_CASE_TEMPLATE("reduce: all and any", T, bool, float, std::int32_t) {
  SUBCASE("against a naive loop on random shapes") {
    // Integers in [0, 5] make all() true on some small groups; in [0, 1], any() false on some.
    for (int t = 0; t < 6; ++t) {
      const auto s = random_shape<3>(1, 3);
      check_rank3_forms(All{}, random_tensor<std::int32_t>(s, 0, 5).to<T>());
      check_rank3_forms(Any{}, random_tensor<std::int32_t>(s, 0, 1).to<T>());
    }
  }
  SUBCASE("the result is bool") {
    CHECK(std::is_same_v<mg::expr_value_t<decltype(mg::any(std::declval<const mg::Tensor<T, 2>&>()))>, bool>);
  }
}

TEST_CASE_TEMPLATE("reduce: logsumexp over every set of axes", T, float, double) {
  check_random_shapes<LogSumExp, T>(LogSumExp{}, -5, 5);
}

TEST_CASE_TEMPLATE("reduce: var and stddev with ddof 0 and 1", T, float, double, std::int32_t) {
  SUBCASE("against a two-pass loop on random shapes") {
    for (int ddof : {0, 1}) {
      CAPTURE(ddof);
      check_random_shapes<Var, T>(Var{ddof}, -3, 3);
      check_random_shapes<StdDev, T>(StdDev{ddof}, -3, 3);
    }
  }
  SUBCASE("a large common offset does not cancel (single-pass Welford against two-pass)") {
    if constexpr (std::is_floating_point_v<T>) {
      for (int ddof : {0, 1}) check_rank3_forms(Var{ddof}, random_tensor<T>(mg::Shape<3>{4, 5, 6}, 1e4, 1e4 + 1));
    }
  }
}

TEST_CASE_TEMPLATE("reduce: norm with p = 1, 2, inf, 0, 3 and 0.5", T, float, double) {
  SUBCASE("against a naive loop on random shapes") {
    for (double p : {1.0, 2.0, kInf, 0.0, 3.0, 0.5}) {
      CAPTURE(p);
      // Some zeros, which p = 0 counts out.
      auto x = random_tensor<T>(mg::Shape<3>{3, 4, 5}, -2, 2);
      for (index_t i = 0; i < x.numel(); i += 3) x.data()[i] = T(0);
      check_rank3_forms(Norm{p}, x);
      check_random_shapes<Norm, T>(Norm{p}, -2, 2, 5, 2);
    }
  }
  SUBCASE("a negative or NaN order is refused") {
    const auto x = mg::ones<T>({3});
    CHECK_THROWS_AS(mg::norm(x, -1.0), mg::error);
    CHECK_THROWS_AS(mg::norm(x, kNaN), mg::error);
  }
}
