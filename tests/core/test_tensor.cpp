// Tests of Tensor (core/tensor.hpp), the creation functions (core/creation.hpp) and the random tensors
// (expr/random.hpp): construction of every dtype, handle semantics, element access, conversion, the
// values of arange/linspace/full/from_vector, reproducibility and statistics of random draws, and
// allocation counts.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <metagrad/metagrad.hpp>
#include <numeric>
#include <set>
#include <vector>

namespace mg = metagrad;
using mg::index_t;

namespace {

// Restores the default thread count when a test that changes it ends (also on a failed CHECK).
struct ThreadGuard {
  ~ThreadGuard() { mg::set_num_threads(0); }
};

template <class T, int R>
std::vector<double> as_doubles(const mg::Tensor<T, R>& t) {
  std::vector<double> out;
  for (T v : t.to_vector()) out.push_back(static_cast<double>(v));
  return out;
}

struct Moments {
  double mean, var;
};
template <class T, int R>
Moments moments(const mg::Tensor<T, R>& t) {
  const auto v = as_doubles(t);
  double s = 0;
  for (double x : v) s += x;
  const double mean = s / static_cast<double>(v.size());
  double s2 = 0;
  for (double x : v) s2 += (x - mean) * (x - mean);
  return {mean, s2 / static_cast<double>(v.size())};
}

}  // namespace

TEST_CASE_TEMPLATE("tensor: construction of every dtype", T, float, double, std::int32_t, std::int64_t, bool) {
  SUBCASE("a default-constructed tensor is undefined and empty") {
    mg::Tensor<T, 2> t;
    CHECK_FALSE(t.defined());
    CHECK(t.numel() == 0);
    CHECK(t.shape() == mg::Shape<2>{0, 0});
    mg::Tensor<T, 0> s;
    CHECK_FALSE(s.defined());
    CHECK(s.numel() == 0);
  }
  SUBCASE("a tensor of a shape is zero-filled, contiguous and row-major") {
    mg::Tensor<T, 3> t(mg::Shape<3>{2, 3, 4});
    CHECK(t.defined());
    CHECK(t.numel() == 24);
    CHECK(t.shape() == mg::Shape<3>{2, 3, 4});
    CHECK(t.strides() == mg::Strides<3>{{12, 4, 1}});
    CHECK(t.is_contiguous());
    CHECK(t.dtype() == mg::dtype_of<T>);
    CHECK(t.device() == mg::Device::cpu());
    for (T v : t.to_vector()) CHECK(v == T(0));
  }
  SUBCASE("a rank-0 tensor holds one element") {
    mg::Tensor<T, 0> s(mg::Shape<0>{});
    CHECK(s.numel() == 1);
    CHECK(s.item() == T(0));
    s() = T(1);
    CHECK(s.item() == T(1));
  }
  SUBCASE("nested braces give the shape and the values in row-major order") {
    mg::Tensor<T, 1> v = {T(1), T(0), T(1)};
    CHECK(v.shape() == mg::Shape<1>{3});
    CHECK(v.to_vector() == std::vector<T>{T(1), T(0), T(1)});
    mg::Tensor<T, 2> m = {{T(1), T(0), T(0)}, {T(0), T(1), T(1)}};
    CHECK(m.shape() == mg::Shape<2>{2, 3});
    CHECK(m(0, 0) == T(1));
    CHECK(m(0, 1) == T(0));
    CHECK(m(1, 2) == T(1));
    mg::Tensor<T, 3> c = {{{T(1)}, {T(0)}}, {{T(0)}, {T(1)}}, {{T(1)}, {T(1)}}};
    CHECK(c.shape() == mg::Shape<3>{3, 2, 1});
    CHECK(c.to_vector() == std::vector<T>{T(1), T(0), T(0), T(1), T(1), T(1)});
  }
  SUBCASE("ragged braces throw shape_error") {
    using L = std::initializer_list<std::initializer_list<T>>;
    const L ragged = {{T(1), T(0)}, {T(1)}};
    CHECK_THROWS_AS((mg::Tensor<T, 2>(ragged)), mg::shape_error);
  }
  SUBCASE("zeros, ones and full fill every element") {
    CHECK(mg::zeros<T>({2, 3}).to_vector() == std::vector<T>(6, T(0)));
    CHECK(mg::ones<T>({4}).to_vector() == std::vector<T>(4, T(1)));
    const auto f = mg::full<T>({3, 1, 2}, T(1));
    CHECK(f.shape() == mg::Shape<3>{3, 1, 2});
    CHECK(f.to_vector() == std::vector<T>(6, T(1)));
    CHECK(mg::zeros<T>({0, 5}).numel() == 0);
  }
  SUBCASE("*_like copy shape and dtype") {
    const auto a = mg::ones<T>({2, 5});
    CHECK(mg::zeros_like(a).shape() == a.shape());
    CHECK(mg::zeros_like(a).to_vector() == std::vector<T>(10, T(0)));
    CHECK(mg::ones_like(mg::zeros<T>({3})).to_vector() == std::vector<T>(3, T(1)));
    CHECK(mg::full_like(a, T(1)).to_vector() == std::vector<T>(10, T(1)));
  }
  SUBCASE("dtype names follow NumPy") {
    CHECK(std::string(mg::dtype_name<T>()) == (std::is_same_v<T, float>          ? "float32"
                                               : std::is_same_v<T, double>       ? "float64"
                                               : std::is_same_v<T, std::int32_t> ? "int32"
                                               : std::is_same_v<T, std::int64_t> ? "int64"
                                                                                 : "bool"));
  }
}

