// Tests of the CPU matrix products (backend/cpu/gemm.hpp): gemm (CBLAS when the build has one, the built-in
// kernel otherwise), builtin_gemm and gemm_batched against a triple loop in long double, over shapes on both
// sides of the kernel's register and cache blocks, every transpose combination, alpha and beta, padded
// leading dimensions, empty sizes, broadcast batches, threads and argument errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <metagrad/backend/cpu/gemm.hpp>
#include <metagrad/metagrad.hpp>
#include <string>
#include <vector>

namespace mg = metagrad;
using mg::index_t;

namespace {

struct ThreadGuard {
  ~ThreadGuard() { mg::set_num_threads(0); }
};

// A stored row-major matrix with row stride ld >= cols; the padding holds NaN so reading it shows.
template <class T>
struct Stored {
  index_t rows = 0, cols = 0, ld = 0;
  std::vector<T> v;
  Stored(index_t r, index_t c, index_t pad, std::uint32_t seed) : rows(r), cols(c), ld(c + pad) {
    v.assign(static_cast<std::size_t>(std::max<index_t>(1, r * ld)), std::numeric_limits<T>::quiet_NaN());
    std::uint32_t s = seed * 2654435761u + 1;
    for (index_t i = 0; i < r; ++i)
      for (index_t j = 0; j < c; ++j) {
        s = s * 1664525u + 1013904223u;
        v[i * ld + j] = static_cast<T>(static_cast<double>(s >> 8) / (1 << 23) - 1.0);  // [-1, 1)
      }
  }
  T at(index_t i, index_t j) const { return v[i * ld + j]; }
};

enum class Impl { dispatch, builtin };

template <class T>
void run(Impl impl, bool ta, bool tb, index_t M, index_t N, index_t K, T alpha, const Stored<T>& A, const Stored<T>& B,
         T beta, Stored<T>& C) {
  if (impl == Impl::dispatch)
    mg::cpu::gemm(ta, tb, M, N, K, alpha, A.v.data(), A.ld, B.v.data(), B.ld, beta, C.v.data(), C.ld);
  else
    mg::cpu::builtin_gemm(ta, tb, M, N, K, alpha, A.v.data(), A.ld, B.v.data(), B.ld, beta, C.v.data(), C.ld);
}

// Checks C (after the product) against alpha * op(A) op(B) + beta * C0 summed in long double. The bound is
// the classical one for a dot product of length K, (K + 4) eps * sum |terms|, with eps of T.
template <class T>
void check_product(const Stored<T>& C, const Stored<T>& C0, bool ta, bool tb, index_t M, index_t N, index_t K, T alpha,
                   const Stored<T>& A, const Stored<T>& B, T beta) {
  const long double eps = std::numeric_limits<T>::epsilon();
  int bad = 0;
  for (index_t i = 0; i < M; ++i)
    for (index_t j = 0; j < N; ++j) {
      long double s = 0, mag = 0;
      for (index_t k = 0; k < K; ++k) {
        const long double a = ta ? A.at(k, i) : A.at(i, k);
        const long double b = tb ? B.at(j, k) : B.at(k, j);
        s += a * b;
        mag += std::fabs(a * b);
      }
      long double ref = static_cast<long double>(alpha) * s;
      mag *= std::fabs(static_cast<long double>(alpha));
      if (beta != T(0)) {
        ref += static_cast<long double>(beta) * C0.at(i, j);
        mag += std::fabs(static_cast<long double>(beta) * C0.at(i, j));
      }
      const long double got = C.at(i, j);
      const long double tol = (K + 4) * eps * mag + std::numeric_limits<T>::min();
      if (!(std::fabs(got - ref) <= tol) && bad++ < 3)
        FAIL_CHECK("C(" << i << ", " << j << ") = " << static_cast<double>(got) << ", expected "
                        << static_cast<double>(ref) << " (tolerance " << static_cast<double>(tol) << ")");
    }
  CHECK(bad == 0);
  // The padding of C is never written.
  for (index_t i = 0; i < C.rows; ++i)
    for (index_t j = C.cols; j < C.ld; ++j) CHECK(std::isnan(C.v[i * C.ld + j]));
}

template <class T>
void check_case(Impl impl, bool ta, bool tb, index_t M, index_t N, index_t K, T alpha, T beta, index_t pad = 0) {
  CAPTURE(M);
  CAPTURE(N);
  CAPTURE(K);
  CAPTURE(ta);
  CAPTURE(tb);
  CAPTURE(static_cast<double>(alpha));
  CAPTURE(static_cast<double>(beta));
  CAPTURE(pad);
  const Stored<T> A(ta ? K : M, ta ? M : K, pad, 1), B(tb ? N : K, tb ? K : N, pad, 2);
  Stored<T> C(M, N, pad, 3);
  const Stored<T> C0 = C;
  run(impl, ta, tb, M, N, K, alpha, A, B, beta, C);
  check_product(C, C0, ta, tb, M, N, K, alpha, A, B, beta);
}

struct Dims {
  index_t M, N, K;
};

// Around the register tile (12 x 32 floats with AVX-512, 6 x 16 with AVX2, 6 x 8 with SSE2) and the cache
// blocks (K slices of 256 floats / 128 doubles, B slabs of 256 columns), plus vectors and degenerate shapes.
const std::vector<Dims> shapes = {{1, 1, 1},     {1, 1, 7},     {2, 3, 4},     {1, 40, 9},   {40, 1, 9},
                                  {5, 5, 1},     {17, 33, 65},  {6, 16, 8},    {12, 32, 16}, {13, 33, 17},
                                  {11, 31, 129}, {24, 64, 3},   {7, 9, 300},   {1, 1, 1000}, {97, 130, 70},
                                  {130, 97, 70}, {64, 257, 40}, {37, 300, 257}};

}  // namespace

