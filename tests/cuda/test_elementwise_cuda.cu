// GPU tests of the CUDA backend's device memory and fused elementwise kernels: every elementwise op against
// the CPU on the same data (float32 relative error <= 1e-6, double <= 1e-13, integer and bool ops exact), the
// vector, scalar-flat and strided paths, 64-bit indexing, Philox draws bit-identical to the CPU's, Programs
// and gradients on the device, tensor copies, and the caching allocator. The allocator's size classes are
// checked everywhere; everything else reports "skipped: no CUDA device" on a machine without a GPU.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <metagrad/metagrad.hpp>
#include <random>
#include <string>
#include <vector>

#include "../expr/elementwise_reference.hpp"
#include "cuda_test_support.hpp"

namespace mg = metagrad;
using elementwise_test::ulp_distance;
using mg::index_t;

namespace {

using cuda_test::have_device;

const mg::Device gpu = mg::Device::cuda(0);

// GPU against CPU: NaN where NaN, equal infinities, else relative error <= rel (results below the smallest
// normal are compared to within one ulp: their relative error means nothing).
template <class T>
void check_close(const std::vector<T>& got, const std::vector<T>& want, double rel, const std::string& what) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if constexpr (std::is_floating_point_v<T>) {
      const T g = got[i], w = want[i];
      if (std::isnan(w) || std::isnan(g) || std::isinf(w) || std::isinf(g)) {
        INFO(what << " at " << i << ": gpu " << g << " cpu " << w);
        CHECK(ulp_distance(g, w) == 0);
        continue;
      }
      const double err = std::fabs(static_cast<double>(g) - static_cast<double>(w));
      const bool ok = err <= rel * std::fabs(static_cast<double>(w)) ||
                      (std::fabs(static_cast<double>(w)) < std::numeric_limits<T>::min() && ulp_distance(g, w) <= 1);
      if (!ok) {
        INFO(what << " at " << i << ": gpu " << elementwise_test::show(g) << " cpu " << elementwise_test::show(w));
        CHECK(ok);
      }
    } else {
      if (got[i] != want[i]) {
        INFO(what << " at " << i);
        CHECK(got[i] == want[i]);
      }
    }
  }
}

template <class T>
mg::Tensor<T, 1> host_tensor(const std::vector<T>& v) {
  return mg::from_vector(v);
}

// Inputs for unary ops: edge values and random values of several magnitudes (trigonometric inputs capped).
template <class T>
std::vector<T> unary_inputs(double cap = 1e300) {
  std::mt19937 rng(42);
  auto v = elementwise_test::edge_values<T>();
  auto r = elementwise_test::random_values<T>(rng, 4096 + 3, cap);
  v.insert(v.end(), r.begin(), r.end());
  return v;
}

template <class T>
void unary_ops_match_cpu(double rel) {
  struct Case {
    const char* name;
    std::function<mg::Tensor<T, 1>(const mg::Tensor<T, 1>&)> f;
    double cap;
  };
#define MG_UNARY_(fn) Case{#fn, [](const mg::Tensor<T, 1>& x) { return mg::eval(mg::fn(x)); }, 1e300}
#define MG_UNARY_CAP_(fn, cap)                                               \
  Case {                                                                     \
#fn, [](const mg::Tensor <T, 1>& x) { return mg::eval(mg::fn(x)); }, cap \
  }
  std::vector<Case> cases;
  if constexpr (std::is_same_v<T, float>) {
    // Every op in float32; float64 runs the same kernels, so a few ops (one per family) cover it and keep the
    // nvcc build of this file short.
    cases = {
        MG_UNARY_(exp),          MG_UNARY_(exp2),         MG_UNARY_(expm1), MG_UNARY_(log),
        MG_UNARY_(log2),         MG_UNARY_(log1p),        MG_UNARY_(sqrt),  MG_UNARY_(rsqrt),
        MG_UNARY_(square),       MG_UNARY_(abs),          MG_UNARY_(sign),  MG_UNARY_CAP_(sin, 1e4),
        MG_UNARY_CAP_(cos, 1e4), MG_UNARY_CAP_(tan, 1e3), MG_UNARY_(asin),  MG_UNARY_(acos),
        MG_UNARY_(atan),         MG_UNARY_(sinh),         MG_UNARY_(cosh),  MG_UNARY_(tanh),
        MG_UNARY_(erf),          MG_UNARY_(sigmoid),      MG_UNARY_(relu),  MG_UNARY_(selu),
        MG_UNARY_(softplus),     MG_UNARY_(silu),         MG_UNARY_(floor), MG_UNARY_(ceil),
        MG_UNARY_(round),        MG_UNARY_(trunc),
    };
  } else {
    cases = {MG_UNARY_(exp), MG_UNARY_(log1p),   MG_UNARY_CAP_(sin, 1e4), MG_UNARY_(tanh),
             MG_UNARY_(erf), MG_UNARY_(sigmoid), MG_UNARY_(floor)};
  }
#undef MG_UNARY_
#undef MG_UNARY_CAP_
  for (const auto& c : cases) {
    const auto x = host_tensor(unary_inputs<T>(c.cap));
    const auto want = c.f(x).to_vector();
    const auto xg = x.to(gpu);
    const auto yg = c.f(xg);
    CHECK(yg.device() == gpu);
    check_close(yg.to_vector(), want, rel, c.name);
  }
}

}  // namespace