TEST_CASE("tensor: copies share storage, clone() does not") {
  mg::Tensor<float, 2> a = {{1, 2}, {3, 4}};
  SUBCASE("a copy of the handle sees writes through the original and vice versa") {
    mg::Tensor<float, 2> b = a;
    CHECK(b.data() == a.data());
    CHECK(b.storage() == a.storage());
    a(0, 1) = 20;
    CHECK(b(0, 1) == 20);
    b(1, 0) = 30;
    CHECK(a(1, 0) == 30);
  }
  SUBCASE("clone() is an independent contiguous copy with equal values") {
    mg::Tensor<float, 2> c = a.clone();
    CHECK(c.data() != a.data());
    CHECK(c.to_vector() == a.to_vector());
    c(0, 0) = -1;
    CHECK(a(0, 0) == 1);
    a(1, 1) = -4;
    CHECK(c(1, 1) == 4);
  }
  SUBCASE("clone() of a default-constructed tensor is undefined") {
    CHECK_FALSE(mg::Tensor<float, 1>().clone().defined());
  }
  SUBCASE("assigning a tensor re-seats the handle; assign() copies values") {
    mg::Tensor<float, 2> b = mg::zeros<float>({2, 2});
    const float* old = b.data();
    b.assign(a);
    CHECK(b.data() == old);
    CHECK(b.to_vector() == std::vector<float>{1, 2, 3, 4});
    a(0, 0) = 9;
    CHECK(b(0, 0) == 1);
    b = a;
    CHECK(b.data() == a.data());
  }
  SUBCASE("the storage lives as long as any handle") {
    mg::Tensor<float, 2> b = a;
    const auto before = mg::memory_stats().current_bytes;
    a = mg::Tensor<float, 2>();
    CHECK(mg::memory_stats().current_bytes == before);
    CHECK(b(1, 1) == 4);
  }
}

