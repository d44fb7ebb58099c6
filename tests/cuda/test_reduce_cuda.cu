// CUDA tests of reductions (backend/cuda/reduce.hpp): every reducer over all axes (more than 2^20
// elements), over leading, trailing, middle and several axes, with keepdims, over transposed, permuted, sliced
// and broadcast inputs, with fused elementwise inputs, for float, double, int32, int64 and bool, on long
// segments cut into parts and on one-element segments, against the CPU's results for the same data. They
// compile and link wherever nvcc is and report "skipped: no CUDA device" when no GPU is present.
//
// Tolerances. Integer, bool, index (argmax/argmin), max, min, all and any results are exact: they do not
// depend on the order of evaluation. Sums, means and norms accumulate in double on both devices, in different
// orders; the difference of two such sums is below about log2(n) u sum|x| (u = 2^-53) for the GPU's trees plus
// sqrt(n) u sum|x| typical of the CPU's lanes; the tests allow 1e-12 sum|x| (thousands of u), plus 2^-22
// relative (two float ulps) for float results that round the double. Variances (Welford/Chan in double) get
// 1e-10 relative. logsumexp of float accumulates in float (rescaled sums of exp): 1e-3 absolute, the
// random-walk error of sequential float sums of 2^21 terms (the CPU's lanes) with a wide margin.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <metagrad/metagrad.hpp>
#include <type_traits>
#include <vector>

#include "cuda_test_support.hpp"

using namespace metagrad;
namespace mgc = metagrad::cuda;

