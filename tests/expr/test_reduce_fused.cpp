// Tests of reductions in larger expressions (expr/reduce.hpp): a fused elementwise input equals the
// reduction of the evaluated input; reductions consumed through a broadcast (centring, softmax,
// standardisation); reductions of views, which take the general strided path; and destination passing:
// a reduction written straight into an existing tensor, through its strides, and when it reads that tensor.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <metagrad/metagrad.hpp>
#include <vector>

#include "reduce_reference.hpp"

using namespace reduce_test;

namespace {

template <class E>
auto item(const E& e) {
  return mg::eval(e).item();
}

}  // namespace

TEST_CASE("reduce: a fused input equals the reduction of the evaluated input") {
  const auto x = random_tensor<float>(mg::Shape<3>{6, 7, 8}, -2, 2);
  const auto y = random_tensor<float>(mg::Shape<3>{6, 7, 8}, -2, 2);
  const auto row = random_tensor<float>(mg::Shape<1>{8}, -2, 2);
  auto same = [](const auto& fused, const auto& plain, double rtol) {
    const auto a = mg::eval(fused).to_vector();
    const auto b = mg::eval(plain).to_vector();
    REQUIRE(a.size() == b.size());
    index_t bad = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
      bad += !close(static_cast<double>(a[i]), static_cast<double>(b[i]), rtol, 1e-6);
    CHECK(bad == 0);
  };
  const mg::Tensor<float, 3> d2 = mg::square(x - y);
  const mg::Tensor<float, 3> e2 = mg::exp(x) * 2;
  const mg::Tensor<float, 3> xy = x * y;
  const mg::Tensor<float, 3> xr = x + row;
  SUBCASE("sum(square(x - y))") { same(mg::sum(mg::square(x - y)), mg::sum(d2), 1e-6); }
  SUBCASE("mean(exp(x) * 2, {1})") { same(mg::mean(mg::exp(x) * 2, {1}), mg::mean(e2, {1}), 1e-6); }
  SUBCASE("max(x * y, {0, 2}, keepdims) and argmax(x * y, 1)") {
    same(mg::max(x * y, {0, 2}, mg::keepdims), mg::max(xy, {0, 2}, mg::keepdims), 0);
    same(mg::argmax(x * y, 1), mg::argmax(xy, 1), 0);
  }
  SUBCASE("var(x - y, {2}) and norm(x - y, {0, 1})") {
    same(mg::var(x - y, {2}), mg::var(mg::eval(x - y), {2}), 1e-6);
    same(mg::norm(x - y, {0, 1}), mg::norm(mg::eval(x - y), {0, 1}), 1e-6);
  }
  SUBCASE("an input with a broadcast operand takes the strided path") {
    same(mg::sum(x + row, {0}), mg::sum(xr, {0}), 1e-6);
    same(mg::sum(x + row), mg::sum(xr), 1e-6);
    same(mg::argmin(x + row, {2}), mg::argmin(xr, {2}), 0);
  }
  SUBCASE("the reference itself: naive loops over the evaluated input") {
    check_rank3_forms_of(Sum{}, d2, mg::square(x - y));
    check_rank3_forms_of(Max{}, xy, x * y);
  }
}