TEST_CASE("cuda: the caching allocator's size classes") {
  using A = mg::cuda::CachingAllocator;
  CHECK(A::round_size(1) == 512);
  CHECK(A::round_size(512) == 512);
  CHECK(A::round_size(513) == 1024);
  CHECK(A::round_size(std::size_t(1) << 20) == (std::size_t(1) << 20));
  CHECK(A::round_size((std::size_t(1) << 20) + 1) == (std::size_t(2) << 20));
  CHECK(A::round_size(std::size_t(5) << 20) == (std::size_t(6) << 20));
}

TEST_CASE("cuda: unary float32 and float64 ops match the CPU") {
  if (!have_device()) return;
  unary_ops_match_cpu<float>(1e-6);
  unary_ops_match_cpu<double>(1e-13);
}

TEST_CASE("cuda: binary, comparison and ternary ops match the CPU, flat and broadcast") {
  if (!have_device()) return;
  std::mt19937 rng(3);
  const index_t r = 67, c = 129;
  auto av = elementwise_test::random_values<float>(rng, static_cast<std::size_t>(r * c), 1e6);
  auto bv = elementwise_test::random_values<float>(rng, static_cast<std::size_t>(r * c), 1e6);
  auto rv = elementwise_test::random_values<float>(rng, static_cast<std::size_t>(c), 1e6);
  const auto a = mg::from_vector(av, mg::Shape<2>{r, c}), b = mg::from_vector(bv, mg::Shape<2>{r, c});
  const auto row = mg::from_vector(rv, mg::Shape<1>{c});
  const auto ag = a.to(gpu), bg = b.to(gpu);
  const auto rowg = row.to(gpu);
  auto both = [&](const char* name, auto f) {
    const auto want = mg::eval(f(a, b, row)).to_vector();
    const auto got = mg::eval(f(ag, bg, rowg)).to_vector();
    check_close(got, want, 1e-6, name);
  };
  both("add", [](const auto& x, const auto& y, const auto&) { return x + y; });
  both("sub", [](const auto& x, const auto& y, const auto&) { return x - y; });
  both("mul", [](const auto& x, const auto& y, const auto&) { return x * y; });
  both("div", [](const auto& x, const auto& y, const auto&) { return x / y; });
  both("minimum", [](const auto& x, const auto& y, const auto&) { return mg::minimum(x, y); });
  both("maximum", [](const auto& x, const auto& y, const auto&) { return mg::maximum(x, y); });
  both("fmod", [](const auto& x, const auto& y, const auto&) { return mg::fmod(x, y); });
  both("atan2", [](const auto& x, const auto& y, const auto&) { return mg::atan2(x, y); });
  both("pow", [](const auto& x, const auto& y, const auto&) { return mg::pow(mg::abs(x), y * 1e-5f); });
  both("broadcast row", [](const auto& x, const auto&, const auto& v) { return mg::tanh(x * 1e-3f) - v; });
  both("transposed", [](const auto& x, const auto&, const auto&) { return mg::exp(x.t() * 1e-6f); });
  both("where", [](const auto& x, const auto& y, const auto& v) { return mg::where(x > y, x, v); });
  both("clamp", [](const auto& x, const auto&, const auto&) { return mg::clamp(x, -10.0, 10.0); });
  both("gelu", [](const auto& x, const auto&, const auto&) { return mg::gelu(x * 1e-4f); });
  const auto cmp_want = mg::eval((a > b) && (a != row)).to_vector();
  const auto cmp_got = mg::eval((ag > bg) && (ag != rowg)).to_vector();
  check_close(cmp_got, cmp_want, 0, "compare");
}