TEST_CASE("tensor: element access") {
  mg::Tensor<int, 3> t = mg::arange<int>(24).reshape({2, 3, 4});
  SUBCASE("indices address row-major elements") {
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j)
        for (int k = 0; k < 4; ++k) CHECK(t(i, j, k) == i * 12 + j * 4 + k);
  }
  SUBCASE("negative indices count from the end") {
    CHECK(t(-1, -1, -1) == 23);
    CHECK(t(-2, 0, -4) == 0);
    CHECK(t(1, -3, 2) == 14);
    t(-1, 1, -2) = 100;
    CHECK(t(1, 1, 2) == 100);
  }
  SUBCASE("indices out of range throw index_error") {
    CHECK_THROWS_AS(t(2, 0, 0), mg::index_error);
    CHECK_THROWS_AS(t(0, -4, 0), mg::index_error);
    CHECK_THROWS_AS(t(0, 0, 4), mg::index_error);
    const mg::Tensor<float, 1> empty;
    CHECK_THROWS_AS(empty(0), mg::index_error);
  }
  SUBCASE("size() accepts negative axes and rejects others") {
    CHECK(t.size(0) == 2);
    CHECK(t.size(-1) == 4);
    CHECK(t.size(-3) == 2);
    CHECK_THROWS_AS(t.size(3), mg::index_error);
    CHECK_THROWS_AS(t.size(-4), mg::index_error);
  }
  SUBCASE("a strided layout is read through its strides") {
    // The transpose of a 2x3 matrix as a 3x2 layout over the same storage, and a reversed row.
    mg::Tensor<float, 2> m = {{1, 2, 3}, {4, 5, 6}};
    auto tt = mg::Tensor<float, 2>::from_storage(m.storage(), 0, mg::Shape<2>{3, 2}, mg::Strides<2>{{1, 3}});
    CHECK_FALSE(tt.is_contiguous());
    CHECK(tt(2, 1) == 6);
    CHECK(tt(0, 1) == 4);
    CHECK(tt.to_vector() == std::vector<float>{1, 4, 2, 5, 3, 6});
    auto rev = mg::Tensor<float, 1>::from_storage(m.storage(), 5, mg::Shape<1>{3}, mg::Strides<1>{{-1}});
    CHECK(rev.to_vector() == std::vector<float>{6, 5, 4});
    CHECK(rev.clone().is_contiguous());
    CHECK(rev.clone().to_vector() == std::vector<float>{6, 5, 4});
    tt(1, 0) = -2;
    CHECK(m(0, 1) == -2);
  }
  SUBCASE("item() reads the only element and refuses any other count") {
    CHECK(mg::full<double>({1, 1}, 2.5).item() == 2.5);
    CHECK_THROWS_AS(t.item(), mg::shape_error);
    CHECK_THROWS_AS(mg::zeros<float>({0}).item(), mg::shape_error);
  }
}

TEST_CASE("tensor: to<U>() converts with C++ rules") {
  mg::Tensor<float, 1> f = {2.7f, -2.7f, 0.0f, 0.5f, -0.0f};
  SUBCASE("float to integer truncates toward zero") {
    CHECK(f.to<std::int32_t>().to_vector() == std::vector<std::int32_t>{2, -2, 0, 0, 0});
    CHECK(f.to<std::int64_t>().to_vector() == std::vector<std::int64_t>{2, -2, 0, 0, 0});
  }
  SUBCASE("to<bool>() tests for non-zero") {
    CHECK(f.to<bool>().to_vector() == std::vector<bool>{true, true, false, true, false});
  }
  SUBCASE("out-of-range floats saturate and NaN gives 0") {
    mg::Tensor<float, 1> g = {1e10f, -1e10f, NAN};
    const auto i = g.to<std::int32_t>().to_vector();
    CHECK(i[0] == std::numeric_limits<std::int32_t>::max());
    CHECK(i[1] == std::numeric_limits<std::int32_t>::min());
    CHECK(i[2] == 0);
  }
  SUBCASE("integers and bools widen exactly") {
    mg::Tensor<std::int64_t, 1> n = {-3, 0, 1ll << 40};
    CHECK(n.to<double>().to_vector() == std::vector<double>{-3.0, 0.0, 1099511627776.0});
    mg::Tensor<bool, 1> b = {true, false};
    CHECK(b.to<float>().to_vector() == std::vector<float>{1.0f, 0.0f});
    CHECK(b.to<std::int32_t>().to_vector() == std::vector<std::int32_t>{1, 0});
  }
  SUBCASE("the result is a new tensor") {
    auto d = f.to<double>();
    CHECK(d.shape() == f.shape());
    d(0) = 1;
    CHECK(f(0) == 2.7f);
    CHECK(d(1) == static_cast<double>(-2.7f));
  }
  SUBCASE("a CUDA device is refused in a CPU build") {
    CHECK(f.to(mg::Device::cpu()).data() == f.data());
    CHECK_THROWS_AS(f.to(mg::Device::cuda(0)), mg::device_error);
    CHECK_THROWS_AS((mg::Tensor<float, 1>(mg::Shape<1>{3}, mg::Device::cuda(0))), mg::device_error);
  }
}