TEST_CASE("reduce: a reduction inside a broadcast elementwise expression") {
  const auto x = random_tensor<float>(mg::Shape<2>{7, 9}, -3, 3);
  SUBCASE("x - mean(x, {1}, keepdims) centres each row") {
    const mg::Tensor<float, 2> c = x - mg::mean(x, {1}, mg::keepdims);
    for (index_t i = 0; i < 7; ++i) {
      double m = 0;
      for (index_t j = 0; j < 9; ++j) m += x(i, j);
      m /= 9;
      for (index_t j = 0; j < 9; ++j) CHECK(c(i, j) == doctest::Approx(x(i, j) - m).epsilon(1e-5));
    }
  }
  SUBCASE("x - max(x, {0}) broadcasts a reduced leading axis without keepdims") {
    const mg::Tensor<float, 2> c = x - mg::max(x, {0});
    for (index_t j = 0; j < 9; ++j) {
      float m = x(0, j);
      for (index_t i = 1; i < 7; ++i) m = std::max(m, x(i, j));
      for (index_t i = 0; i < 7; ++i) CHECK(c(i, j) == x(i, j) - m);
    }
  }
  SUBCASE("softmax: exp(x - max) / sum(exp(x - max))") {
    const mg::Tensor<float, 2> s = mg::exp(x - mg::max(x, {1}, mg::keepdims)) /
                                   mg::sum(mg::exp(x - mg::max(x, {1}, mg::keepdims)), {1}, mg::keepdims);
    for (index_t i = 0; i < 7; ++i) {
      double z = 0, mx = -1e300;
      for (index_t j = 0; j < 9; ++j) mx = std::max(mx, static_cast<double>(x(i, j)));
      for (index_t j = 0; j < 9; ++j) z += std::exp(x(i, j) - mx);
      double total = 0;
      for (index_t j = 0; j < 9; ++j) {
        CHECK(s(i, j) == doctest::Approx(std::exp(x(i, j) - mx) / z).epsilon(1e-5));
        total += s(i, j);
      }
      CHECK(total == doctest::Approx(1).epsilon(1e-5));
    }
  }
  SUBCASE("softmax of rows near 1000 stays finite") {
    const mg::Tensor<float, 2> big = x + 1000.0f;
    const mg::Tensor<float, 2> s = mg::exp(big - mg::logsumexp(big, {1}, mg::keepdims));
    const auto rs = mg::eval(mg::sum(s, {1})).to_vector();
    for (float r : rs) CHECK(r == doctest::Approx(1).epsilon(1e-3));
  }
  SUBCASE("standardisation uses two reductions of the same input") {
    const mg::Tensor<float, 2> z = (x - mg::mean(x, {0}, mg::keepdims)) / mg::stddev(x, {0}, mg::keepdims);
    const auto m = mg::eval(mg::mean(z, 0)).to_vector();
    const auto v = mg::eval(mg::var(z, {0})).to_vector();
    for (float a : m) CHECK(std::fabs(a) < 1e-5);
    for (float a : v) CHECK(a == doctest::Approx(1).epsilon(1e-4));
  }
  SUBCASE("a reduction expression re-evaluated sees the new input") {
    auto t = x.clone();
    const auto e = mg::sum(t, {1});
    const mg::Tensor<float, 1> a = e;
    t.assign(t * 2);
    const mg::Tensor<float, 1> b = e;
    for (index_t i = 0; i < 7; ++i) CHECK(b(i) == doctest::Approx(2 * a(i)));
  }
}

TEST_CASE("reduce: reductions of views take the strided path") {
  const auto base = random_tensor<float>(mg::Shape<3>{5, 4, 6}, -3, 3);
  SUBCASE("a permuted tensor") {
    const auto view = base.permute({2, 0, 1});
    const mg::Tensor<float, 3> ref = view;
    check_rank3_forms_of(Sum{}, ref, view);
    check_rank3_forms_of(ArgMax{}, ref, view);
    check_rank3_forms_of(Var{1}, ref, view);
  }
  SUBCASE("a slice with negative and positive steps") {
    const auto view =
        base.slice({mg::Slice{mg::Slice::none, mg::Slice::none, -2}, mg::Slice{1, 4}, mg::Slice{5, 0, -2}});
    const mg::Tensor<float, 3> ref = view;
    REQUIRE(ref.shape() == mg::Shape<3>{3, 3, 3});
    check_rank3_forms_of(Mean{}, ref, view);
    check_rank3_forms_of(Min{}, ref, view);
    check_rank3_forms_of(ArgMin{}, ref, view);
  }
  SUBCASE("a transposed computed expression") {
    const auto view = (base * 2 - 1).transpose(0, 2);
    const mg::Tensor<float, 3> ref = view;
    check_rank3_forms_of(Sum{}, ref, view);
    check_rank3_forms_of(Max{}, ref, view);
  }
  SUBCASE("a broadcast tensor (stride 0)") {
    const auto row = random_tensor<float>(mg::Shape<2>{1, 6}, -3, 3);
    const auto view = mg::broadcast_to(row, {3, 4, 6});
    const mg::Tensor<float, 3> ref = view;
    check_rank3_forms_of(Sum{}, ref, view);
    check_rank3_forms_of(ArgMax{}, ref, view);
  }
  SUBCASE("sum(x.t(), {0}) equals sum(x, {1})") {
    const auto m = random_tensor<float>(mg::Shape<2>{8, 5}, -3, 3);
    const auto a = mg::eval(mg::sum(m.t(), {0})).to_vector();
    const auto b = mg::eval(mg::sum(m, {1})).to_vector();
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-6));
  }
}

