// Tests of the reductions of expr/reduce.hpp beyond plain values: NaN, infinity and tie rules, all/any on
// numbers, empty axes, the numerical stability of logsumexp and var, known norms, and large reductions split
// over threads (against a compensated double sum, and independent of the thread count). Fused inputs, views
// and destinations are in test_reduce_fused.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <metagrad/metagrad.hpp>
#include <vector>

#include "reduce_reference.hpp"

using namespace reduce_test;

namespace {

constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();
constexpr float kInff = std::numeric_limits<float>::infinity();

// Restores the default thread count when a test that changes it ends (also on a failed CHECK).
struct ThreadGuard {
  ~ThreadGuard() { mg::set_num_threads(0); }
};

// Kahan-compensated sum in double: the reference of the large reductions.
template <class It, class F>
double kahan(It b, It e, F&& f) {
  double s = 0, c = 0;
  for (; b != e; ++b) {
    const double y = f(*b) - c;
    const double t = s + y;
    c = (t - s) - y;
    s = t;
  }
  return s;
}

template <class E>
auto item(const E& e) {
  return mg::eval(e).item();
}

}  // namespace

TEST_CASE("reduce: NaN propagates through max and min, and the first NaN wins argmax and argmin") {
  SUBCASE("small vectors") {
    mg::Tensor<float, 1> x = {1, kNaNf, 5, kNaNf, -2};
    CHECK(std::isnan(item(mg::max(x))));
    CHECK(std::isnan(item(mg::min(x))));
    CHECK(item(mg::argmax(x)) == 1);
    CHECK(item(mg::argmin(x)) == 1);
    CHECK(std::isnan(item(mg::sum(x))));
    CHECK(std::isnan(item(mg::logsumexp(x))));
    mg::Tensor<float, 1> y = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, kNaNf};
    CHECK(std::isnan(item(mg::max(y))));
    CHECK(item(mg::argmax(y)) == 11);
    CHECK(item(mg::argmin(y)) == 11);
  }
  SUBCASE("every calling form, with NaNs placed in some groups only") {
    auto x = random_tensor<float>(mg::Shape<3>{4, 5, 6}, -3, 3);
    for (index_t i : {7, 8, 33, 95, 119}) x.data()[i] = kNaNf;
    check_rank3_forms(Max{}, x);
    check_rank3_forms(Min{}, x);
    check_rank3_forms(ArgMax{}, x);
    check_rank3_forms(ArgMin{}, x);
    check_rank3_forms(LogSumExp{}, x);
    check_rank3_forms(Sum{}, x);
  }
  SUBCASE("infinities are ordinary extremes") {
    mg::Tensor<double, 1> x = {-INFINITY, 2, INFINITY, INFINITY, -INFINITY};
    CHECK(item(mg::max(x)) == INFINITY);
    CHECK(item(mg::min(x)) == -INFINITY);
    CHECK(item(mg::argmax(x)) == 2);
    CHECK(item(mg::argmin(x)) == 0);
    mg::Tensor<float, 1> n = {-kInff, -kInff};
    CHECK(item(mg::max(n)) == -kInff);
    CHECK(item(mg::argmax(n)) == 0);
  }
}