TEST_CASE("creation: arange") {
  SUBCASE("one argument counts from zero") {
    CHECK(mg::arange<float>(5).to_vector() == std::vector<float>{0, 1, 2, 3, 4});
    CHECK(mg::arange<float>(0).numel() == 0);
  }
  SUBCASE("fractional steps") {
    CHECK(mg::arange<double>(1, 2, 0.25).to_vector() == std::vector<double>{1, 1.25, 1.5, 1.75});
    // numpy.arange(0, 1, 0.1) has 10 elements, numpy.arange(0, 0.3, 0.1) has 3.
    const auto a = mg::arange<double>(0, 1, 0.1);
    REQUIRE(a.numel() == 10);
    for (index_t i = 0; i < 10; ++i) CHECK(a(i) == doctest::Approx(0.1 * static_cast<double>(i)));
    CHECK(mg::arange<double>(0, 0.3, 0.1).numel() == 3);
  }
  SUBCASE("negative steps count down, stop excluded") {
    CHECK(mg::arange<double>(5, 0, -1.5).to_vector() == std::vector<double>{5, 3.5, 2, 0.5});
    CHECK(mg::arange<std::int32_t>(10, 0, -3).to_vector() == std::vector<std::int32_t>{10, 7, 4, 1});
    CHECK(mg::arange<std::int64_t>(-3, 3).to_vector() == std::vector<std::int64_t>{-3, -2, -1, 0, 1, 2});
    CHECK(mg::arange<float>(0, -1, -0.5).to_vector() == std::vector<float>{0, -0.5f});
  }
  SUBCASE("a range in the wrong direction is empty") {
    CHECK(mg::arange<float>(3, 1).numel() == 0);
    CHECK(mg::arange<float>(1, 3, -1).numel() == 0);
    CHECK(mg::arange<float>(2, 2).numel() == 0);
  }
  SUBCASE("a zero step or non-finite bound throws") {
    CHECK_THROWS_AS(mg::arange<float>(0, 1, 0), mg::shape_error);
    CHECK_THROWS_AS(mg::arange<float>(0, INFINITY), mg::shape_error);
  }
}

TEST_CASE("creation: linspace") {
  SUBCASE("endpoint included by default") {
    CHECK(mg::linspace<double>(0, 1, 5).to_vector() == std::vector<double>{0, 0.25, 0.5, 0.75, 1});
    CHECK(mg::linspace<float>(2, -2, 3).to_vector() == std::vector<float>{2, 0, -2});
  }
  SUBCASE("endpoint excluded divides by num") {
    const auto v = mg::linspace<double>(0, 1, 5, false).to_vector();
    const double want[] = {0, 0.2, 0.4, 0.6, 0.8};
    REQUIRE(v.size() == 5);
    for (int i = 0; i < 5; ++i) CHECK(v[static_cast<std::size_t>(i)] == doctest::Approx(want[i]));
  }
  SUBCASE("the last element is exactly stop") {
    const auto v = mg::linspace<double>(0.1, 0.7, 7);
    CHECK(v(-1) == 0.7);
    CHECK(v(0) == 0.1);
  }
  SUBCASE("one and zero points") {
    CHECK(mg::linspace<float>(3, 9, 1).to_vector() == std::vector<float>{3});
    CHECK(mg::linspace<float>(3, 9, 1, false).to_vector() == std::vector<float>{3});
    CHECK(mg::linspace<float>(3, 9, 0).numel() == 0);
    CHECK_THROWS_AS(mg::linspace<float>(0, 1, -1), mg::shape_error);
  }
  SUBCASE("integer linspace truncates") {
    CHECK(mg::linspace<std::int32_t>(0, 10, 4).to_vector() == std::vector<std::int32_t>{0, 3, 6, 10});
  }
}