namespace {

using cuda_test::have_device;

const Device gpu = Device::cuda(0);

struct Tol {
  double rel = 0, abs = 0;
};
constexpr Tol exact{};

// got (a device tensor) against want (the CPU's), element by element: |got - want| <= rel |want| + abs.
template <class V, int R>
void expect_close(const Tensor<V, R>& got, const Tensor<V, R>& want, Tol tol) {
  REQUIRE(got.device().is_cuda());
  REQUIRE(got.shape() == want.shape());
  const std::vector<V> g = got.to_vector(), w = want.to_vector();
  REQUIRE(g.size() == w.size());
  for (std::size_t i = 0; i < g.size(); ++i) {
    INFO("element ", i, " of shape ", to_string(want.shape()), ": got ", +g[i], ", want ", +w[i]);
    if constexpr (std::is_floating_point_v<V>) {
      if (std::isnan(w[i])) {
        REQUIRE(std::isnan(g[i]));
      } else if (std::isinf(w[i])) {
        REQUIRE(g[i] == w[i]);
      } else {
        REQUIRE(std::fabs(static_cast<double>(g[i]) - static_cast<double>(w[i])) <=
                tol.rel * std::fabs(static_cast<double>(w[i])) + tol.abs);
      }
    } else {
      REQUIRE(g[i] == w[i]);
    }
  }
}

// f(inputs on the GPU), evaluated there, against f(inputs) on the CPU.
template <class F, class... H>
void gpu_vs_cpu(const char* what, F f, Tol tol, const H&... host) {
  INFO(what);
  const auto want = f(host...).eval();
  const auto got = f(host.to(gpu)...).eval();
  expect_close(got, want, tol);
}

// Tolerance of sums of x: 1e-12 sum|x| plus two ulps of the result type.
template <class T, int R>
Tol sum_tol(const Tensor<T, R>& x) {
  const double mag = sum(abs(cast<double>(x))).item();
  return {std::is_same_v<T, float> ? 0x1p-22 : 1e-14, 1e-12 * mag + 1e-300};
}

// Every floating reducer over `axes` of x (given as a lambda that applies them).
template <class T, int R, class Axes>
void all_float_reducers(const Tensor<T, R>& x, Axes ax, const char* where) {
  INFO(where);
  const Tol st = sum_tol(x);
  const Tol var_tol{1e-10, 1e-12};
  gpu_vs_cpu(
      "sum", [&](const auto& v) { return ax.sum(v); }, st, x);
  gpu_vs_cpu(
      "mean", [&](const auto& v) { return ax.mean(v); }, st, x);
  gpu_vs_cpu(
      "max", [&](const auto& v) { return ax.max(v); }, exact, x);
  gpu_vs_cpu(
      "min", [&](const auto& v) { return ax.min(v); }, exact, x);
  gpu_vs_cpu(
      "argmax", [&](const auto& v) { return ax.argmax(v); }, exact, x);
  gpu_vs_cpu(
      "argmin", [&](const auto& v) { return ax.argmin(v); }, exact, x);
  gpu_vs_cpu(
      "all", [&](const auto& v) { return ax.all(v); }, exact, x);
  gpu_vs_cpu(
      "any", [&](const auto& v) { return ax.any(v > T(1)); }, exact, x);
  gpu_vs_cpu(
      "var", [&](const auto& v) { return ax.var(v); }, var_tol, x);
  gpu_vs_cpu(
      "stddev", [&](const auto& v) { return ax.stddev(v); }, var_tol, x);
  gpu_vs_cpu(
      "norm 2", [&](const auto& v) { return ax.norm(v, 2.0); }, st, x);
  gpu_vs_cpu(
      "norm 1", [&](const auto& v) { return ax.norm(v, 1.0); }, st, x);
  gpu_vs_cpu(
      "norm inf", [&](const auto& v) { return ax.norm(v, INFINITY); }, exact, x);
  gpu_vs_cpu(
      "norm 0", [&](const auto& v) { return ax.norm(v, 0.0); }, exact, x);
  gpu_vs_cpu(
      "norm 3", [&](const auto& v) { return ax.norm(v, 3.0); }, {1e-6, 1e-30}, x);
  gpu_vs_cpu(
      "prod", [&](const auto& v) { return ax.prod(v * T(0.001) + T(1)); }, {1e-5, 0}, x);
  gpu_vs_cpu(
      "logsumexp", [&](const auto& v) { return ax.logsumexp(v); },
      {std::is_same_v<T, float> ? 1e-5 : 1e-12, std::is_same_v<T, float> ? 1e-3 : 1e-12}, x);
}

// The reductions over all axes, as the member functions all_float_reducers calls.
struct AllAxes {
  template <class V>
  auto sum(const V& v) const {
    return metagrad::sum(v);
  }
  template <class V>
  auto mean(const V& v) const {
    return metagrad::mean(v);
  }
  template <class V>
  auto max(const V& v) const {
    return metagrad::max(v);
  }
  template <class V>
  auto min(const V& v) const {
    return metagrad::min(v);
  }
  template <class V>
  auto argmax(const V& v) const {
    return metagrad::argmax(v);
  }
  template <class V>
  auto argmin(const V& v) const {
    return metagrad::argmin(v);
  }
  template <class V>
  auto all(const V& v) const {
    return metagrad::all(v);
  }
  template <class V>
  auto any(const V& v) const {
    return metagrad::any(v);
  }
  template <class V>
  auto var(const V& v) const {
    return metagrad::var(v, 1);
  }
  template <class V>
  auto stddev(const V& v) const {
    return metagrad::stddev(v);
  }
  template <class V>
  auto norm(const V& v, double p) const {
    return metagrad::norm(v, p);
  }
  template <class V>
  auto prod(const V& v) const {
    return metagrad::prod(v);
  }
  template <class V>
  auto logsumexp(const V& v) const {
    return metagrad::logsumexp(v);
  }
};

// The reductions over the K listed axes, with or without keepdims.
template <int K, bool Keep>
struct SomeAxes {
  int axes[K];
#define METAGRAD_TEST_RED_(f)                          \
  template <class V>                                   \
  auto f(const V& v) const {                           \
    if constexpr (Keep)                                \
      return metagrad::f(v, axes, metagrad::keepdims); \
    else                                               \
      return metagrad::f(v, axes);                     \
  }
  METAGRAD_TEST_RED_(sum)
  METAGRAD_TEST_RED_(mean)
  METAGRAD_TEST_RED_(max)
  METAGRAD_TEST_RED_(min)
  METAGRAD_TEST_RED_(argmax)
  METAGRAD_TEST_RED_(argmin)
  METAGRAD_TEST_RED_(all)
  METAGRAD_TEST_RED_(any)
  METAGRAD_TEST_RED_(prod)
  METAGRAD_TEST_RED_(logsumexp)
#undef METAGRAD_TEST_RED_
  template <class V>
  auto var(const V& v) const {
    if constexpr (Keep)
      return metagrad::var(v, axes, metagrad::keepdims, 1);
    else
      return metagrad::var(v, axes, 1);
  }
  template <class V>
  auto stddev(const V& v) const {
    if constexpr (Keep)
      return metagrad::stddev(v, axes, metagrad::keepdims);
    else
      return metagrad::stddev(v, axes);
  }
  template <class V>
  auto norm(const V& v, double p) const {
    if constexpr (Keep)
      return metagrad::norm(v, axes, metagrad::keepdims, p);
    else
      return metagrad::norm(v, axes, p);
  }
};

}  // namespace