TEST_CASE_TEMPLATE("gemm: matches a long double triple loop over shapes and transposes", T, float, double) {
  for (Impl impl : {Impl::dispatch, Impl::builtin})
    for (const Dims& d : shapes)
      for (int t = 0; t < 4; ++t) check_case<T>(impl, t & 1, t & 2, d.M, d.N, d.K, T(1), T(0));
}

TEST_CASE_TEMPLATE("gemm: alpha and beta scale the product and the old C", T, float, double) {
  for (Impl impl : {Impl::dispatch, Impl::builtin})
    for (T alpha : {T(1), T(-0.5), T(2), T(0)})
      for (T beta : {T(0), T(1), T(-1.5)}) {
        check_case<T>(impl, false, false, 29, 45, 67, alpha, beta);
        check_case<T>(impl, true, true, 45, 29, 300, alpha, beta);
      }
}

TEST_CASE_TEMPLATE("gemm: leading dimensions larger than the matrix", T, float, double) {
  for (Impl impl : {Impl::dispatch, Impl::builtin})
    for (int t = 0; t < 4; ++t)
      for (index_t pad : {1, 5, 64}) {
        check_case<T>(impl, t & 1, t & 2, 19, 35, 21, T(1), T(0.5), pad);
        check_case<T>(impl, t & 1, t & 2, 1, 1, 3, T(-1), T(0), pad);
      }
}

TEST_CASE_TEMPLATE("gemm: crosses every cache block with two threads", T, float, double) {
  ThreadGuard guard;
  mg::set_num_threads(2);
  for (Impl impl : {Impl::dispatch, Impl::builtin})
    for (int t = 0; t < 4; ++t) check_case<T>(impl, t & 1, t & 2, 301, 530, 290, T(0.75), T(-2));
}

TEST_CASE_TEMPLATE("gemm: beta = 0 makes C write-only", T, float, double) {
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (Impl impl : {Impl::dispatch, Impl::builtin}) {
    SUBCASE("NaN and infinity in C do not reach the result") {
      const Stored<T> A(37, 41, 0, 1), B(41, 45, 0, 2);
      Stored<T> C(37, 45, 0, 3);
      for (std::size_t i = 0; i < C.v.size(); ++i) C.v[i] = i % 2 ? nan : std::numeric_limits<T>::infinity();
      run(impl, false, false, 37, 45, 41, T(1), A, B, T(0), C);
      const Stored<T> zero(37, 45, 0, 3);
      check_product(C, zero, false, false, 37, 45, 41, T(1), A, B, T(0));
    }
    SUBCASE("alpha = 0 and beta = 0 write zeros without reading A or B") {
      Stored<T> A(8, 9, 0, 1), B(9, 10, 0, 2), C(8, 10, 0, 3);
      std::fill(A.v.begin(), A.v.end(), nan);
      std::fill(B.v.begin(), B.v.end(), nan);
      std::fill(C.v.begin(), C.v.end(), nan);
      run(impl, false, false, 8, 10, 9, T(0), A, B, T(0), C);
      for (T x : C.v) CHECK(x == T(0));
    }
    SUBCASE("K = 0 and beta = 0 zero C") {
      Stored<T> A(8, 0, 0, 1), B(0, 10, 0, 2), C(8, 10, 0, 3);
      std::fill(C.v.begin(), C.v.end(), nan);
      run(impl, false, false, 8, 10, 0, T(1), A, B, T(0), C);
      for (T x : C.v) CHECK(x == T(0));
    }
  }
}