TEST_CASE("reduce: ties go to the first position on every loop shape") {
  SUBCASE("ties spread across the vector lanes of one run") {
    mg::Tensor<std::int32_t, 1> x = {0, 1, 0, 7, 0, 0, 0, 0, 0, 0, 0, 7, 0, 7, -7, 0, 0, -7};
    CHECK(item(mg::argmax(x)) == 3);
    CHECK(item(mg::argmin(x)) == 14);
    mg::Tensor<float, 1> all_equal = mg::full<float>({37}, 2.5f);
    CHECK(item(mg::argmax(all_equal)) == 0);
    CHECK(item(mg::argmin(all_equal)) == 0);
  }
  SUBCASE("ties in the rows of a leading-axis reduction and of a middle-axis reduction") {
    const auto x = mg::from_vector(std::vector<float>{1, 5, 5, 5, 1, 5, 0, 5, 2, 2, 5, 5}, {2, 3, 2});
    // axis 0 (prefix path): pairs (x[0,j,k], x[1,j,k]).
    CHECK(mg::eval(mg::argmax(x, 0)).to_vector() == std::vector<std::int64_t>{0, 0, 0, 0, 1, 0});
    // axis 1 (general path): triples over j.
    CHECK(mg::eval(mg::argmax(x, 1)).to_vector() == std::vector<std::int64_t>{1, 0, 2, 0});
    CHECK(mg::eval(mg::argmin(x, 1)).to_vector() == std::vector<std::int64_t>{0, 0, 0, 1});
    CHECK(mg::eval(mg::argmin(x, 0)).to_vector() == std::vector<std::int64_t>{1, 0, 1, 1, 0, 0});
  }
  SUBCASE("ties and NaNs in different thread chunks of one large reduction") {
    ThreadGuard guard;
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      mg::set_num_threads(threads);
      auto x = mg::zeros<float>({300000});
      x(250000) = 3;
      x(40000) = 3;
      x(200000) = -1;
      x(10) = -1;
      CHECK(item(mg::argmax(x)) == 40000);
      CHECK(item(mg::argmin(x)) == 10);
      CHECK(item(mg::max(x)) == 3);
      x(280000) = kNaNf;
      x(160000) = kNaNf;
      CHECK(item(mg::argmax(x)) == 160000);
      CHECK(item(mg::argmin(x)) == 160000);
      CHECK(std::isnan(item(mg::max(x))));
      CHECK(std::isnan(item(mg::min(x))));
    }
  }
}

TEST_CASE("reduce: all and any") {
  SUBCASE("on bool tensors") {
    mg::Tensor<bool, 2> b = {{true, true, false}, {true, true, true}};
    CHECK_FALSE(item(mg::all(b)));
    CHECK(item(mg::any(b)));
    CHECK(mg::eval(mg::all(b, 1)).to_vector() == std::vector<bool>{false, true});
    CHECK(mg::eval(mg::all(b, 0)).to_vector() == std::vector<bool>{true, true, false});
    CHECK(mg::eval(mg::any(!b, 0)).to_vector() == std::vector<bool>{false, false, true});
  }
  SUBCASE("on numbers: non-zero is true, -0.0 is zero and NaN is non-zero") {
    mg::Tensor<float, 1> f = {1, -0.0f, 2};
    CHECK_FALSE(item(mg::all(f)));
    CHECK_FALSE(item(mg::any(mg::Tensor<float, 1>{0.0f, -0.0f})));
    CHECK(item(mg::any(mg::Tensor<float, 1>{0.0f, kNaNf})));
    CHECK(item(mg::all(mg::Tensor<float, 1>{kNaNf, -3})));
    CHECK(item(mg::all(mg::Tensor<std::int64_t, 1>{1, -1, 5})));
    CHECK_FALSE(item(mg::any(mg::zeros<std::int32_t>({4, 4}))));
  }
  SUBCASE("of a comparison, fused") {
    const auto x = mg::arange<float>(10);
    CHECK(item(mg::all(x < 10)));
    CHECK_FALSE(item(mg::all(x < 9)));
    CHECK(item(mg::any(x > 8.5f)));
    CHECK(item(mg::sum(x > 4)) == 5);
  }
}

