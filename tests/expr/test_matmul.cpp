// Tests of matmul as an expression: values against a naive triple loop for 2-D and batched products with
// broadcast batch axes, transposed and computed operands, the scalar factor and accumulation folded into the
// GEMM, writing into a destination the operands read, and shape errors.
#include <doctest/doctest.h>

#include <metagrad/metagrad.hpp>
#include <string>
#include <vector>

using namespace metagrad;

namespace {

// C[b] = sum_k A[b](i, k) B[b](k, j) for rank-3 operands already broadcast to a common batch (naive, double).
std::vector<double> naive(const Tensor<double, 3>& a, const Tensor<double, 3>& b) {
  const index_t batch = a.shape()[0], m = a.shape()[1], k = a.shape()[2], n = b.shape()[2];
  std::vector<double> c(static_cast<std::size_t>(batch * m * n), 0.0);
  for (index_t q = 0; q < batch; ++q)
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) {
        double s = 0;
        for (index_t p = 0; p < k; ++p) s += a(q, i, p) * b(q, p, j);
        c[static_cast<std::size_t>((q * m + i) * n + j)] = s;
      }
  return c;
}

template <int R>
void check_values(const Tensor<double, R>& got, const std::vector<double>& want, double scale = 1.0) {
  const auto v = contiguous(got).to_vector();
  REQUIRE(v.size() == want.size());
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(v[i] == doctest::Approx(scale * want[i]).epsilon(1e-12));
}

}  // namespace

TEST_CASE("matmul: 2-D products in every transpose combination") {
  const Tensor<double, 2> a = randn<double>({7, 5}), b = randn<double>({5, 9});
  const Tensor<double, 2> at = a.t().eval(), bt = b.t().eval();  // stored transposed
  const auto want = naive(a.reshape({1, 7, 5}).eval(), b.reshape({1, 5, 9}).eval());
  SUBCASE("plain") { check_values(Tensor<double, 2>(matmul(a, b)), want); }
  SUBCASE("a stored transposed") { check_values(Tensor<double, 2>(matmul(at.t(), b)), want); }
  SUBCASE("b stored transposed") { check_values(Tensor<double, 2>(matmul(a, bt.t())), want); }
  SUBCASE("both") { check_values(Tensor<double, 2>(matmul(at.t(), bt.t())), want); }
  SUBCASE("computed operands") {
    check_values(Tensor<double, 2>(matmul(a * 1.0, (bt * 1.0).t())), want);
    check_values(Tensor<double, 2>(matmul((at + 0.0).t(), b)), want);
  }
  SUBCASE("a non-contiguous window") {
    const Tensor<double, 2> big = randn<double>({9, 12});
    auto win = big.slice({Slice{1, 8}, Slice{2, 12, 2}});  // 7 x 5, row stride 12, column stride 2
    const Tensor<double, 2> wv = win.eval();
    check_values(Tensor<double, 2>(matmul(win, b)), naive(wv.reshape({1, 7, 5}).eval(), b.reshape({1, 5, 9}).eval()));
  }
}

TEST_CASE("matmul: batched products broadcast their batch axes") {
  const Tensor<double, 3> a = randn<double>({4, 3, 6});
  const Tensor<double, 2> w = randn<double>({6, 2});
  Tensor<double, 3> wb = zeros<double>({4, 6, 2});
  wb.assign(w);  // the broadcast made explicit, for the reference
  SUBCASE("rank 3 by rank 2") { check_values(Tensor<double, 3>(matmul(a, w)), naive(a, wb)); }
  SUBCASE("rank 2 by rank 3") {
    const Tensor<double, 2> l = randn<double>({5, 3});
    Tensor<double, 3> lb = zeros<double>({4, 5, 3});
    lb.assign(l);
    check_values(Tensor<double, 3>(matmul(l, a)), naive(lb, a));
  }
  SUBCASE("rank 4 with a broadcast axis of extent 1") {
    const Tensor<double, 4> x = randn<double>({2, 1, 3, 4});
    const Tensor<double, 4> y = randn<double>({1, 3, 4, 5});
    const Tensor<double, 4> got = matmul(x, y);
    CHECK(got.shape() == Shape<4>{2, 3, 3, 5});
    for (index_t p = 0; p < 2; ++p)
      for (index_t q = 0; q < 3; ++q)
        for (index_t i = 0; i < 3; ++i)
          for (index_t j = 0; j < 5; ++j) {
            double s = 0;
            for (index_t k = 0; k < 4; ++k) s += x(p, 0, i, k) * y(0, q, k, j);
            CHECK(got(p, q, i, j) == doctest::Approx(s).epsilon(1e-12));
          }
  }
}