TEST_CASE("cuda reduce: every reducer over all axes of more than 2^20 elements (warps over parts, merged in a block)") {
  if (!have_device()) return;
  Generator gen(11);
  const index_t n = (index_t(1) << 21) + 37;  // not a multiple of the vector width: a short last item
  Tensor<float, 1> f = randn<float>({n}, gen);
  Tensor<double, 1> d = randn<double>({n}, gen);
  all_float_reducers(f, AllAxes{}, "float, 2^21 + 37 elements");
  all_float_reducers(d, AllAxes{}, "double, 2^21 + 37 elements");
  // A transposed input takes the multi-index path; a broadcast one reads its operand many times.
  Tensor<float, 2> m = randn<float>({1500, 1001}, gen);
  Tensor<float, 1> r = randn<float>({1500}, gen);
  all_float_reducers(m, AllAxes{}, "float matrix");
  gpu_vs_cpu(
      "sum of a transpose", [](const auto& v) { return sum(v.t()); }, sum_tol(m), m);
  gpu_vs_cpu(
      "argmax of a transpose", [](const auto& v) { return argmax(v.t()); }, exact, m);
  gpu_vs_cpu(
      "sum of a broadcast", [](const auto& v, const auto& w) { return sum(v.t() * w); }, {0x1p-22, 1e-6}, m, r);
}

TEST_CASE("cuda reduce: per-axis reductions (leading, trailing, middle, several, keepdims)") {
  if (!have_device()) return;
  Generator gen(12);
  Tensor<float, 3> x = randn<float>({64, 257, 33}, gen);
  Tensor<double, 3> y = randn<double>({31, 65, 130}, gen);
  all_float_reducers(x, SomeAxes<1, false>{{0}}, "float, leading axis");
  all_float_reducers(x, SomeAxes<1, false>{{2}}, "float, trailing axis");
  all_float_reducers(x, SomeAxes<1, false>{{1}}, "float, middle axis");
  all_float_reducers(x, SomeAxes<2, false>{{0, 2}}, "float, axes 0 and 2");
  all_float_reducers(x, SomeAxes<2, true>{{1, 2}}, "float, axes 1 and 2, keepdims");
  all_float_reducers(x, SomeAxes<1, true>{{-3}}, "float, axis -3, keepdims");
  all_float_reducers(y, SomeAxes<1, false>{{2}}, "double, trailing axis");
  all_float_reducers(y, SomeAxes<2, true>{{0, 1}}, "double, leading axes, keepdims");
  all_float_reducers(y, SomeAxes<1, false>{{1}}, "double, middle axis");
  Tensor<float, 4> z = randn<float>({6, 7, 8, 9}, gen);
  all_float_reducers(z, SomeAxes<2, true>{{0, 2}}, "rank 4, axes 0 and 2, keepdims");
  all_float_reducers(z, SomeAxes<3, false>{{1, 2, 3}}, "rank 4, axes 1-3");
}