TEST_CASE("reduce: results are written straight into an existing tensor") {
  const auto x = random_tensor<float>(mg::Shape<2>{6, 10}, -3, 3);
  SUBCASE("a destination of the right shape keeps its memory and gets no temporary") {
    mg::Tensor<float, 1> y = mg::zeros<float>({6});
    const float* p = y.data();
    const auto n0 = mg::memory_stats().allocations;
    y = mg::sum(x, {1});
    CHECK(mg::memory_stats().allocations == n0);
    CHECK(y.data() == p);
    for (index_t i = 0; i < 6; ++i) {
      double r = 0;
      for (index_t j = 0; j < 10; ++j) r += x(i, j);
      CHECK(y(i) == doctest::Approx(r).epsilon(1e-6));
    }
    mg::Tensor<std::int64_t, 2> k = mg::zeros<std::int64_t>({1, 10});
    const auto* kp = k.data();
    const auto n1 = mg::memory_stats().allocations;
    k = mg::argmax(x, {0}, mg::keepdims);
    CHECK(k.data() == kp);
    CHECK(mg::memory_stats().allocations == n1);
  }
  SUBCASE("a destination of another shape is re-allocated") {
    mg::Tensor<float, 1> y = mg::zeros<float>({3});
    y = mg::max(x, 0);
    CHECK(y.shape() == mg::Shape<1>{10});
  }
  SUBCASE("a non-contiguous destination is written through its strides") {
    // y is the transpose of a (10, 1)... a (1, 6) layout stepping 2 elements through a buffer of 12.
    auto buf = mg::full<float>({12}, -99.0f);
    auto y = mg::Tensor<float, 1>::from_storage(buf.storage(), 1, mg::Shape<1>{6}, mg::Strides<1>{{2}});
    y = mg::min(x, 1);
    for (index_t i = 0; i < 6; ++i) {
      float m = x(i, 0);
      for (index_t j = 1; j < 10; ++j) m = std::min(m, x(i, j));
      CHECK(buf(1 + 2 * i) == m);
      CHECK(buf(2 * i) == -99.0f);
    }
  }
  SUBCASE("a reduction that reads its own destination is computed before it is stored") {
    mg::Tensor<float, 1> y = {1, 2, 3, 4};
    const auto other = y;  // a second handle of the same storage
    const float* p = y.data();
    // Every output is the sum of all of y: writing y[0] first must not change what y[1..3] see.
    y = mg::sum(mg::broadcast_to(y, {4, 4}), {1});
    CHECK(y.to_vector() == std::vector<float>{10, 10, 10, 10});
    // The result lands in y's own memory, as for `x = x.t()`: other handles see it.
    CHECK(y.data() == p);
    CHECK(other.to_vector() == std::vector<float>{10, 10, 10, 10});
    y.assign(mg::max(mg::broadcast_to(y * mg::arange<float>(4), {2, 4}), {0}));
    CHECK(other.to_vector() == std::vector<float>{0, 10, 20, 30});
    mg::Tensor<float, 2> m = {{1, 2}, {3, 4}};
    m = mg::sum(mg::broadcast_to(m.t(), {3, 2, 2}), {0});  // 3 * m.t()
    CHECK(m.to_vector() == std::vector<float>{3, 9, 6, 12});
  }
  SUBCASE("a strided destination that overlaps the input beyond its first numel elements") {
    // dst writes buf[1], buf[3], ..., buf[9]; output i reads buf[11 - i], so output 4 reads buf[7], which
    // output 3 writes: the overlap must be found through dst's strides.
    auto buf = mg::arange<float>(12);
    auto dst = mg::Tensor<float, 1>::from_storage(buf.storage(), 1, mg::Shape<1>{5}, mg::Strides<1>{{2}});
    const auto x = mg::Tensor<float, 2>::from_storage(buf.storage(), 11, mg::Shape<2>{5, 1}, mg::Strides<2>{{-1, 1}});
    dst = mg::sum(x, {1});
    CHECK(buf.to_vector() == std::vector<float>{0, 11, 2, 10, 4, 9, 6, 8, 8, 7, 10, 11});
  }
  SUBCASE("compound and in-place assignment of reductions") {
    mg::Tensor<float, 1> y = mg::ones<float>({6});
    y += mg::sum(x, {1});
    mg::Tensor<float, 1> z = mg::sum(x, {1}) + 1;
    for (index_t i = 0; i < 6; ++i) CHECK(y(i) == doctest::Approx(z(i)));
    y.assign(mg::max(x));
    const float mx = item(mg::max(x));
    for (index_t i = 0; i < 6; ++i) CHECK(y(i) == mx);
    mg::Tensor<float, 0> s(mg::Shape<0>{});
    s = mg::sum(x);
    CHECK(s.item() == doctest::Approx(item(mg::sum(x))));
  }
}
