// CUDA tests of matmul through cuBLAS: products on the GPU against a naive double-precision reference and
// against the CPU's GEMM on the same data, for plain and transposed operands, a folded scalar (alpha), an
// accumulation (beta = 1), broadcast batch axes, odd sizes, computed operands; an MLP's gradients on the GPU
// against the CPU's; the TF32 switch; and the errors (32-bit limits, a refused cuBLAS call). They compile
// and link wherever nvcc is and report "skipped: no CUDA device" when no GPU is present; the checks that
// need no device (the switch, the limits) run everywhere.
//
// Tolerance of a product: any summation order (cuBLAS may split k, use FMA or tensor cores) satisfies
// |fl(c_ij) - c_ij| <= gamma_k sum_p |a_ip| |b_pj| with gamma_k ~= k u (u the unit roundoff); alpha and beta
// add one rounding each. The tests allow (k + 2) u times that magnitude against the exact (double)
// reference, and twice it between the GPU and the CPU, whose orders differ.
#include <doctest/doctest.h>

#include <climits>
#include <cmath>
#include <cstdio>
#include <metagrad/metagrad.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_test_support.hpp"

using namespace metagrad;

namespace {

using cuda_test::have_device;

const Device gpu = Device::cuda(0);

template <class T>
constexpr double unit_roundoff() {
  return std::is_same_v<T, float> ? 0x1p-24 : 0x1p-53;
}

// The exact product (in double) and sum_p |a_ip| |b_pj|, per output element, row-major.
struct Reference {
  std::vector<double> value, magnitude;
};

// C[q] = A[q] B[q] for host operands already broadcast to a common batch: a (batch, m, k), b (batch, k, n).
template <class T>
Reference naive(const Tensor<T, 3>& a, const Tensor<T, 3>& b) {
  const index_t batch = a.shape()[0], m = a.shape()[1], k = a.shape()[2], n = b.shape()[2];
  Reference r;
  r.value.assign(static_cast<std::size_t>(batch * m * n), 0.0);
  r.magnitude = r.value;
  for (index_t q = 0; q < batch; ++q)
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) {
        double s = 0, g = 0;
        for (index_t p = 0; p < k; ++p) {
          const double x = a(q, i, p), y = b(q, p, j);
          s += x * y;
          g += std::fabs(x * y);
        }
        r.value[static_cast<std::size_t>((q * m + i) * n + j)] = s;
        r.magnitude[static_cast<std::size_t>((q * m + i) * n + j)] = g;
      }
  return r;
}

template <class T>
Reference naive2(const Tensor<T, 2>& a, const Tensor<T, 2>& b) {
  return naive(a.reshape({1, a.shape()[0], a.shape()[1]}).eval(), b.reshape({1, b.shape()[0], b.shape()[1]}).eval());
}

// r = alpha r (+ c0 when given): the reference of alpha a b + c0.
Reference scaled(Reference r, double alpha, const std::vector<double>& c0 = {}) {
  for (std::size_t i = 0; i < r.value.size(); ++i) {
    r.value[i] *= alpha;
    r.magnitude[i] *= std::fabs(alpha);
    if (!c0.empty()) {
      r.value[i] += c0[i];
      r.magnitude[i] += std::fabs(c0[i]);
    }
  }
  return r;
}