TEST_CASE("cuda reduce: non-contiguous inputs (transpose, permute, slice, broadcast)") {
  if (!have_device()) return;
  Generator gen(13);
  Tensor<float, 2> m = randn<float>({300, 517}, gen);
  Tensor<float, 3> x = randn<float>({40, 50, 60}, gen);
  Tensor<float, 1> b = randn<float>({60}, gen);
  const Tol st = sum_tol(x);
  for (int axis = 0; axis < 2; ++axis) {
    INFO("axis ", axis);
    gpu_vs_cpu(
        "sum of m.t()", [&](const auto& v) { return sum(v.t(), axis); }, sum_tol(m), m);
    gpu_vs_cpu(
        "argmax of m.t()", [&](const auto& v) { return argmax(v.t(), axis); }, exact, m);
    gpu_vs_cpu(
        "var of m.t()", [&](const auto& v) { return var(v.t(), {axis}); }, {1e-10, 1e-12}, m);
    gpu_vs_cpu(
        "max of a slice", [&](const auto& v) { return max(slice(v, 1, 3, 500, 3), axis); }, exact, m);
  }
  gpu_vs_cpu(
      "sum of a permute over 0, 1",
      [](const auto& v) {
        return sum(permute(v, {2, 0, 1}), {0, 1});
      },
      st, x);
  gpu_vs_cpu(
      "argmin of a permute over 1",
      [](const auto& v) {
        return argmin(permute(v, {1, 2, 0}), 1);
      },
      exact, x);
  gpu_vs_cpu(
      "mean of a permute over 2, keepdims",
      [](const auto& v) {
        return mean(permute(v, {2, 1, 0}), {2}, keepdims);
      },
      st, x);
  gpu_vs_cpu(
      "sum of x + broadcast b over 0, 2",
      [](const auto& v, const auto& w) {
        return sum(v + w, {0, 2});
      },
      {0x1p-22, 1e-5}, x, b);
  gpu_vs_cpu(
      "argmax of x * broadcast b over 1", [](const auto& v, const auto& w) { return argmax(v * w, 1); }, exact, x, b);
}

TEST_CASE("cuda reduce: fused elementwise inputs") {
  if (!have_device()) return;
  Generator gen(14);
  Tensor<float, 2> a = randn<float>({513, 1025}, gen), b = randn<float>({513, 1025}, gen);
  const Tol st{0x1p-22, 1e-4};
  for (int axis = 0; axis < 2; ++axis) {
    INFO("axis ", axis);
    gpu_vs_cpu(
        "sum(exp(a) * b)", [&](const auto& u, const auto& v) { return sum(exp(u) * v, axis); }, st, a, b);
    gpu_vs_cpu(
        "max(relu(a) - b)", [&](const auto& u, const auto& v) { return max(relu(u) - v, axis); }, exact, a, b);
    gpu_vs_cpu(
        "argmax(where(a > b, a, -b))", [&](const auto& u, const auto& v) { return argmax(where(u > v, u, -v), axis); },
        exact, a, b);
    gpu_vs_cpu(
        "mean(square(a - b))", [&](const auto& u, const auto& v) { return mean(square(u - v), axis); }, st, a, b);
  }
  gpu_vs_cpu(
      "sum(exp(a) * b) over all", [](const auto& u, const auto& v) { return sum(exp(u) * v); }, st, a, b);
  gpu_vs_cpu(
      "any(a > 4)", [](const auto& u) { return any(u > 4.0f); }, exact, a);
  gpu_vs_cpu(
      "softmax denominators", [](const auto& u) { return sum(exp(u - max(u, {1}, keepdims)), 1); }, st, a);
}