TEST_CASE("reduce: empty axes") {
  const auto e = mg::zeros<float>({0, 3});
  SUBCASE("sum is 0, prod is 1, mean, var and std are NaN") {
    CHECK(mg::eval(mg::sum(e, 0)).to_vector() == std::vector<float>{0, 0, 0});
    CHECK(mg::eval(mg::prod(e, 0)).to_vector() == std::vector<float>{1, 1, 1});
    for (float m : mg::eval(mg::mean(e, 0)).to_vector()) CHECK(std::isnan(m));
    for (float v : mg::eval(mg::var(e, {0})).to_vector()) CHECK(std::isnan(v));
    for (float v : mg::eval(mg::stddev(e, {0}, 0)).to_vector()) CHECK(std::isnan(v));
    CHECK(item(mg::sum(e)) == 0);
    CHECK(item(mg::prod(e)) == 1);
    CHECK(std::isnan(item(mg::mean(e))));
    CHECK(item(mg::sum(mg::zeros<std::int32_t>({0}))) == 0);
  }
  SUBCASE("all is true, any is false, logsumexp is -inf, norm is 0") {
    CHECK(item(mg::all(e)));
    CHECK_FALSE(item(mg::any(e)));
    CHECK(item(mg::logsumexp(e)) == -kInff);
    CHECK(item(mg::norm(e)) == 0);
    CHECK(item(mg::norm(e, INFINITY)) == 0);
  }
  SUBCASE("max, min, argmax and argmin over an empty axis throw shape_error") {
    CHECK_THROWS_AS(mg::eval(mg::max(e, 0)), mg::shape_error);
    CHECK_THROWS_AS(mg::eval(mg::min(e)), mg::shape_error);
    CHECK_THROWS_AS(mg::eval(mg::argmax(e, {0}, mg::keepdims)), mg::shape_error);
    CHECK_THROWS_AS(mg::eval(mg::argmin(e)), mg::shape_error);
  }
  SUBCASE("reducing a non-empty axis of an empty tensor gives an empty result") {
    const auto m = mg::eval(mg::max(e, 1));
    CHECK(m.shape() == mg::Shape<1>{0});
    CHECK(mg::eval(mg::sum(e, {1}, mg::keepdims)).shape() == mg::Shape<2>{0, 1});
  }
  SUBCASE("var and std with ddof >= n are NaN") {
    const mg::Tensor<double, 1> one = {4.0};
    CHECK(item(mg::var(one)) == 0);
    CHECK(std::isnan(item(mg::var(one, 1))));
    CHECK(std::isnan(item(mg::stddev(mg::Tensor<double, 1>{1, 2}, 2))));
  }
}

TEST_CASE_TEMPLATE("reduce: logsumexp is stable for large and infinite values", T, float, double) {
  const double tol = std::is_same_v<T, float> ? 1e-4 : 1e-12;  // float: 1000 has an ulp of 6e-5
  SUBCASE("values around +1000 and -1000 do not overflow or underflow") {
    CHECK(static_cast<double>(item(mg::logsumexp(mg::Tensor<T, 1>{1000, 1000}))) ==
          doctest::Approx(1000 + std::log(2.0)).epsilon(tol));
    CHECK(static_cast<double>(item(mg::logsumexp(mg::Tensor<T, 1>{-1000, -1000, -1000}))) ==
          doctest::Approx(-1000 + std::log(3.0)).epsilon(tol));
    CHECK(static_cast<double>(item(mg::logsumexp(mg::Tensor<T, 1>{1000, -1000}))) ==
          doctest::Approx(1000).epsilon(tol));
    CHECK(static_cast<double>(item(mg::logsumexp(mg::Tensor<T, 1>{999, 1000, 1001}))) ==
          doctest::Approx(1001 + std::log(1 + std::exp(-1.0) + std::exp(-2.0))).epsilon(tol));
  }
  SUBCASE("a large row among many elements, across all loop shapes") {
    auto x = random_tensor<T>(mg::Shape<3>{3, 4, 20}, -2, 2);
    for (index_t i = 0; i < x.numel(); i += 7) x.data()[i] += T(1000);
    for (index_t i = 3; i < x.numel(); i += 11) x.data()[i] -= T(1000);
    check_rank3_forms(LogSumExp{1e-3}, x);
  }
  SUBCASE("all -inf gives -inf; +inf gives +inf; -inf entries are ignored") {
    const T inf = std::numeric_limits<T>::infinity();
    CHECK(item(mg::logsumexp(mg::Tensor<T, 1>{-inf, -inf, -inf})) == -inf);
    CHECK(item(mg::logsumexp(mg::Tensor<T, 1>{1, inf, 2})) == inf);
    CHECK(item(mg::logsumexp(mg::Tensor<T, 1>{-inf, inf})) == inf);
    CHECK(static_cast<double>(item(mg::logsumexp(mg::Tensor<T, 1>{-inf, 0, -inf, 0}))) ==
          doctest::Approx(std::log(2.0)).epsilon(1e-6));
    const mg::Tensor<T, 2> rows = {{-inf, -inf, -inf}, {0, -inf, 0}, {inf, 0, 1}, {1, 2, 3}};
    const auto r = mg::eval(mg::logsumexp(rows, 1)).to_vector();
    CHECK(r[0] == -inf);
    CHECK(static_cast<double>(r[1]) == doctest::Approx(std::log(2.0)).epsilon(1e-6));
    CHECK(r[2] == inf);
    CHECK(static_cast<double>(r[3]) == doctest::Approx(std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0))));
  }
}