TEST_CASE_TEMPLATE("gemm: empty sizes", T, float, double) {
  for (Impl impl : {Impl::dispatch, Impl::builtin})
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      CAPTURE(ta);
      CAPTURE(tb);
      SUBCASE("K = 0 gives C = beta * C") {
        // The natural row stride of an M x 0 matrix is 0: allowed, and never passed to BLAS.
        Stored<T> A(ta ? 0 : 6, ta ? 6 : 0, 0, 1), B(tb ? 7 : 0, tb ? 0 : 7, 0, 2), C(6, 7, 0, 3);
        const Stored<T> C0 = C;
        run(impl, ta, tb, 6, 7, 0, T(1), A, B, T(2.5), C);
        for (index_t i = 0; i < 42; ++i) CHECK(C.v[i] == T(2.5) * C0.v[i]);
        run(impl, ta, tb, 6, 7, 0, T(1), A, B, T(1), C);
        for (index_t i = 0; i < 42; ++i) CHECK(C.v[i] == T(2.5) * C0.v[i]);
      }
      SUBCASE("M = 0 or N = 0 touches nothing") {
        Stored<T> A(9, 9, 0, 1), B(9, 9, 0, 2), C(9, 9, 0, 3);
        const Stored<T> C0 = C;
        run(impl, ta, tb, 0, 9, 9, T(1), A, B, T(0), C);
        run(impl, ta, tb, 9, 0, 9, T(1), A, B, T(0), C);
        run(impl, ta, tb, 0, 0, 0, T(1), A, B, T(0), C);
        CHECK(C.v == C0.v);
      }
    }
}

TEST_CASE("gemm: rejects negative sizes and leading dimensions shorter than a row") {
  std::vector<float> a(64, 1.0f), b(64, 1.0f), c(64, 0.0f);
  auto call = [&](bool ta, bool tb, index_t M, index_t N, index_t K, index_t lda, index_t ldb, index_t ldc) {
    mg::cpu::gemm(ta, tb, M, N, K, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), ldc);
  };
  CHECK_THROWS_WITH_AS(call(false, false, -1, 2, 2, 2, 2, 2), doctest::Contains("matmul"), mg::error);
  CHECK_THROWS_WITH_AS(call(false, false, 2, 2, -3, 2, 2, 2), doctest::Contains("K = -3"), mg::error);
  CHECK_THROWS_WITH_AS(call(false, false, 2, 3, 4, 3, 3, 3), doctest::Contains("lda = 3"), mg::error);
  CHECK_THROWS_WITH_AS(call(true, false, 2, 3, 4, 1, 3, 3), doctest::Contains("lda = 1"), mg::error);
  CHECK_THROWS_WITH_AS(call(false, false, 2, 3, 4, 4, 2, 3), doctest::Contains("ldb = 2"), mg::error);
  CHECK_THROWS_WITH_AS(call(false, true, 2, 3, 4, 4, 3, 3), doctest::Contains("ldb = 3"), mg::error);
  CHECK_THROWS_WITH_AS(call(false, false, 2, 3, 4, 4, 3, 2), doctest::Contains("ldc = 2"), mg::error);
  CHECK_THROWS_AS(mg::cpu::builtin_gemm(false, false, 2, 3, 4, 1.0f, a.data(), 3, b.data(), 3, 0.0f, c.data(), 3),
                  mg::error);
  CHECK_NOTHROW(call(false, false, 2, 3, 4, 4, 3, 3));
  CHECK_NOTHROW(call(true, true, 2, 3, 4, 2, 4, 3));
  CHECK_THROWS_WITH_AS(
      mg::cpu::gemm_batched(-1, false, false, 2, 2, 2, 1.0f, a.data(), 2, 4, b.data(), 2, 4, 0.0f, c.data(), 2, 4),
      doctest::Contains("batch"), mg::error);
  CHECK_THROWS_WITH_AS(
      mg::cpu::gemm_batched(3, false, false, 2, 2, 2, 1.0f, a.data(), 2, 4, b.data(), 2, 4, 0.0f, c.data(), 2, 0),
      doctest::Contains("stride 0"), mg::error);
}