template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// `got` (on the GPU) against the reference within (k + 2 + extra) u |a||b|, and against `cpu` (the same
// product computed on the CPU) within twice that.
template <class T, int R>
void check_product(const Tensor<T, R>& got, const Tensor<T, R>& cpu, const Reference& ref, index_t k,
                   double extra = 0) {
  REQUIRE(got.device() == gpu);
  REQUIRE(cpu.device().is_cpu());
  REQUIRE(got.shape() == cpu.shape());
  const auto g = got.to(Device::cpu()).to_vector();
  const auto c = cpu.to_vector();
  REQUIRE(g.size() == ref.value.size());
  const double tol = (static_cast<double>(k) + 2 + extra) * unit_roundoff<T>();
  std::size_t bad = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double bound = tol * ref.magnitude[i] + 1e-300;
    if (std::fabs(g[i] - ref.value[i]) > bound || std::fabs(double(g[i]) - double(c[i])) > 2 * bound) {
      if (++bad <= 5)
        FAIL_CHECK("element " << i << ": gpu " << g[i] << ", cpu " << c[i] << ", exact " << ref.value[i] << ", bound "
                              << bound);
    }
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE_TEMPLATE("cuda matmul: 2-D products in every transpose combination, odd sizes", T, float, double) {
  if (!have_device()) return;
  struct Size {
    index_t m, k, n;
  };
  for (const Size s :
       {Size{37, 53, 29}, Size{1, 17, 9}, Size{13, 1, 7}, Size{11, 19, 1}, Size{1, 1, 1}, Size{129, 257, 65}}) {
    CAPTURE(s.m);
    CAPTURE(s.k);
    CAPTURE(s.n);
    const Tensor<T, 2> a = randn<T>({s.m, s.k}), b = randn<T>({s.k, s.n});
    const Tensor<T, 2> at = a.t().eval(), bt = b.t().eval();  // stored transposed
    const Tensor<T, 2> ga = a.to(gpu), gb = b.to(gpu), gat = at.to(gpu), gbt = bt.to(gpu);
    const auto ref = naive2(a, b);
    const Tensor<T, 2> cpu = matmul(a, b);
    check_product(Tensor<T, 2>(matmul(ga, gb)), cpu, ref, s.k);
    check_product(Tensor<T, 2>(matmul(gat.t(), gb)), cpu, ref, s.k);
    check_product(Tensor<T, 2>(matmul(ga, gbt.t())), cpu, ref, s.k);
    check_product(Tensor<T, 2>(matmul(gat.t(), gbt.t())), cpu, ref, s.k);
    check_product(Tensor<T, 2>(matmul(transpose(gat, -1, -2), transpose(gbt, 0, 1))), cpu, ref, s.k);
  }
  SUBCASE("an empty inner extent gives zeros, and c += adds nothing") {
    const Tensor<T, 2> a = zeros<T>({4, 0}), b = zeros<T>({0, 3});
    const Tensor<T, 2> got = matmul(a.to(gpu), b.to(gpu));
    for (T v : got.to(Device::cpu()).to_vector()) CHECK(v == T(0));
    const Tensor<T, 2> c0 = randn<T>({4, 3});
    Tensor<T, 2> gc = c0.to(gpu);
    gc += matmul(a.to(gpu), b.to(gpu));
    CHECK(gc.to(Device::cpu()).to_vector() == c0.to_vector());
  }
}

TEST_CASE_TEMPLATE("cuda matmul: a scalar folds into alpha and += accumulates with beta = 1", T, float, double) {
  if (!have_device()) return;
  const index_t m = 45, k = 31, n = 23;
  const Tensor<T, 2> a = randn<T>({m, k}), b = randn<T>({k, n}), c0 = randn<T>({m, n});
  const Tensor<T, 2> ga = a.to(gpu), gb = b.to(gpu);
  const auto ref = naive2(a, b);
  SUBCASE("s * matmul and matmul * s") {
    check_product(Tensor<T, 2>(T(2.5) * matmul(ga, gb)), Tensor<T, 2>(T(2.5) * matmul(a, b)), scaled(ref, 2.5), k);
    check_product(Tensor<T, 2>(matmul(ga, gb) * T(-0.5)), Tensor<T, 2>(matmul(a, b) * T(-0.5)), scaled(ref, -0.5), k);
    check_product(Tensor<T, 2>(matmul(ga, gb, 3.0)), Tensor<T, 2>(matmul(a, b, 3.0)), scaled(ref, 3.0), k);
  }
  SUBCASE("c += matmul(a, b) writes into c") {
    Tensor<T, 2> gc = c0.to(gpu), cc = c0.clone();
    const T* before = gc.data();
    gc += matmul(ga, gb);
    cc += matmul(a, b);
    CHECK(gc.data() == before);
    check_product(gc, cc, scaled(ref, 1.0, as_double(c0.to_vector())), k);
  }
  SUBCASE("c += s * matmul(a.t(), b)") {
    const Tensor<T, 2> gat = a.t().eval().to(gpu);
    Tensor<T, 2> gc = c0.to(gpu), cc = c0.clone();
    gc += T(-2) * matmul(gat.t(), gb);
    cc += T(-2) * matmul(a, b);
    check_product(gc, cc, scaled(ref, -2.0, as_double(c0.to_vector())), k);
  }
}

TEST_CASE_TEMPLATE("cuda matmul: batched products broadcast their batch axes", T, float, double) {
  if (!have_device()) return;
  SUBCASE("rank 3 by rank 2 (the matrix repeats: stride 0)") {
    const Tensor<T, 3> a = randn<T>({6, 5, 7});
    const Tensor<T, 2> w = randn<T>({7, 3});
    Tensor<T, 3> wb = zeros<T>({6, 7, 3});
    wb.assign(w);
    check_product(Tensor<T, 3>(matmul(a.to(gpu), w.to(gpu))), Tensor<T, 3>(matmul(a, w)), naive(a, wb), 7);
  }
  SUBCASE("rank 2 by rank 3, transposed batch items") {
    const Tensor<T, 2> l = randn<T>({5, 4});
    const Tensor<T, 3> x = randn<T>({3, 6, 4});  // used as x^T: (3, 4, 6)
    Tensor<T, 3> lb = zeros<T>({3, 5, 4});
    lb.assign(l);
    const Tensor<T, 3> xt = transpose(x, -1, -2).eval();
    const Tensor<T, 3> gx = x.to(gpu);
    check_product(Tensor<T, 3>(matmul(l.to(gpu), transpose(gx, -1, -2))), Tensor<T, 3>(matmul(l, xt)), naive(lb, xt),
                  4);
  }
  SUBCASE("rank 4 with an axis of extent 1 on each side") {
    const Tensor<T, 4> x = randn<T>({2, 1, 9, 4});
    const Tensor<T, 4> y = randn<T>({1, 3, 4, 11});
    Tensor<T, 3> xb = zeros<T>({6, 9, 4}), yb = zeros<T>({6, 4, 11});
    for (index_t p = 0; p < 2; ++p)
      for (index_t q = 0; q < 3; ++q) {
        for (index_t i = 0; i < 9; ++i)
          for (index_t k = 0; k < 4; ++k) xb(p * 3 + q, i, k) = x(p, 0, i, k);
        for (index_t k = 0; k < 4; ++k)
          for (index_t j = 0; j < 11; ++j) yb(p * 3 + q, k, j) = y(0, q, k, j);
      }
    const Tensor<T, 4> got = matmul(x.to(gpu), y.to(gpu));
    CHECK(got.shape() == Shape<4>{2, 3, 9, 11});
    check_product(got, Tensor<T, 4>(matmul(x, y)), naive(xb, yb), 4);
  }
  SUBCASE("a batch of 64 odd-sized items") {
    const Tensor<T, 3> a = randn<T>({64, 17, 33}), b = randn<T>({64, 33, 15});
    check_product(Tensor<T, 3>(matmul(a.to(gpu), b.to(gpu))), Tensor<T, 3>(matmul(a, b)), naive(a, b), 33);
  }
}

TEST_CASE("cuda matmul: computed operands are evaluated on the GPU first") {
  if (!have_device()) return;
  const index_t m = 19, k = 27, n = 14;
  const Tensor<float, 2> a = rand<float>({m, k}), b = randn<float>({k, n});
  const Tensor<float, 2> at = a.t().eval();
  const Tensor<float, 2> ga = a.to(gpu), gb = b.to(gpu), gat = at.to(gpu);
  // The reference uses exp in double; the GPU's float exp adds a few ulp per operand element (allowed: 4 u).
  Tensor<double, 2> ea = zeros<double>({m, k});
  for (index_t i = 0; i < m; ++i)
    for (index_t p = 0; p < k; ++p) ea(i, p) = std::exp(double(a(i, p)));
  const auto ref = naive2(ea, Tensor<double, 2>(cast<double>(b)));
  const Tensor<float, 2> cpu = matmul(exp(a), b);
  check_product(Tensor<float, 2>(matmul(exp(ga), gb)), cpu, ref, k, 4);
  // A computed operand seen through a transpose is evaluated as it is and passed with a transpose flag.
  check_product(Tensor<float, 2>(matmul(t(exp(gat)), gb)), cpu, ref, k, 4);
  check_product(Tensor<float, 2>(matmul(transpose(exp(gat), -1, -2), gb * 1.0f)), cpu, ref, k, 4);
}

namespace {

struct mlp_x;
struct mlp_y;
struct mlp_w1;
struct mlp_b1;
struct mlp_w2;
struct mlp_b2;
struct mlp_w3;
struct mlp_b3;

struct MlpInit {
  Tensor<float, 2> x, y, w1, w2, w3;
  Tensor<float, 1> b1, b2, b3;
};

// Loss and the six gradients of a 20-32-32-5 ReLU MLP with softmax cross-entropy, on `d`, copied to the host.
std::vector<std::vector<float>> mlp_grads(const MlpInit& in, Device d) {
  Input<mlp_x, float, 2> x("x");
  Input<mlp_y, float, 2> y("y");
  Param<mlp_w1, float, 2> w1("fc1.weight", in.w1.to(d));
  Param<mlp_b1, float, 1> b1("fc1.bias", in.b1.to(d));
  Param<mlp_w2, float, 2> w2("fc2.weight", in.w2.to(d));
  Param<mlp_b2, float, 1> b2("fc2.bias", in.b2.to(d));
  Param<mlp_w3, float, 2> w3("fc3.weight", in.w3.to(d));
  Param<mlp_b3, float, 1> b3("fc3.bias", in.b3.to(d));
  auto h1 = relu(matmul(x, w1) + b1);
  auto h2 = relu(matmul(h1, w2) + b2);
  auto z = matmul(h2, w3) + b3;
  auto loss = mean(logsumexp(z, 1) - sum(z * y, 1));
  auto [g1, gb1, g2, gb2, g3, gb3] = grad(loss, w1, b1, w2, b2, w3, b3);
  // Evaluated one by one, not through compile(): nvcc 13's front end does not finish instantiating a
  // Program over gradients of this size (bench/README.md, "nvcc").
  const Tensor<float, 2> xd = in.x.to(d), yd = in.y.to(d);
  x.bind(xd);
  y.bind(yd);
  const Tensor<float, 0> l = loss;
  const Tensor<float, 2> d1 = g1, d2 = g2, d3 = g3;
  const Tensor<float, 1> db1 = gb1, db2 = gb2, db3 = gb3;
  std::vector<std::vector<float>> out;
  auto host = [&](const auto& t) {
    REQUIRE(t.device() == d);
    out.push_back(t.to(Device::cpu()).to_vector());
  };
  host(l);
  host(d1);
  host(db1);
  host(d2);
  host(db2);
  host(d3);
  host(db3);
  return out;
}

}  // namespace

TEST_CASE("cuda matmul: an MLP's loss and gradients on the GPU equal the CPU's") {
  if (!have_device()) return;
  MlpInit in;
  in.x = randn<float>({16, 20});
  in.y = zeros<float>({16, 5});
  for (index_t i = 0; i < 16; ++i) in.y(i, (i * 7) % 5) = 1.0f;
  in.w1 = Tensor<float, 2>(randn<float>({20, 32}) * 0.3f);
  in.w2 = Tensor<float, 2>(randn<float>({32, 32}) * 0.2f);
  in.w3 = Tensor<float, 2>(randn<float>({32, 5}) * 0.2f);
  in.b1 = Tensor<float, 1>(randn<float>({32}) * 0.1f);
  in.b2 = Tensor<float, 1>(randn<float>({32}) * 0.1f);
  in.b3 = Tensor<float, 1>(randn<float>({5}) * 0.1f);
  const auto cpu = mlp_grads(in, Device::cpu());
  const auto dev = mlp_grads(in, gpu);
  // Each value passes through at most three products of <= 32 terms forward and three backward, plus the
  // softmax's exp/log and the batch mean, each contributing O(k u) ~ 2e-6 relative differences between
  // two summation orders; 1e-4 of the tensor's largest entry leaves a wide margin while a wrong transpose,
  // alpha or beta gives O(1) differences. (A ReLU input within ~1e-6 of zero could flip between devices;
  // with these random inputs none is that close.)
  const char* names[] = {"loss", "dW1", "db1", "dW2", "db2", "dW3", "db3"};
  REQUIRE(cpu.size() == dev.size());
  for (std::size_t t = 0; t < cpu.size(); ++t) {
    CAPTURE(names[t]);
    REQUIRE(cpu[t].size() == dev[t].size());
    double scale = 0;
    for (float v : cpu[t]) scale = std::fmax(scale, std::fabs(v));
    CHECK(scale > 0);
    for (std::size_t i = 0; i < cpu[t].size(); ++i) CHECK(std::fabs(dev[t][i] - cpu[t][i]) <= 1e-4 * scale);
  }
}

TEST_CASE("cuda matmul: TF32 is off by default and switches on and off") {
  // The switch itself is host state: this part runs without a GPU.
  REQUIRE_FALSE(metagrad::cuda::allow_tf32());
  metagrad::cuda::set_allow_tf32(true);
  CHECK(metagrad::cuda::allow_tf32());
  metagrad::cuda::set_allow_tf32(false);
  CHECK_FALSE(metagrad::cuda::allow_tf32());
  if (!have_device()) return;
  // Every a_ip = 1 + 3 * 2^-13 and b_pj = 1: the exact product k (1 + 3 * 2^-13) is a float, and every FP32
  // partial sum is exact, so FP32 gets it exactly. TF32 keeps 10 mantissa bits and reads a_ip as 1, an
  // error of k * 3.7e-4 (0.09 at k = 256), far above FP32's bound. The sizes are large enough for
  // cuBLAS to pick tensor-core kernels when allowed; allowed is not required, so the TF32 phase only checks
  // TF32's own bound.
  const index_t m = 256, k = 256, n = 256;
  const float av = 1.0f + 3.0f * 0x1p-13f;
  const Tensor<float, 2> a = full<float>({m, k}, av), b = ones<float>({k, n});
  const Tensor<float, 2> ga = a.to(gpu), gb = b.to(gpu);
  const double exact = double(k) * double(av);
  auto max_error = [&] {
    const auto v = Tensor<float, 2>(matmul(ga, gb)).to(Device::cpu()).to_vector();
    double e = 0;
    for (float x : v) e = std::fmax(e, std::fabs(x - exact));
    return e;
  };
  CHECK(max_error() == 0.0);
  metagrad::cuda::set_allow_tf32(true);
  const double tf32_error = max_error();
  MESSAGE("largest error with TF32 allowed: " << tf32_error << " (" << (tf32_error > 0 ? "TF32 used" : "FP32 kept")
                                              << ")");
  // TF32 rounds each operand to within 2^-11 relative; the FP32 accumulation adds (k + 2) u.
  CHECK(tf32_error <= (2 * 0x1p-11 + double(k + 2) * 0x1p-24) * exact);
  {
    // double products ignore the switch: this one is exact in FP64 and would not be with any rounding of a.
    const Tensor<double, 2> da = full<double>({m, k}, 1.0 + 0x1p-40), db = ones<double>({k, n});
    const auto v = Tensor<double, 2>(matmul(da.to(gpu), db.to(gpu))).to(Device::cpu()).to_vector();
    for (double x : v) REQUIRE(x == double(k) * (1.0 + 0x1p-40));
  }
  metagrad::cuda::set_allow_tf32(false);
  CHECK(max_error() == 0.0);
}

TEST_CASE("cuda matmul: sizes beyond cuBLAS's 32-bit int are a shape_error naming matmul") {
  // run_gemm checks the limits before touching the device, so this runs without a GPU.
  const index_t big = index_t(INT_MAX) + 1;
  auto call = [&](index_t m, index_t n, index_t k, index_t batch) {
    return GemmCall<float>{batch, false, false, m, n, k, 1.0f, nullptr, k, 0, nullptr, n, 0, 0.0f, nullptr, n, 0, gpu};
  };
  for (const auto& c : {call(big, 2, 2, 1), call(2, big, 2, 1), call(2, 2, big, 1), call(2, 2, 2, big)}) {
    try {
      metagrad::cuda::run_gemm(c);
      FAIL("no exception");
    } catch (const shape_error& e) {
      const std::string msg = e.what();
      CHECK_MESSAGE(msg.find("matmul") != std::string::npos, msg);
      CHECK_MESSAGE(msg.find(std::to_string(big)) != std::string::npos, msg);
    }
  }
}

TEST_CASE("cuda matmul: a call cuBLAS refuses is a cuda_error naming the call and its status") {
  if (!have_device()) return;
  Tensor<float, 2> a = zeros<float>({4, 4}, gpu), b = zeros<float>({4, 4}, gpu), c = zeros<float>({4, 4}, gpu);
  // lda = 2 < k = 4: cuBLAS rejects the call before reading memory.
  const GemmCall<float> bad{1, false, false, 4, 4, 4, 1.0f, a.data(), 2, 0, b.data(), 4, 0, 0.0f, c.data(), 4, 0, gpu};
  try {
    metagrad::cuda::run_gemm(bad);
    FAIL("no exception");
  } catch (const cuda_error& e) {
    const std::string msg = e.what();
    CHECK_MESSAGE(msg.find("cublasSgemm") != std::string::npos, msg);
    CHECK_MESSAGE(msg.find("CUBLAS_STATUS_INVALID_VALUE") != std::string::npos, msg);
    CHECK_MESSAGE(msg.find("lda 2") != std::string::npos, msg);
  }
}

TEST_CASE("cuda matmul: a batch writing one C (stride 0) runs its items in order, as on the CPU") {
  if (!have_device()) return;
  const index_t batch = 3, m = 5, k = 6, n = 4;
  const Tensor<double, 3> a = randn<double>({batch, m, k}), b = randn<double>({batch, k, n});
  const Tensor<double, 2> c0 = randn<double>({m, n});
  Tensor<double, 3> ga = a.to(gpu), gb = b.to(gpu);
  Tensor<double, 2> gc = c0.to(gpu), cc = c0.clone();
  // beta = 1: C = C0 + sum_q A[q] B[q].
  GemmCall<double> call{batch, false,     false, m,     n,   k,         1.0, ga.data(), k,
                        m * k, gb.data(), n,     k * n, 1.0, gc.data(), n,   0,         gpu};
  run_gemm(call);
  call.a = a.data();
  call.b = b.data();
  call.c = cc.data();
  call.device = Device::cpu();
  run_gemm(call);
  const auto got = gc.to(Device::cpu()).to_vector();
  const auto cpu = cc.to_vector();
  const auto r = naive(a, b);
  for (index_t i = 0; i < m * n; ++i) {
    double want = c0.to_vector()[static_cast<std::size_t>(i)], mag = std::fabs(want);
    for (index_t q = 0; q < batch; ++q) {
      want += r.value[static_cast<std::size_t>(q * m * n + i)];
      mag += r.magnitude[static_cast<std::size_t>(q * m * n + i)];
    }
    const double bound = (double(batch * k) + 4) * unit_roundoff<double>() * mag;
    CHECK(std::fabs(got[static_cast<std::size_t>(i)] - want) <= bound);
    CHECK(std::fabs(got[static_cast<std::size_t>(i)] - cpu[static_cast<std::size_t>(i)]) <= 2 * bound);
  }
}