TEST_CASE("reduce: var and stddev against a two-pass reference") {
  SUBCASE("known values") {
    const mg::Tensor<double, 1> x = {2, 4, 4, 4, 5, 5, 7, 9};
    CHECK(item(mg::var(x)) == doctest::Approx(4.0));
    CHECK(item(mg::stddev(x)) == doctest::Approx(2.0));
    CHECK(item(mg::var(x, 1)) == doctest::Approx(32.0 / 7));
    CHECK(item(mg::stddev(x, 1)) == doctest::Approx(std::sqrt(32.0 / 7)));
    const mg::Tensor<std::int32_t, 2> m = {{1, 2, 3}, {4, 6, 8}};
    CHECK(mg::eval(mg::var(m, {1}, 1)).to_vector() == std::vector<float>{1, 4});
    // A braced axis list is an axis list, not a ddof of the all-axes form.
    CHECK(mg::eval(mg::var(m, {1})).to_vector() == std::vector<float>{2.0f / 3, 8.0f / 3});
    CHECK(mg::eval(mg::stddev(m, {0})).to_vector() == std::vector<float>{1.5f, 2, 2.5f});
    CHECK(mg::eval(mg::var(m, 1)).item() == doctest::Approx(6.8));
    CHECK(mg::eval(mg::var(m, {0}, mg::keepdims, 0)).to_vector() == std::vector<float>{2.25f, 4, 6.25f});
  }
  SUBCASE("a huge offset with a small spread (float input, double moments)") {
    auto x = random_tensor<float>(mg::Shape<3>{5, 6, 7}, -1, 1);
    for (index_t i = 0; i < x.numel(); ++i) x.data()[i] += 1e6f;
    check_rank3_forms(Var{0}, x);
    check_rank3_forms(StdDev{1}, x);
  }
}

TEST_CASE("reduce: norm of known vectors") {
  const mg::Tensor<float, 1> v = {3, -4, 0};
  CHECK(item(mg::norm(v)) == doctest::Approx(5));
  CHECK(item(mg::norm(v, 1.0)) == doctest::Approx(7));
  CHECK(item(mg::norm(v, INFINITY)) == doctest::Approx(4));
  CHECK(item(mg::norm(v, 0.0)) == doctest::Approx(2));
  CHECK(item(mg::norm(v, 3.0)) == doctest::Approx(std::cbrt(91.0)));
  const mg::Tensor<std::int32_t, 2> m = {{3, 4}, {-6, 8}};
  const auto rows = mg::eval(mg::norm(m, {1}));
  CHECK(mg::eval(mg::norm(m, 1)).item() == doctest::Approx(21));
  CHECK(std::is_same_v<std::remove_cvref_t<decltype(rows)>, mg::Tensor<float, 1>>);
  CHECK(rows.to_vector() == std::vector<float>{5, 10});
  CHECK(mg::eval(mg::norm(m, {0}, mg::keepdims, INFINITY)).to_vector() == std::vector<float>{6, 8});
}

TEST_CASE("reduce: a 2^22-element reduction matches a compensated double sum on 1 and 2 threads") {
  ThreadGuard guard;
  constexpr index_t n = index_t{1} << 22;
  mg::Generator g(5);
  const mg::Tensor<float, 1> x = mg::uniform<float>({n}, -0.5, 1.5, g);
  const auto v = x.to_vector();
  const double s = kahan(v.begin(), v.end(), [](float a) { return static_cast<double>(a); });
  const double mean = s / static_cast<double>(n);
  const double ss = kahan(v.begin(), v.end(), [&](float a) { return (a - mean) * (a - mean); });
  const double sq = kahan(v.begin(), v.end(), [](float a) { return static_cast<double>(a) * a; });
  const auto imax = std::max_element(v.begin(), v.end()) - v.begin();
  double lse = 0;
  {
    const double m = v[static_cast<std::size_t>(imax)];
    lse = m + std::log(kahan(v.begin(), v.end(), [&](float a) { return std::exp(a - m); }));
  }
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    mg::set_num_threads(threads);
    CHECK(static_cast<double>(item(mg::sum(x))) == doctest::Approx(s).epsilon(1e-6));
    CHECK(static_cast<double>(item(mg::mean(x))) == doctest::Approx(mean).epsilon(1e-6));
    CHECK(static_cast<double>(item(mg::var(x))) == doctest::Approx(ss / static_cast<double>(n)).epsilon(1e-6));
    CHECK(static_cast<double>(item(mg::norm(x))) == doctest::Approx(std::sqrt(sq)).epsilon(1e-6));
    CHECK(item(mg::argmax(x)) == imax);
    CHECK(item(mg::max(x)) == v[static_cast<std::size_t>(imax)]);
    // logsumexp of floats accumulates in float: a looser bound.
    CHECK(static_cast<double>(item(mg::logsumexp(x))) == doctest::Approx(lse).epsilon(1e-5));
    // The same with a fused input.
    CHECK(static_cast<double>(item(mg::sum(x * 2 + 1))) == doctest::Approx(2 * s + n).epsilon(1e-6));
  }
}