TEST_CASE("matmul: a scalar factor and accumulation fold into the GEMM") {
  const Tensor<double, 2> a = randn<double>({6, 4}), b = randn<double>({4, 3});
  const auto want = naive(a.reshape({1, 6, 4}).eval(), b.reshape({1, 4, 3}).eval());
  SUBCASE("s * matmul and matmul * s") {
    auto e = 2.5 * matmul(a, b);
    static_assert(std::is_same_v<decltype(e), decltype(matmul(a, b))>, "the factor folds into the node");
    CHECK(e.alpha() == 2.5);
    check_values(Tensor<double, 2>(e), want, 2.5);
    check_values(Tensor<double, 2>(matmul(a, b) * -0.5), want, -0.5);
    check_values(Tensor<double, 2>(matmul(a, b, 3.0)), want, 3.0);
  }
  SUBCASE("c += matmul accumulates in place") {
    Tensor<double, 2> c = ones<double>({6, 3});
    const double* before = c.data();
    c += matmul(a, b);
    CHECK(c.data() == before);
    const auto v = c.to_vector();
    for (std::size_t i = 0; i < v.size(); ++i) CHECK(v[i] == doctest::Approx(1.0 + want[i]).epsilon(1e-12));
  }
  SUBCASE("a named product keeps its value when scaled (no second GEMM type)") {
    auto z = matmul(a, b);
    auto e = z * 2.0;
    static_assert(!std::is_same_v<decltype(e), decltype(z)>);
    check_values(Tensor<double, 2>(e), want, 2.0);
  }
}

TEST_CASE("matmul: a destination the operands read is handled") {
  Tensor<double, 2> a = randn<double>({4, 4});
  const Tensor<double, 2> b = randn<double>({4, 4});
  const auto want = naive(a.reshape({1, 4, 4}).eval(), b.reshape({1, 4, 4}).eval());
  a = matmul(a, b);  // same shape: written in place, so through a temporary
  check_values(a, want);
}

TEST_CASE("matmul: shape errors name matmul and both shapes") {
  const Tensor<float, 2> a = zeros<float>({3, 4}), b = zeros<float>({5, 2});
  CHECK_THROWS_WITH_AS((void)eval(matmul(a, b)), doctest::Contains("matmul"), shape_error);
  try {
    (void)eval(matmul(a, b));
  } catch (const shape_error& e) {
    const std::string m = e.what();
    CHECK(m.find("[3, 4]") != std::string::npos);
    CHECK(m.find("[5, 2]") != std::string::npos);
  }
  const Tensor<float, 3> x = zeros<float>({2, 3, 4}), y = zeros<float>({3, 4, 5});
  CHECK_THROWS_AS((void)eval(matmul(x, y)), shape_error);
  SUBCASE("empty products") {
    const Tensor<float, 2> e = zeros<float>({0, 4}), f = zeros<float>({4, 3});
    CHECK(Tensor<float, 2>(matmul(e, f)).shape() == Shape<2>{0, 3});
    const Tensor<float, 2> g = zeros<float>({3, 0}), h = zeros<float>({0, 2});
    const auto v = Tensor<float, 2>(matmul(g, h)).to_vector();
    for (float x0 : v) CHECK(x0 == 0.0f);
  }
}