TEST_CASE("cuda: integer ops are exact") {
  if (!have_device()) return;
  std::mt19937 rng(5);
  const std::size_t n = 10007;
  auto a32 = elementwise_test::random_ints<std::int32_t>(rng, n, -100000, 100000);
  auto b32 = elementwise_test::random_ints<std::int32_t>(rng, n, 1, 1000);
  auto a64 = elementwise_test::random_ints<std::int64_t>(rng, n, -(std::int64_t(1) << 40), std::int64_t(1) << 40);
  auto b64 = elementwise_test::random_ints<std::int64_t>(rng, n, 1, 1 << 20);
  const auto x32 = host_tensor(a32), y32 = host_tensor(b32);
  const auto x64 = host_tensor(a64), y64 = host_tensor(b64);
  const auto g32 = x32.to(gpu), h32 = y32.to(gpu);
  const auto g64 = x64.to(gpu), h64 = y64.to(gpu);
  check_close(mg::eval(g32 * 3 + h32 / 7 - g32 / h32).to_vector(), mg::eval(x32 * 3 + y32 / 7 - x32 / y32).to_vector(),
              0, "int32");
  check_close(mg::eval(g64 * h64 - g64 / h64).to_vector(), mg::eval(x64 * y64 - x64 / y64).to_vector(), 0, "int64");
  check_close(mg::eval(mg::maximum(g32, -h32)).to_vector(), mg::eval(mg::maximum(x32, -y32)).to_vector(), 0, "max");
  check_close(mg::eval(mg::cast<std::int64_t>(g32) + g64).to_vector(),
              mg::eval(mg::cast<std::int64_t>(x32) + x64).to_vector(), 0, "cast");
  check_close(mg::eval(g32 > 0 || h32 < 10).to_vector(), mg::eval(x32 > 0 || y32 < 10).to_vector(), 0, "bool");
}

TEST_CASE("cuda: vector, element and strided paths agree for every length and alignment") {
  if (!have_device()) return;
  for (index_t n :
       {index_t(1), index_t(3), index_t(4), index_t(5), index_t(17), index_t(1023), index_t((1 << 20) + 3)}) {
    const auto a = mg::randn<float>({n + 1}), b = mg::randn<float>({n + 1});
    const auto ag = a.to(gpu), bg = b.to(gpu);
    // Aligned (vector path), shifted by one element (not 16-byte aligned: element path).
    check_close(mg::eval(ag * bg).to_vector(), mg::eval(a * b).to_vector(), 0, "aligned");
    const auto as = mg::eval(mg::slice(a, 0, 1, n + 1)), bs = mg::eval(mg::slice(b, 0, 1, n + 1));
    check_close(mg::eval(mg::slice(ag, 0, 1, n + 1) + mg::slice(bg, 0, 1, n + 1)).to_vector(),
                mg::eval(as + bs).to_vector(), 0, "unaligned");
    // Written into a strided destination.
    mg::Tensor<float, 2> out = mg::zeros<float>({2, n}, gpu);
    auto col = mg::Tensor<float, 1>::from_storage(out.storage(), 0, mg::Shape<1>{n}, mg::Strides<1>{2});
    col.assign(mg::slice(ag, 0, 0, n) - 1.0f);
    check_close(col.to_vector(), mg::eval(mg::slice(a, 0, 0, n) - 1.0f).to_vector(), 0, "into view");
  }
}