TEST_CASE("reduce: row and column reductions of a large matrix do not depend on the thread count") {
  ThreadGuard guard;
  mg::Generator g(6);
  const mg::Tensor<float, 2> x = mg::uniform<float>({512, 1024}, -1.0, 1.0, g);
  auto run = [&] {
    return std::vector<std::vector<float>>{mg::eval(mg::sum(x, 1)).to_vector(), mg::eval(mg::sum(x, 0)).to_vector(),
                                           mg::eval(mg::sum(x.t(), 1)).to_vector(),
                                           mg::eval(mg::max(x * 2, {0}, mg::keepdims)).to_vector(),
                                           mg::eval(mg::var(x, {1})).to_vector()};
  };
  mg::set_num_threads(1);
  const auto one = run();
  mg::set_num_threads(2);
  const auto two = run();
  CHECK(one == two);
  SUBCASE("and match double references") {
    for (index_t i = 0; i < 512; i += 37) {
      double r = 0;
      for (index_t j = 0; j < 1024; ++j) r += x(i, j);
      CHECK(one[0][static_cast<std::size_t>(i)] == doctest::Approx(r).epsilon(1e-6));
    }
    for (index_t j = 0; j < 1024; j += 101) {
      double c = 0;
      for (index_t i = 0; i < 512; ++i) c += x(i, j);
      CHECK(one[1][static_cast<std::size_t>(j)] == doctest::Approx(c).epsilon(1e-6));
      CHECK(one[2][static_cast<std::size_t>(j)] == one[1][static_cast<std::size_t>(j)]);
    }
  }
}

TEST_CASE("reduce: edge ranks and dtypes") {
  SUBCASE("a rank-0 input reduces to itself") {
    mg::Tensor<float, 0> s(mg::Shape<0>{});
    s() = 2.5f;
    CHECK(item(mg::sum(s)) == 2.5f);
    CHECK(item(mg::max(s)) == 2.5f);
    CHECK(item(mg::argmax(s)) == 0);
    CHECK(item(mg::var(s)) == 0);
  }
  SUBCASE("integer sums accumulate in int64 and do not overflow int32") {
    const mg::Tensor<std::int32_t, 1> big = {2147483647, 2147483647, 2};
    CHECK(item(mg::sum(big)) == std::int64_t{4294967296});
    CHECK(item(mg::prod(mg::Tensor<std::int32_t, 1>{65536, 65536})) == std::int64_t{1} << 32);
    CHECK(item(mg::mean(big)) == doctest::Approx(4294967296.0 / 3));
  }
  SUBCASE("bool inputs count as 0 and 1") {
    const mg::Tensor<bool, 1> b = {true, false, true, true};
    CHECK(item(mg::sum(b)) == 3);
    CHECK(item(mg::mean(b)) == 0.75f);
    CHECK(item(mg::prod(b)) == 0);
    CHECK(item(mg::max(b)) == true);
    CHECK(item(mg::argmin(b)) == 1);
  }
  SUBCASE("a reduction of a reduction") {
    const mg::Tensor<float, 2> x = mg::arange<float>(12).reshape({3, 4});
    CHECK(item(mg::sum(mg::max(x, {1}))) == 3 + 7 + 11);
    CHECK(item(mg::mean(mg::sum(x, {0}) - mg::max(x))) == doctest::Approx(5.5));
    CHECK(item(mg::argmax(mg::sum(x, {0}, mg::keepdims) * -1)) == 0);
  }
}