TEST_CASE("creation: full and from_vector") {
  SUBCASE("full of a shape and of dims agree") {
    const auto a = mg::full<float>({2, 2}, 1.5f);
    const auto b = mg::full(mg::Shape<2>{2, 2}, 1.5f);
    CHECK(a.to_vector() == std::vector<float>(4, 1.5f));
    CHECK(b.to_vector() == a.to_vector());
  }
  SUBCASE("from_vector fills row-major") {
    const auto t = mg::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
    CHECK(t.shape() == mg::Shape<2>{2, 3});
    CHECK(t(1, 0) == 4);
    CHECK(t(0, 2) == 3);
    const auto v = mg::from_vector(std::vector<std::int64_t>{7, 8});
    CHECK(v.shape() == mg::Shape<1>{2});
    CHECK(v(1) == 8);
  }
  SUBCASE("from_vector copies, so the vector may change afterwards") {
    std::vector<float> src = {1, 2, 3};
    const auto t = mg::from_vector(src, {3});
    src[0] = 100;
    CHECK(t(0) == 1);
  }
  SUBCASE("from_vector refuses a size mismatch and negative extents") {
    CHECK_THROWS_AS(mg::from_vector(std::vector<float>{1, 2, 3}, {2, 2}), mg::shape_error);
    CHECK_THROWS_AS(mg::zeros<float>({2, -1}), mg::shape_error);
  }
}

TEST_CASE("random: reproducibility") {
  SUBCASE("the same seed gives identical draws") {
    mg::Generator g1(42), g2(42);
    CHECK(mg::rand<float>({1000}, g1).to_vector() == mg::rand<float>({1000}, g2).to_vector());
    CHECK(mg::randn<double>({10, 10}, g1).to_vector() == mg::randn<double>({10, 10}, g2).to_vector());
    CHECK(mg::randint<std::int64_t>(-5, 5, {100}, g1).to_vector() ==
          mg::randint<std::int64_t>(-5, 5, {100}, g2).to_vector());
  }
  SUBCASE("manual_seed replays the default generator") {
    mg::manual_seed(7);
    const auto a = mg::rand<float>({64});
    const auto b = mg::randn<float>({64});
    mg::manual_seed(7);
    CHECK(mg::rand<float>({64}).to_vector() == a.to_vector());
    CHECK(mg::randn<float>({64}).to_vector() == b.to_vector());
    mg::Generator g(1);
    g.manual_seed(7);
    CHECK(g.seed() == 7);
  }
  SUBCASE("successive draws and different seeds differ") {
    mg::Generator g(3), h(4);
    const auto a = mg::rand<float>({256}, g).to_vector();
    const auto b = mg::rand<float>({256}, g).to_vector();
    const auto c = mg::rand<float>({256}, h).to_vector();
    int same_ab = 0, same_ac = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      same_ab += a[i] == b[i];
      same_ac += a[i] == c[i];
    }
    CHECK(same_ab < 3);
    CHECK(same_ac < 3);
  }
  SUBCASE("a lazy draw gives the same values every time it is evaluated") {
    mg::Generator g(11);
    const auto u = mg::uniform<float>({300}, -1.0, 1.0, g);
    const mg::Tensor<float, 1> a = u;
    const mg::Tensor<float, 1> b = u;
    CHECK(a.to_vector() == b.to_vector());
  }
  SUBCASE("element i depends only on i: a slice of the draw equals the same elements of the whole") {
    mg::Generator g(12);
    const auto u = mg::uniform<float>({200000}, 0.0, 1.0, g);
    const mg::Tensor<float, 1> whole = u;
    const mg::Tensor<float, 1> part = u.slice(0, 150000, 150100);
    for (index_t i = 0; i < 100; ++i) CHECK(part(i) == whole(150000 + i));
    const mg::Tensor<float, 2> mat = u.reshape({400, 500});
    CHECK(mat(123, 45) == whole(123 * 500 + 45));
  }
  SUBCASE("the values do not depend on the thread count") {
    ThreadGuard guard;
    mg::set_num_threads(1);
    mg::Generator g1(99);
    const auto a = mg::rand<float>({300000}, g1).to_vector();
    const auto n1 = mg::randn<double>({300000}, g1).to_vector();
    const auto i1 = mg::randint<std::int32_t>(0, 1000, {300000}, g1).to_vector();
    mg::set_num_threads(2);
    mg::Generator g2(99);
    CHECK(mg::rand<float>({300000}, g2).to_vector() == a);
    CHECK(mg::randn<double>({300000}, g2).to_vector() == n1);
    CHECK(mg::randint<std::int32_t>(0, 1000, {300000}, g2).to_vector() == i1);
  }
}