TEST_CASE("cuda reduce: int32, int64 and bool") {
  if (!have_device()) return;
  Generator gen(15);
  Tensor<std::int32_t, 2> k = randint<std::int32_t>(-100000, 100000, {1000, 1500}, gen);
  Tensor<std::int64_t, 2> q = randint<std::int64_t>(-3, 4, {700, 300}, gen);
  Tensor<bool, 2> z = (randn<float>({1000, 1500}, gen) > 2.5f).eval();
  for (int axis = 0; axis < 2; ++axis) {
    INFO("axis ", axis);
    gpu_vs_cpu(
        "int32 sum", [&](const auto& v) { return sum(v, axis); }, exact, k);
    gpu_vs_cpu(
        "int32 max", [&](const auto& v) { return max(v, axis); }, exact, k);
    gpu_vs_cpu(
        "int32 argmin", [&](const auto& v) { return argmin(v, axis); }, exact, k);
    gpu_vs_cpu(
        "int64 prod (wraps)", [&](const auto& v) { return prod(v, axis); }, exact, q);
    gpu_vs_cpu(
        "int64 argmax (ties)", [&](const auto& v) { return argmax(v, axis); }, exact, q);
    gpu_vs_cpu(
        "int64 mean", [&](const auto& v) { return mean(v, axis); }, {1e-14, 1e-12}, q);
    gpu_vs_cpu(
        "bool any", [&](const auto& v) { return any(v, axis); }, exact, z);
    gpu_vs_cpu(
        "bool all", [&](const auto& v) { return all(!v, axis); }, exact, z);
    gpu_vs_cpu(
        "bool sum", [&](const auto& v) { return sum(v, axis); }, exact, z);
    gpu_vs_cpu(
        "bool argmax", [&](const auto& v) { return argmax(v, axis); }, exact, z);
  }
  gpu_vs_cpu(
      "int32 sum over all", [](const auto& v) { return sum(v); }, exact, k);
  gpu_vs_cpu(
      "int64 max over all", [](const auto& v) { return max(v); }, exact, q);
  gpu_vs_cpu(
      "bool any over all", [](const auto& v) { return any(v); }, exact, z);
  gpu_vs_cpu(
      "bool argmax over all", [](const auto& v) { return argmax(v); }, exact, z);
}

TEST_CASE("cuda reduce: few long segments are cut into parts; many short ones take a thread or a warp each") {
  if (!have_device()) return;
  Generator gen(16);
  Tensor<float, 2> wide = randn<float>({3, index_t(1) << 20}, gen);    // warp per segment, merged parts
  Tensor<float, 2> tall = randn<float>({index_t(1) << 20, 3}, gen);    // thread per segment, merged parts
  Tensor<float, 2> narrow = randn<float>({index_t(1) << 20, 4}, gen);  // 4-position segments
  Tensor<double, 2> mid = randn<double>({index_t(1) << 15, 100}, gen);
  gpu_vs_cpu(
      "wide sum", [](const auto& v) { return sum(v, 1); }, sum_tol(wide), wide);
  gpu_vs_cpu(
      "wide argmax", [](const auto& v) { return argmax(v, 1); }, exact, wide);
  gpu_vs_cpu(
      "wide var", [](const auto& v) { return var(v, {1}); }, {1e-10, 1e-12}, wide);
  gpu_vs_cpu(
      "tall sum", [](const auto& v) { return sum(v, 0); }, sum_tol(tall), tall);
  gpu_vs_cpu(
      "tall argmin", [](const auto& v) { return argmin(v, 0); }, exact, tall);
  gpu_vs_cpu(
      "tall logsumexp", [](const auto& v) { return logsumexp(v, 0); }, {1e-5, 1e-3}, tall);
  gpu_vs_cpu(
      "narrow sum", [](const auto& v) { return sum(v, 1); }, sum_tol(narrow), narrow);
  gpu_vs_cpu(
      "narrow argmax", [](const auto& v) { return argmax(v, 1); }, exact, narrow);
  gpu_vs_cpu(
      "narrow leading sum", [](const auto& v) { return sum(v, 0); }, sum_tol(narrow), narrow);
  gpu_vs_cpu(
      "mid sum", [](const auto& v) { return sum(v, 1); }, sum_tol(mid), mid);
  gpu_vs_cpu(
      "mid max", [](const auto& v) { return max(v, 1); }, exact, mid);
  gpu_vs_cpu(
      "mid norm", [](const auto& v) { return norm(v, {1}); }, sum_tol(mid), mid);
}