TEST_CASE_TEMPLATE("gemm: batched items equal single products, with stride 0 broadcasting", T, float, double) {
  ThreadGuard guard;
  // Small items go side by side on the threads, large ones one after another, each threaded; 70 x 80 x 60
  // is small for the built-in kernel and large for CBLAS.
  for (Dims d : {Dims{9, 11, 13}, Dims{70, 80, 60}, Dims{100, 90, 80}})
    for (int threads : {1, 2})
      for (int t = 0; t < 4; ++t)
        for (int bcast = 0; bcast < 3; ++bcast) {  // 0: none, 1: A shared, 2: B shared
          mg::set_num_threads(threads);
          const bool ta = t & 1, tb = t & 2;
          const index_t batch = 7, pad = 3;
          CAPTURE(d.M);
          CAPTURE(threads);
          CAPTURE(ta);
          CAPTURE(tb);
          CAPTURE(bcast);
          const index_t ar = ta ? d.K : d.M, ac = ta ? d.M : d.K, br = tb ? d.N : d.K, bc = tb ? d.K : d.N;
          const index_t lda = ac + pad, ldb = bc + pad, ldc = d.N + pad;
          const index_t sa = bcast == 1 ? 0 : ar * lda + 5, sb = bcast == 2 ? 0 : br * ldb + 2, sc = d.M * ldc + 1;
          const Stored<T> A(1, sa * (batch - 1) + ar * lda, 0, 4), B(1, sb * (batch - 1) + br * ldb, 0, 5);
          Stored<T> C(1, sc * batch, 0, 6);
          Stored<T> expect = C;
          for (index_t i = 0; i < batch; ++i)
            mg::cpu::gemm(ta, tb, d.M, d.N, d.K, T(1.5), A.v.data() + i * sa, lda, B.v.data() + i * sb, ldb, T(-0.5),
                          expect.v.data() + i * sc, ldc);
          mg::cpu::gemm_batched(batch, ta, tb, d.M, d.N, d.K, T(1.5), A.v.data(), lda, sa, B.v.data(), ldb, sb, T(-0.5),
                                C.v.data(), ldc, sc);
          CHECK(C.v == expect.v);
          // And each item is right, not merely equal to gemm().
          Stored<T> Ai(ar, ac, pad, 0), Bi(br, bc, pad, 0), Ci(d.M, d.N, pad, 0), C0(d.M, d.N, pad, 6);
          const Stored<T> C0all(1, sc * batch, 0, 6);
          for (index_t i = 0; i < batch; i += 3) {
            std::copy_n(A.v.begin() + i * sa, ar * lda, Ai.v.begin());
            std::copy_n(B.v.begin() + i * sb, br * ldb, Bi.v.begin());
            std::copy_n(C.v.begin() + i * sc, d.M * ldc, Ci.v.begin());
            std::copy_n(C0all.v.begin() + i * sc, d.M * ldc, C0.v.begin());
            for (index_t r = 0; r < d.M; ++r)  // the gap between rows of C is not written; mark it as padding
              for (index_t j = d.N; j < ldc; ++j) Ci.v[r * ldc + j] = std::numeric_limits<T>::quiet_NaN();
            check_product(Ci, C0, ta, tb, d.M, d.N, d.K, T(1.5), Ai, Bi, T(-0.5));
          }
        }
}

TEST_CASE_TEMPLATE("gemm: the built-in kernel gives the same bits on any number of threads", T, float, double) {
  ThreadGuard guard;
  const Stored<T> A(203, 301, 0, 7), B(301, 190, 0, 8);
  Stored<T> C1(203, 190, 0, 9);
  const Stored<T> C0 = C1;
  mg::set_num_threads(1);
  run(Impl::builtin, false, false, 203, 190, 301, T(1), A, B, T(1), C1);
  check_product(C1, C0, false, false, 203, 190, 301, T(1), A, B, T(1));
  // More threads than cores is fine: 4 and 6 split C both ways (a 2 x 2 or 2 x 3 grid of tiles).
  for (int threads : {2, 3, 4, 6}) {
    CAPTURE(threads);
    mg::set_num_threads(threads);
    Stored<T> C2 = C0;
    run(Impl::builtin, false, false, 203, 190, 301, T(1), A, B, T(1), C2);
    CHECK(C1.v == C2.v);
  }
}

TEST_CASE("gemm: the built-in kernel reuses its packing buffers") {
  ThreadGuard guard;
  mg::set_num_threads(1);
  const Stored<float> A(300, 300, 0, 1), B(300, 300, 0, 2);
  Stored<float> C(300, 300, 0, 3);
  run(Impl::builtin, false, false, 300, 300, 300, 1.0f, A, B, 0.0f, C);
  const auto& scratch = mg::cpu::detail::gemm_scratch();
  const void* data = scratch.data;
  const std::size_t bytes = scratch.bytes;
  for (int i = 0; i < 3; ++i) run(Impl::builtin, true, true, 300, 300, 300, 1.0f, A, B, 0.0f, C);
  run(Impl::builtin, false, false, 40, 50, 60, 1.0f, A, B, 0.0f, C);
  CHECK(scratch.data == data);
  CHECK(scratch.bytes == bytes);
}
