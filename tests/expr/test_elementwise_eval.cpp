// How elementwise expressions are evaluated: assignment in place (y = y + 1, compound assignment), aliasing
// (x = x.t() and overlapping views go through a temporary), closure semantics (named tensors are held by
// reference and read at evaluation time; temporaries are held by value and never dangle), a long fused chain
// against a scalar loop, independence of the result from the thread count, and the 64-bit index path.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <metagrad/metagrad.hpp>
#include <random>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "elementwise_reference.hpp"

using namespace elementwise_test;

namespace {

mg::Tensor<float, 2> counting_matrix(index_t rows, index_t cols) {
  mg::Tensor<float, 2> m;
  m.allocate(mg::Shape<2>{rows, cols});
  for (index_t i = 0; i < rows * cols; ++i) m.data()[i] = static_cast<float>(i);
  return m;
}

std::vector<float> random_floats(std::mt19937& rng, std::size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace

TEST_CASE("elementwise eval: assignment to a tensor of the same shape writes in place") {
  auto y = counting_matrix(3, 4);
  const auto view = y;  // a second handle on the same storage
  const float* storage = y.data();

  SUBCASE("y = y + 1 updates the storage that every handle sees") {
    y = y + 1.0f;
    CHECK(y.data() == storage);
    for (index_t i = 0; i < 12; ++i) CHECK(view.data()[i] == static_cast<float>(i + 1));
  }
  SUBCASE("compound assignment: += -= *= /=, with broadcasting") {
    const mg::Tensor<float, 1> row = {1, 2, 3, 4};
    y += row;
    y *= 2.0f;
    y -= y / 2.0f;  // y = y - y/2 = y/2
    y /= row;
    CHECK(y.data() == storage);
    for (index_t i = 0; i < 3; ++i)
      for (index_t j = 0; j < 4; ++j)
        CHECK(view(i, j) == static_cast<float>(i * 4 + j + (j + 1)) / static_cast<float>(j + 1));
  }
  SUBCASE("integer tensors too") {
    mg::Tensor<std::int64_t, 1> k = {1, 2, 3};
    const std::int64_t* ks = k.data();
    k += k * 10;
    k -= 1;
    k *= k;
    CHECK(k.data() == ks);
    CHECK(k.to_vector() == std::vector<std::int64_t>{100, 441, 1024});
  }
  SUBCASE("an expression of another shape re-seats the tensor on new storage") {
    y = mg::zeros<float>({2, 2}) + 7.0f;
    CHECK(y.shape() == mg::Shape<2>{2, 2});
    CHECK(y.data() != storage);
    CHECK(view.shape() == mg::Shape<2>{3, 4});  // the old storage lives on in the other handle
    CHECK(view(2, 3) == 11.0f);
  }
  SUBCASE("a default-constructed tensor receives new storage") {
    mg::Tensor<float, 2> z;
    CHECK_FALSE(z.defined());
    z = y * 2.0f;
    CHECK(z.defined());
    CHECK(z(2, 3) == 22.0f);
  }
}

TEST_CASE("elementwise eval: reads that alias the destination other than element for element") {
  SUBCASE("x = x.t() on a square matrix is the true transpose, in the same storage") {
    auto x = counting_matrix(5, 5);
    const auto before = x.clone();
    const float* storage = x.data();
    x = x.t();
    CHECK(x.data() == storage);
    int wrong = 0;
    for (index_t i = 0; i < 5; ++i)
      for (index_t j = 0; j < 5; ++j) wrong += x(i, j) != before(j, i);
    CHECK(wrong == 0);
  }
  SUBCASE("x = x.t() for a large square matrix (threaded rows) and integer dtype") {
    mg::Tensor<std::int32_t, 2> x;
    x.allocate(mg::Shape<2>{300, 300});
    for (index_t i = 0; i < 300 * 300; ++i) x.data()[i] = static_cast<std::int32_t>(i);
    x = x.t() + x;  // symmetric: element (i, j) = (j, i) + (i, j)
    int wrong = 0;
    for (index_t i = 0; i < 300; ++i)
      for (index_t j = 0; j < 300; ++j) wrong += x(i, j) != static_cast<std::int32_t>(j * 300 + i + i * 300 + j);
    CHECK(wrong == 0);
  }
  SUBCASE("x = x.t() on a non-square matrix gives the transposed shape") {
    auto x = counting_matrix(2, 3);
    x = x.t();
    CHECK(x.shape() == mg::Shape<2>{3, 2});
    CHECK(x.to_vector() == std::vector<float>{0, 3, 1, 4, 2, 5});
  }
  SUBCASE("assign() from a shifted overlapping view copies the old values") {
    auto x = mg::arange<float>(10);
    const auto head = mg::Tensor<float, 1>::from_storage(x.storage(), 0, mg::Shape<1>{9}, mg::Strides<1>{{1}});
    auto tail = mg::Tensor<float, 1>::from_storage(x.storage(), 1, mg::Shape<1>{9}, mg::Strides<1>{{1}});
    tail.assign(head * 1.0f);  // a forward loop without a temporary would smear x[0] over everything
    CHECK(x.to_vector() == std::vector<float>{0, 0, 1, 2, 3, 4, 5, 6, 7, 8});
  }
  SUBCASE("assign() of the reversed tensor reverses it") {
    auto x = mg::arange<float>(7);
    x.assign(x.slice(0, mg::Slice::none, mg::Slice::none, -1));
    CHECK(x.to_vector() == std::vector<float>{6, 5, 4, 3, 2, 1, 0});
  }
}

TEST_CASE("elementwise eval: expressions are closures over their operands") {
  mg::Tensor<float, 1> a = {1, 2, 3};
  mg::Tensor<float, 1> b = {10, 20, 30};
  const mg::Tensor<float, 1> c = {100, 200, 300};

  SUBCASE("named tensors are held by reference, temporaries by value") {
    using Ref = const mg::Tensor<float, 1>&;
    static_assert(std::is_same_v<decltype(a * b), mg::BinaryExpr<mg::ops::Mul, Ref, Ref>>);
    static_assert(
        std::is_same_v<decltype(a * b + c), mg::BinaryExpr<mg::ops::Add, mg::BinaryExpr<mg::ops::Mul, Ref, Ref>, Ref>>);
    static_assert(
        std::is_same_v<decltype(mg::ones<float>({3}) * a), mg::BinaryExpr<mg::ops::Mul, mg::Tensor<float, 1>, Ref>>);
  }
  SUBCASE("an expression evaluated later sees the operands' values at that time") {
    auto e = a * b + c;
    a = mg::Tensor<float, 1>{2, 3, 4};  // re-seated on new storage
    b(0) = -1;                          // changed in place
    CHECK(mg::eval(e).to_vector() == std::vector<float>{98, 260, 420});
    a.assign(mg::zeros<float>({3}));
    CHECK(mg::eval(e).to_vector() == std::vector<float>{100, 200, 300});
  }
  SUBCASE("an expression built from temporaries does not dangle") {
    auto e = (a + b) * 2.0f;                                              // a + b is held by value
    auto f = mg::exp(mg::full<float>({3}, 0.0f)) * mg::arange<float>(3);  // temporary tensors held by value
    auto make = [] { return mg::full<float>({3}, 2.0f) * mg::arange<float>(1, 4); };
    auto g = make();
    // Churn the heap so that freed storage would be reused and overwritten.
    std::vector<mg::Tensor<float, 1>> churn;
    for (int i = 0; i < 64; ++i) churn.push_back(mg::full<float>({3}, -1.0f));
    CHECK(mg::eval(e).to_vector() == std::vector<float>{22, 44, 66});
    CHECK(mg::eval(f).to_vector() == std::vector<float>{0, 1, 2});
    CHECK(mg::eval(g).to_vector() == std::vector<float>{2, 4, 6});
    a(1) = 0;  // still read by reference through the stored a + b
    CHECK(mg::eval(e).to_vector() == std::vector<float>{22, 40, 66});
  }
  SUBCASE("evaluating twice gives the same result, and eval() equals .eval() and assignment") {
    const auto e = mg::sin(a) * c - b;
    const mg::Tensor<float, 1> y = e;
    CHECK(mg::eval(e).to_vector() == y.to_vector());
    CHECK(e.eval().to_vector() == y.to_vector());
    CHECK((a * 0.0f + 5.0f).slice(0, 1, 2).item() == 5.0f);
  }
}

TEST_CASE("elementwise eval: a long fused chain matches a scalar loop") {
  // y = tanh(a x + b) c + d d against the same formula in double. Bound: each float rounding costs at most
  // u = 2^-24 relative to its own result and tanh at most 2 ulp (4u); the error of z = a x + b reaches the result
  // through c tanh'(z) = c (1 - t^2).
  constexpr double u = 0x1p-24;
  std::mt19937 rng(2718);
  const std::size_t n = 7 * 4096;
  const auto va = random_floats(rng, n, -3, 3), vx = random_floats(rng, n, -3, 3), vb = random_floats(rng, n, -3, 3),
             vc = random_floats(rng, n, -3, 3), vd = random_floats(rng, n, -3, 3);
  auto check_against_loop = [&](const std::vector<float>& got) {
    std::size_t bad = 0, first = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double z = double(va[i]) * vx[i] + vb[i], t = std::tanh(z);
      const double ref = t * vc[i] + double(vd[i]) * vd[i];
      const double tol =
          u * (2 * std::fabs(vc[i]) * (1 - t * t) * (std::fabs(double(va[i]) * vx[i]) + std::fabs(vb[i])) +
               7 * std::fabs(vc[i] * t) + 3 * double(vd[i]) * vd[i]);
      if (!(std::fabs(got[i] - ref) <= tol) && bad++ == 0) first = i;
    }
    CHECK_MESSAGE(bad == 0, bad, " elements beyond the bound, first at ", first, ": got ", show(got[first]));
  };
  SUBCASE("all operands contiguous (flat loop)") {
    const auto a = flat_tensor(va), x = flat_tensor(vx), b = flat_tensor(vb), c = flat_tensor(vc), d = flat_tensor(vd);
    CHECK(mg::lower_expr(mg::tanh(a * x + b) * c + d * d, a.shape()).is_flat());
    const mg::Tensor<float, 1> y = mg::tanh(a * x + b) * c + d * d;
    check_against_loop(y.to_vector());
  }
  SUBCASE("some operands transposed views (strided loop)") {
    const auto a = transposed_storage(va), x = flat_tensor(vx).reshape({static_cast<index_t>(n / 7), 7}).eval();
    const auto b = transposed_storage(vb), c = flat_tensor(vc).reshape({static_cast<index_t>(n / 7), 7}).eval();
    const auto d = transposed_storage(vd);
    const mg::Tensor<float, 2> y = mg::tanh(a.t() * x + b.t()) * c + d.t() * d.t();
    check_against_loop(y.to_vector());
  }
}

TEST_CASE("elementwise eval: results do not depend on the number of threads") {
  std::mt19937 rng(314);
  constexpr index_t n = index_t{1} << 20;
  const auto vals = random_floats(rng, static_cast<std::size_t>(n), -20, 20);
  const auto x = flat_tensor(vals);
  const auto m = x.reshape({1024, 1024}).eval();
  auto run = [&](int threads) {
    mg::set_num_threads(threads);
#if defined(_OPENMP)
    CHECK(mg::num_threads() == threads);
#endif
    const mg::Tensor<float, 1> flat = mg::exp(x * 0.1f) * mg::sin(x) + mg::sqrt(mg::abs(x)) / (1.0f + x * x);
    const mg::Tensor<float, 2> strided = mg::tanh(m.t()) * m + mg::gelu(m.t());
    return std::pair{flat.to_vector(), strided.to_vector()};
  };
  const auto one = run(1);
  for (int threads : {2, 3}) {
    CAPTURE(threads);
    const auto more = run(threads);
    std::size_t differ = 0;
    for (std::size_t i = 0; i < one.first.size(); ++i) differ += !same_value(one.first[i], more.first[i]);
    for (std::size_t i = 0; i < one.second.size(); ++i) differ += !same_value(one.second[i], more.second[i]);
    CHECK(differ == 0);
  }
  mg::set_num_threads(0);  // back to the default
}

TEST_CASE("elementwise eval: rank-0 and empty results") {
  const auto s = mg::full<double>(mg::Shape<0>{}, 2.0);
  const mg::Tensor<double, 0> y = mg::exp(s) * s;
  CHECK(y.item() == doctest::Approx(2.0 * std::exp(2.0)));
  const mg::Tensor<float, 2> e = mg::zeros<float>({0, 4}) * 2.0f + 1.0f;
  CHECK(e.shape() == mg::Shape<2>{0, 4});
  CHECK(e.numel() == 0);
}

#if defined(__linux__)
TEST_CASE("elementwise eval: operands spanning more than 2 GiB take the 64-bit index path") {
  // A [2, 3] view whose rows lie 4 GiB apart in a sparse, lazily mapped region: only the touched pages exist.
  constexpr index_t row_stride = index_t{1} << 30;  // elements, i.e. 4 GiB of float
  const std::size_t bytes = static_cast<std::size_t>(row_stride + 3) * sizeof(float);
  void* region = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (region == MAP_FAILED) {
    MESSAGE("skipped: cannot reserve 4 GiB of address space");
    return;
  }
  auto* base = static_cast<float*>(region);
  for (int j = 0; j < 3; ++j)
    base[j] = static_cast<float>(j + 1), base[row_stride + j] = static_cast<float>(10 * (j + 1));
  {
    auto storage = std::make_shared<mg::Storage>(region, bytes, mg::Device::cpu(), nullptr);
    const auto x = mg::Tensor<float, 2>::from_storage(storage, 0, mg::Shape<2>{2, 3}, mg::Strides<2>{{row_stride, 1}});
    const mg::Tensor<float, 2> y = x * 2.0f + 1.0f;
    CHECK(y.to_vector() == std::vector<float>{3, 5, 7, 21, 41, 61});
    const mg::Tensor<float, 2> z = x.t() - x.t();
    CHECK(z.to_vector() == std::vector<float>(6, 0.0f));
  }
  munmap(region, bytes);
}
#endif