TEST_CASE("cuda reduce: tiny inputs, one-element segments, empty reduced axes") {
  if (!have_device()) return;
  Generator gen(17);
  Tensor<float, 1> one = randn<float>({1}, gen);
  all_float_reducers(one, AllAxes{}, "one element");
  Tensor<float, 2> col = randn<float>({1000, 1}, gen);
  all_float_reducers(col, SomeAxes<1, false>{{1}}, "one-element segments");
  all_float_reducers(col, SomeAxes<1, true>{{0}}, "one segment of 1000");
  const Tensor<float, 0> s = sum(one);
  gpu_vs_cpu(
      "rank 0", [](const auto& v) { return sum(v); }, exact, s);
  Tensor<float, 2> empty({5, 0});
  gpu_vs_cpu(
      "sum over an empty axis", [](const auto& v) { return sum(v, 1); }, exact, empty);
  gpu_vs_cpu(
      "mean over an empty axis", [](const auto& v) { return mean(v, 1); }, exact, empty);
  gpu_vs_cpu(
      "all over an empty axis", [](const auto& v) { return all(v, 1); }, exact, empty);
  gpu_vs_cpu(
      "sum of nothing", [](const auto& v) { return sum(v); }, exact, empty);
  gpu_vs_cpu(
      "no outputs", [](const auto& v) { return sum(v, 0); }, exact, empty);
}

TEST_CASE("cuda reduce: argmax/argmin keep the first of ties and NaNs; results repeat bit for bit") {
  if (!have_device()) return;
  Generator gen(18);
  Tensor<float, 2> t = cast<float>(randint<std::int32_t>(0, 4, {2000, 1100}, gen)).eval();
  for (int axis = 0; axis < 2; ++axis) {
    gpu_vs_cpu(
        "argmax of ties", [&](const auto& v) { return argmax(v, axis); }, exact, t);
    gpu_vs_cpu(
        "argmin of ties", [&](const auto& v) { return argmin(v, axis); }, exact, t);
  }
  gpu_vs_cpu(
      "argmax of ties over all", [](const auto& v) { return argmax(v); }, exact, t);
  float* p = t.data();
  p[3 * 1100 + 5] = NAN;
  p[1500 * 1100 + 1000] = NAN;
  p[1700 * 1100 + 5] = NAN;
  for (int axis = 0; axis < 2; ++axis) {
    gpu_vs_cpu(
        "argmax with NaN", [&](const auto& v) { return argmax(v, axis); }, exact, t);
    gpu_vs_cpu(
        "max with NaN", [&](const auto& v) { return max(v, axis); }, exact, t);
    gpu_vs_cpu(
        "min with NaN", [&](const auto& v) { return min(v, axis); }, exact, t);
  }
  gpu_vs_cpu(
      "argmin with NaN over all", [](const auto& v) { return argmin(v); }, exact, t);
  Tensor<float, 2> x = randn<float>({300, 20000}, gen);
  const auto xg = x.to(gpu);
  for (int i = 0; i < 2; ++i) {
    const auto a = sum(xg, 1).eval().to_vector(), b = sum(xg, 1).eval().to_vector();
    CHECK(a == b);
    CHECK(sum(xg).eval().item() == sum(xg).eval().item());
  }
}

TEST_CASE("cuda reduce: results go where out_strides say (a transposed destination)") {
  if (!have_device()) return;
  Generator gen(19);
  Tensor<float, 3> x = randn<float>({7, 5, 9}, gen);
  const auto xg = x.to(gpu);
  // Reduce axis 1 of (7, 5, 9) into a (9, 7) buffer read as its transpose: out(i, k) at k * 7 + i.
  Tensor<double, 1> dst = zeros<double>({63}, gpu);
  const Strides<3> ost{1, 0, 7};
  mgc::run_reduction(ops::SumReducer{}, lower_expr(xg, xg.shape()), xg.shape(), Array<bool, 3>{{false, true, false}},
                     dst.data(), ost, 0);
  mgc::synchronize(0);
  const auto got = dst.to_vector();
  for (index_t i = 0; i < 7; ++i)
    for (index_t k = 0; k < 9; ++k) {
      double want = 0;
      for (index_t j = 0; j < 5; ++j) want += x(i, j, k);
      // The sum of floats is a float (accumulated in double), then converted to the buffer's double.
      REQUIRE(got[static_cast<std::size_t>(k * 7 + i)] == doctest::Approx(static_cast<float>(want)).epsilon(1e-6));
    }
}