TEST_CASE("threads: set_num_threads(n), and n <= 0 restores the default") {
  ThreadGuard guard;
  const int initial = mg::num_threads();
  mg::set_num_threads(1);
  CHECK(mg::num_threads() == 1);
#if defined(_OPENMP)
  mg::set_num_threads(3);
  CHECK(mg::num_threads() == 3);
#endif
  mg::set_num_threads(0);
  CHECK(mg::num_threads() == initial);
  mg::set_num_threads(1);
  mg::set_num_threads(-1);
  CHECK(mg::num_threads() == initial);
}

TEST_CASE("random: statistics of 1e5 draws within 5 sigma") {
  constexpr index_t n = 100000;
  const double nd = static_cast<double>(n);
  mg::Generator g(2024);
  SUBCASE("rand: uniform on [0, 1), mean 1/2, variance 1/12") {
    const auto u = mg::rand<float>({n}, g);
    const auto v = u.to_vector();
    CHECK(*std::min_element(v.begin(), v.end()) >= 0.0f);
    CHECK(*std::max_element(v.begin(), v.end()) < 1.0f);
    const auto m = moments(u);
    CHECK(std::fabs(m.mean - 0.5) < 5 * std::sqrt(1.0 / 12 / nd));
    // Var of (u - 1/2)^2 is 1/80 - 1/144.
    CHECK(std::fabs(m.var - 1.0 / 12) < 5 * std::sqrt((1.0 / 80 - 1.0 / 144) / nd));
  }
  SUBCASE("uniform(lo, hi) in double") {
    const mg::Tensor<double, 2> u = mg::uniform<double>({100, n / 100}, -2.0, 3.0, g);
    const auto v = as_doubles(u);
    CHECK(*std::min_element(v.begin(), v.end()) >= -2.0);
    CHECK(*std::max_element(v.begin(), v.end()) < 3.0);
    const auto m = moments(u);
    CHECK(std::fabs(m.mean - 0.5) < 5 * std::sqrt(25.0 / 12 / nd));
    CHECK(std::fabs(m.var - 25.0 / 12) < 5 * 25.0 * std::sqrt((1.0 / 80 - 1.0 / 144) / nd));
  }
  SUBCASE("randn: mean 0, variance 1") {
    const auto m = moments(mg::randn<float>({n}, g));
    CHECK(std::fabs(m.mean) < 5 / std::sqrt(nd));
    CHECK(std::fabs(m.var - 1) < 5 * std::sqrt(2 / nd));
  }
  SUBCASE("normal(mean, std)") {
    const mg::Tensor<double, 1> x = mg::normal<double>({n}, 3.0, 2.0, g);
    const auto m = moments(x);
    CHECK(std::fabs(m.mean - 3) < 5 * 2 / std::sqrt(nd));
    CHECK(std::fabs(m.var - 4) < 5 * 4 * std::sqrt(2 / nd));
  }
  SUBCASE("randint: every value of [lo, hi) and nothing else, in equal shares") {
    const auto r = mg::randint<std::int64_t>(-3, 7, {n}, g).to_vector();
    REQUIRE(*std::min_element(r.begin(), r.end()) == -3);
    REQUIRE(*std::max_element(r.begin(), r.end()) == 6);
    std::vector<double> count(10, 0.0);
    for (std::int64_t v : r) count[static_cast<std::size_t>(v + 3)] += 1;
    // Each count is binomial(n, 1/10).
    for (double c : count) CHECK(std::fabs(c - nd / 10) < 5 * std::sqrt(nd * 0.1 * 0.9));
    const auto r32 = mg::randint<std::int32_t>(100, 102, {1000}, g).to_vector();
    CHECK(std::set<std::int32_t>(r32.begin(), r32.end()) == std::set<std::int32_t>{100, 101});
  }
  SUBCASE("randint refuses an empty range") {
    CHECK_THROWS_AS(mg::randint<std::int64_t>(5, 5, {3}, g), mg::shape_error);
    CHECK_THROWS_AS(mg::randint<std::int32_t>(5, 4, {3}, g), mg::shape_error);
  }
}