TEST_CASE("cuda: more than 2^31 elements take 64-bit indexing") {
  if (!have_device()) return;
  const index_t n = (index_t(1) << 31) + 17;
  const auto a = mg::full<std::uint8_t>(mg::Shape<1>{n}, std::uint8_t(1), gpu);
  const auto b = mg::full<std::uint8_t>(mg::Shape<1>{n}, std::uint8_t(2), gpu);
  const mg::Tensor<std::uint8_t, 1> c = a + b;
  const auto v = c.to_vector();
  CHECK(std::all_of(v.begin(), v.end(), [](std::uint8_t x) { return x == 3; }));
}

TEST_CASE("cuda: Philox draws are bit-identical to the CPU's (normals within 2 ulp: libm differs)") {
  if (!have_device()) return;
  const index_t n = 100003;
  mg::Generator g1(1234), g2(1234);
  const mg::Tensor<float, 1> u_cpu = mg::uniform<float>({n}, -2.0, 3.0, g1);
  mg::Tensor<float, 1> u_gpu = mg::zeros<float>({n}, gpu);
  u_gpu.assign(mg::uniform<float>({n}, -2.0, 3.0, g2));
  check_close(u_gpu.to_vector(), u_cpu.to_vector(), 0, "uniform");
  const mg::Tensor<double, 1> d_cpu = mg::uniform<double>({n}, 0.0, 1.0, g1);
  mg::Tensor<double, 1> d_gpu = mg::zeros<double>({n}, gpu);
  d_gpu.assign(mg::uniform<double>({n}, 0.0, 1.0, g2));
  check_close(d_gpu.to_vector(), d_cpu.to_vector(), 0, "uniform double");
  const mg::Tensor<float, 1> z_cpu = mg::normal<float>({n}, 0.0, 1.0, g1);
  mg::Tensor<float, 1> z_gpu = mg::zeros<float>({n}, gpu);
  z_gpu.assign(mg::normal<float>({n}, 0.0, 1.0, g2));
  const auto zc = z_cpu.to_vector(), zg = z_gpu.to_vector();
  for (std::size_t i = 0; i < zc.size(); ++i) REQUIRE(ulp_distance(zc[i], zg[i]) <= 2);
  // Dropout masks come from the uniform draws: identical.
  const auto x = mg::ones<float>({n});
  const auto xg = x.to(gpu);
  mg::DropoutKey key1(99, 3), key2(99, 3);
  const auto m_cpu = mg::eval(mg::dropout(x, 0.3, key1)).to_vector();
  const auto m_gpu = mg::eval(mg::dropout(xg, 0.3, key2)).to_vector();
  check_close(m_gpu, m_cpu, 0, "dropout");
}

TEST_CASE("cuda: tensors copy between host and device, contiguous or not, large or small") {
  if (!have_device()) return;
  for (index_t n : {index_t(1), index_t(1000), index_t((5 << 20) + 3)}) {  // the last goes through pinned staging
    const auto a = mg::randn<float>({n});
    const auto g = a.to(gpu);
    CHECK(g.device() == gpu);
    CHECK(g.to_vector() == a.to_vector());
    CHECK(g.to(mg::Device::cpu()).to_vector() == a.to_vector());
  }
  const auto m = mg::randn<double>({33, 65});
  const auto view = mg::Tensor<double, 2>::from_storage(m.storage(), 0, mg::Shape<2>{65, 33}, mg::Strides<2>{1, 65});
  const auto mt = view.to(gpu);  // a non-contiguous source is made contiguous first
  CHECK(mt.is_contiguous());
  CHECK(mt.to_vector() == mg::eval(m.t()).to_vector());
  CHECK(mg::zeros<float>({7}, gpu).to_vector() == std::vector<float>(7, 0.0f));
  CHECK(mg::full<float>(mg::Shape<1>{5}, 2.5f, gpu).to_vector() == std::vector<float>(5, 2.5f));
  CHECK(mg::eval(mg::sum(mg::ones<float>({10}, gpu))).item() == 10.0f);
  const std::string s = mg::to_string(mg::ones<float>({2}, gpu));
  CHECK(s.find("device=cuda:0") != std::string::npos);
  // A host tensor assigned a device expression (and the reverse) is evaluated there and copied across.
  mg::Tensor<float, 1> host = mg::zeros<float>({5});
  const auto dg = mg::ones<float>({5}, gpu);
  host.assign(dg * 3.0f);
  CHECK(host.to_vector() == std::vector<float>(5, 3.0f));
  CHECK_THROWS_AS((void)mg::eval(dg + mg::ones<float>({5})), mg::device_error);
}