TEST_CASE("tensor: to_vector of strided and evaluated views") {
  mg::Tensor<float, 2> m = mg::arange<float>(12).reshape({3, 4});
  SUBCASE("a transposed layout is returned in its own row-major order") {
    const mg::Tensor<float, 2> t = m.t();
    CHECK(t.to_vector() == std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  }
  SUBCASE("a layout with an offset and a step") {
    // rows 0 and 2, columns 1 and 3: offset 1, strides {8, 2}.
    auto s = mg::Tensor<float, 2>::from_storage(m.storage(), 1, mg::Shape<2>{2, 2}, mg::Strides<2>{{8, 2}});
    CHECK_FALSE(s.is_contiguous());
    CHECK(s.to_vector() == std::vector<float>{1, 3, 9, 11});
  }
  SUBCASE("a broadcast layout (stride 0) repeats") {
    auto b = mg::Tensor<float, 2>::from_storage(m.storage(), 4, mg::Shape<2>{3, 2}, mg::Strides<2>{{0, 1}});
    CHECK(b.to_vector() == std::vector<float>{4, 5, 4, 5, 4, 5});
  }
}

TEST_CASE("tensor: memory_stats counts storage allocations") {
  auto allocs = [] { return mg::memory_stats().allocations; };
  SUBCASE("each new tensor allocates once; handles and views allocate nothing") {
    const auto n0 = allocs();
    auto a = mg::zeros<float>({64, 64});
    CHECK(allocs() == n0 + 1);
    auto b = a;
    auto v = a.t();
    auto e = a * 2 + 1;
    CHECK(allocs() == n0 + 1);
    (void)b, (void)v, (void)e;
    auto c = a.clone();
    CHECK(allocs() == n0 + 2);
  }
  SUBCASE("assigning into a tensor of the right shape reuses its memory") {
    auto a = mg::ones<float>({128});
    auto y = mg::zeros<float>({128});
    const auto n0 = allocs();
    y = a * 3 + 1;
    y += a;
    y.assign(a - 1);
    CHECK(allocs() == n0);
    CHECK(y(5) == 0);
    mg::Tensor<float, 1> z = a + a;
    CHECK(allocs() == n0 + 1);
    y = mg::arange<float>(3) + 1;  // another shape: fresh storage for the result (and for arange)
    CHECK(allocs() == n0 + 3);
  }
  SUBCASE("current_bytes rises with a tensor and falls when its last handle goes") {
    const auto b0 = mg::memory_stats().current_bytes;
    {
      auto a = mg::zeros<double>({1000});
      CHECK(mg::memory_stats().current_bytes == b0 + 8000);
      CHECK(mg::memory_stats().peak_bytes >= b0 + 8000);
    }
    CHECK(mg::memory_stats().current_bytes == b0);
  }
  SUBCASE("contiguous() of a contiguous tensor makes no copy") {
    auto a = mg::zeros<float>({8, 8});
    const auto n0 = allocs();
    auto c = mg::contiguous(a);
    CHECK(allocs() == n0);
    CHECK(c.data() == a.data());
  }
}