TEST_CASE("cuda: a Program runs on the device of its bound tensors and allocates nothing in steady state") {
  if (!have_device()) return;
  mg::Input<struct xin_cuda, float, 2> x;
  const auto prog_expr = mg::exp(x * 0.5f) + mg::sum(x * x, {1}, mg::keepdims);
  auto prog = mg::compile(prog_expr, mg::mean(mg::tanh(x)));
  const auto h = mg::randn<float>({128, 257});
  const auto d = h.to(gpu);
  const auto& [want_a, want_b] = prog.run(x.bind(h));
  const auto wa = want_a.to_vector();
  const float wb = want_b.item();
  const auto& [got_a, got_b] = prog.run(x.bind(d));
  CHECK(got_a.device() == gpu);
  check_close(got_a.to_vector(), wa, 1e-5, "program");
  CHECK(std::fabs(got_b.item() - wb) <= 1e-5f * std::fabs(wb) + 1e-7f);
  mg::cuda::synchronize(0);
  const auto before = mg::cuda::memory_stats(0);
  for (int i = 0; i < 10; ++i) (void)prog.run(x.bind(d));
  mg::cuda::synchronize(0);
  const auto after = mg::cuda::memory_stats(0);
  CHECK(after.device_mallocs == before.device_mallocs);  // every buffer came from the cache
  CHECK(after.current_bytes == before.current_bytes);
}

TEST_CASE("cuda: gradients on the device equal the CPU's") {
  // Evaluated expression by expression here; tests/cuda/test_graph_cuda.cu compiles gradients into Programs.
  if (!have_device()) return;
  mg::Param<struct w_cuda, double, 2> w("w", mg::randn<double>({16, 33}));
  mg::Param<struct b_cuda, double, 1> b("b", mg::randn<double>({33}));
  mg::Input<struct x_cuda, double, 2> x;
  const auto loss = mg::mean(mg::square(mg::tanh(x * w + b)) + mg::sigmoid(x) * 0.5);
  const auto [dw, db] = mg::grad(loss, w, b);
  x.bind(mg::randn<double>({16, 33}));
  const double lc = mg::eval(loss).item();
  const auto gw = mg::eval(dw).to_vector(), gb = mg::eval(db).to_vector();
  w.set(w.value().to(gpu));
  b.set(b.value().to(gpu));
  x.bind(x.value().to(gpu));
  const mg::Tensor<double, 2> gw_gpu = dw;
  const mg::Tensor<double, 1> gb_gpu = db;
  CHECK(gw_gpu.device() == gpu);
  CHECK(std::fabs(mg::eval(loss).item() - lc) <= 1e-12 * std::fabs(lc));
  check_close(gw_gpu.to_vector(), gw, 1e-11, "dL/dw");
  check_close(gb_gpu.to_vector(), gb, 1e-11, "dL/db");
}

TEST_CASE("cuda: the caching allocator reuses freed blocks and reports its statistics") {
  if (!have_device()) return;
  mg::cuda::synchronize(0);
  mg::cuda::empty_cache();
  const auto s0 = mg::cuda::memory_stats(0);
  { const auto t = mg::zeros<float>({1 << 20}, gpu); }  // 4 MiB, freed at once
  const auto s1 = mg::cuda::memory_stats(0);
  CHECK(s1.device_mallocs == s0.device_mallocs + 1);
  CHECK(s1.current_bytes == s0.current_bytes);
  CHECK(s1.reserved_bytes >= s0.reserved_bytes + (4 << 20));
  CHECK(s1.peak_bytes >= s0.current_bytes + (4 << 20));
  { const auto t = mg::zeros<float>({1 << 20}, gpu); }  // same size: from the cache
  const auto s2 = mg::cuda::memory_stats(0);
  CHECK(s2.device_mallocs == s1.device_mallocs);
  mg::cuda::empty_cache();
  CHECK(mg::cuda::memory_stats(0).reserved_bytes <= s0.reserved_bytes);
  CHECK_THROWS_AS((void)mg::zeros<float>({4}, mg::Device::cuda(mg::cuda::device_count())), mg::device_error);
}
