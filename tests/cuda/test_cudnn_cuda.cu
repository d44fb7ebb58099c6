// CUDA tests of conv2d, 2-D pooling and softmax on the GPU (cuDNN, and metagrad's own kernels) against the
// CPU implementation on the same data: the three convolution passes over strides, padding, dilation, groups,
// depthwise and 1x1 kernels, batch 1 and 64 and LeNet's two layers; max / average / adaptive pooling forward
// and backward through cuDNN and through metagrad's kernels (switch set_pool_use_cudnn), ceil_mode and
// dilation included; softmax and log_softmax forward and backward through cuDNN and metagrad's kernel
// (set_softmax_use_cudnn); the gradients of a small conv net through grad(); and the device errors. They
// compile and link wherever nvcc and cuDNN are and report "skipped: no CUDA device" without a GPU.
//
// Tolerances, normwise: max |gpu - cpu| <= tol * max |cpu|. A convolution output sums K = C_in/g kH kW
// products (backward data: C_out/g kH kW; backward weight: N OH OW); cuDNN and the CPU sum in different
// orders (and cuDNN may use Winograd or FFT algorithms, whose transforms add a few roundings of the operands'
// magnitude), so each may be off by about K u sum |a b| from the exact value. With inputs in [-1, 1] the sums
// of |a b| stay within a small multiple of max |y| for these sizes; 1e-4 (float, u = 6e-8, K up to 3136)
// and 1e-10 (double) leave room for both orders and the transforms. FMA math (no TF32) is what keeps float
// there. Pooling: a max is exact; metagrad's kernels add in the CPU's order (bit-equal, tested as such);
// cuDNN's average sums at most kH kW terms in its own order: 1e-6 (float), 1e-14 (double).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <metagrad/metagrad.hpp>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_test_support.hpp"

namespace mg = metagrad;
using cuda_test::have_device;
using mg::index_t;
using mg::Shape;
using mg::Tensor;

namespace {

const mg::Device gpu = mg::Device::cuda(0);

template <class T>
Tensor<T, 4> uniform(const Shape<4>& s, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> d(-1, 1);
  Tensor<T, 4> t(s);
  for (index_t i = 0; i < s.numel(); ++i) t.data()[i] = static_cast<T>(d(rng));
  return t;
}

// Distinct values (a shuffled ramp), negative and positive: a max window has one maximum, and a padded
// position read as 0 would beat the negative windows.
template <class T>
Tensor<T, 4> distinct(const Shape<4>& s, unsigned seed) {
  std::vector<index_t> idx(static_cast<std::size_t>(s.numel()));
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = index_t(i);
  std::mt19937 rng(seed);
  std::shuffle(idx.begin(), idx.end(), rng);
  Tensor<T, 4> t(s);
  const double n = double(s.numel());
  for (index_t i = 0; i < s.numel(); ++i) t.data()[i] = static_cast<T>((double(idx[std::size_t(i)]) - 0.7 * n) / n);
  return t;
}

template <class T>
void check_close(const Tensor<T, 4>& got, const Tensor<T, 4>& want, double tol, const std::string& what) {
  REQUIRE(got.device() == gpu);
  REQUIRE(got.shape() == want.shape());
  const auto g = got.to_vector();
  const Tensor<T, 4> w = want.is_contiguous() ? want : want.clone();
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    err = std::fmax(err, std::fabs(double(g[i]) - double(w.data()[i])));
    scale = std::fmax(scale, std::fabs(double(w.data()[i])));
  }
  INFO(what << ": max |gpu - cpu| = " << err << ", max |cpu| = " << scale);
  CHECK(err <= tol * scale);
}

template <class T>
void check_equal(const Tensor<T, 4>& got, const Tensor<T, 4>& want, const std::string& what) {
  REQUIRE(got.device() == gpu);
  REQUIRE(got.shape() == want.shape());
  const auto g = got.to_vector();
  index_t bad = 0;
  for (std::size_t i = 0; i < g.size(); ++i) bad += !(g[i] == want.data()[i]);
  INFO(what << ": " << bad << " of " << g.size() << " elements differ");
  CHECK(bad == 0);
}

template <class T>
constexpr double conv_tol() {
  return std::is_same_v<T, float> ? 1e-4 : 1e-10;
}

struct ConvCase {
  const char* name;
  Shape<4> x, w;
  mg::Conv2dOptions o;
};

const ConvCase conv_cases[] = {
    {"3x3 stride 2 padding 1", {4, 3, 17, 15}, {8, 3, 3, 3}, {.stride = 2, .padding = 1}},
    {"stride (2, 1) padding (0, 2)", {2, 4, 12, 9}, {5, 4, 3, 5}, {.stride = {2, 1}, .padding = {0, 2}}},
    {"dilation 2", {3, 4, 16, 16}, {6, 4, 3, 3}, {.padding = 2, .dilation = 2}},
    {"groups 2", {2, 6, 11, 11}, {8, 3, 3, 3}, {.padding = 1, .groups = 2}},
    {"depthwise", {2, 8, 10, 10}, {8, 1, 3, 3}, {.stride = 2, .padding = 1, .groups = 8}},
    {"1x1", {5, 16, 7, 7}, {12, 16, 1, 1}, {}},
    {"batch 1", {1, 3, 20, 20}, {4, 3, 5, 5}, {.padding = 2}},
    {"batch 64", {64, 4, 9, 9}, {6, 4, 3, 3}, {.stride = 2}},
    {"LeNet conv1", {64, 1, 28, 28}, {6, 1, 5, 5}, {.padding = 2}},
    {"LeNet conv2", {64, 6, 14, 14}, {16, 6, 5, 5}, {}},
};

TEST_CASE_TEMPLATE("cudnn conv2d: forward, backward data and backward weight equal the CPU's", T, float, double) {
  if (!have_device()) return;
  unsigned seed = 1;
  for (const ConvCase& c : conv_cases) {
    INFO(c.name);
    const auto x = uniform<T>(c.x, seed++), w = uniform<T>(c.w, seed++);
    const auto y = mg::conv2d(x, w, c.o);
    const Tensor<T, 4> y_cpu = y;
    const auto g = uniform<T>(y_cpu.shape(), seed++);
    const Tensor<T, 4> dx_cpu = y.backward(std::integral_constant<int, 0>{}, g);
    const Tensor<T, 4> dw_cpu = y.backward(std::integral_constant<int, 1>{}, g);

    const auto xg = x.to(gpu), wg = w.to(gpu), gg = g.to(gpu);
    const auto yg = mg::conv2d(xg, wg, c.o);
    const Tensor<T, 4> y_gpu = yg;
    check_close(y_gpu, y_cpu, conv_tol<T>(), std::string(c.name) + " forward");
    const Tensor<T, 4> dx_gpu = yg.backward(std::integral_constant<int, 0>{}, gg);
    check_close(dx_gpu, dx_cpu, conv_tol<T>(), std::string(c.name) + " backward data");
    const Tensor<T, 4> dw_gpu = yg.backward(std::integral_constant<int, 1>{}, gg);
    check_close(dw_gpu, dw_cpu, conv_tol<T>(), std::string(c.name) + " backward weight");
    // The second run takes the cached plan.
    const Tensor<T, 4> y_again = yg;
    check_equal(y_again, y_gpu.to(mg::Device::cpu()), std::string(c.name) + " forward, cached plan");
  }
}

TEST_CASE("cudnn conv2d: computed and strided operands are evaluated on the device first") {
  if (!have_device()) return;
  const auto x = uniform<float>({3, 4, 10, 10}, 41), w = uniform<float>({4, 5, 3, 3}, 42);
  // relu(x) * 2 is a fused expression; w's permuted view is not contiguous.
  const Tensor<float, 4> want = mg::conv2d(mg::relu(x) * 2.0f, w.permute({1, 0, 2, 3}), {.padding = 1});
  const auto xg = x.to(gpu), wg = w.to(gpu);
  const Tensor<float, 4> got = mg::conv2d(mg::relu(xg) * 2.0f, wg.permute({1, 0, 2, 3}), {.padding = 1});
  check_close(got, want, 1e-4, "computed operands");
}

TEST_CASE("cudnn conv2d: float stays off TF32 unless allowed") {
  if (!have_device()) return;
  // K = 6 * 5 * 5 = 150 products of [-1, 1] values: TF32 rounding (2^-11 per operand) would put the output
  // about 1e-3 away; FMA math keeps it within 1e-5.
  const auto x = uniform<float>({8, 6, 14, 14}, 51), w = uniform<float>({16, 6, 5, 5}, 52);
  const Tensor<double, 4> exact = mg::conv2d(mg::cast<double>(x), mg::cast<double>(w));
  REQUIRE_FALSE(mg::cuda::allow_tf32());
  const Tensor<float, 4> got = mg::conv2d(x.to(gpu), w.to(gpu));
  const Tensor<float, 4> exact_f = mg::cast<float>(exact);
  check_close(got, exact_f, 1e-5, "FMA math");
}

struct PoolCase {
  const char* name;
  mg::PoolKind kind;
  Shape<4> x;
  mg::Size2 k, s, pad, dil, out;
  bool ceil, include_pad;
};

const PoolCase pool_cases[] = {
    {"max 2x2 (cuDNN)", mg::PoolKind::max, {4, 3, 12, 10}, 2, 2, 0, 1, 1, false, true},
    {"max 3x3 stride 2 padding 1 (cuDNN)", mg::PoolKind::max, {2, 5, 11, 9}, 3, 2, 1, 1, 1, false, true},
    {"max dilation 2 (own kernel)", mg::PoolKind::max, {2, 3, 13, 12}, 3, {2, 1}, 1, 2, 1, false, true},
    {"max ceil_mode (own kernel)", mg::PoolKind::max, {2, 3, 9, 11}, 2, 2, 0, 1, 1, true, true},
    {"avg 3x3 stride 2 padding 1 (cuDNN)", mg::PoolKind::avg, {3, 4, 10, 11}, 3, 2, 1, 1, 1, false, true},
    {"avg exclude padding (cuDNN)", mg::PoolKind::avg, {3, 4, 10, 11}, 3, 2, 1, 1, 1, false, false},
    {"avg ceil_mode (own kernel)", mg::PoolKind::avg, {2, 2, 9, 8}, 3, 2, 1, 1, 1, true, true},
    {"avg ceil_mode exclude padding (own kernel)", mg::PoolKind::avg, {2, 2, 9, 8}, 3, 2, 1, 1, 1, true, false},
    {"adaptive 12x8 -> 4x2 (cuDNN)", mg::PoolKind::adaptive_avg, {2, 3, 12, 8}, 1, 1, 0, 1, {4, 2}, false, true},
    {"adaptive 7x5 -> 3x4 (own kernel)", mg::PoolKind::adaptive_avg, {2, 3, 7, 5}, 1, 1, 0, 1, {3, 4}, false, true},
    {"LeNet max 2x2 at batch 64", mg::PoolKind::max, {64, 6, 28, 28}, 2, 2, 0, 1, 1, false, true},
};

template <class T>
void pool_case(const PoolCase& c, unsigned seed) {
  INFO(c.name << (mg::cuda::pool_use_cudnn() ? " with cuDNN" : " with metagrad's kernels only"));
  const auto x = distinct<T>(c.x, seed);
  const auto xg = x.to(gpu);
  auto pool = [&](const auto& in) {
    if (c.kind == mg::PoolKind::max) return mg::eval(mg::max_pool2d(in, c.k, c.s, c.pad, c.dil, c.ceil));
    if (c.kind == mg::PoolKind::avg) return mg::eval(mg::avg_pool2d(in, c.k, c.s, c.pad, c.ceil, c.include_pad));
    return mg::eval(mg::adaptive_avg_pool2d(in, c.out));
  };
  auto backward = [&](const auto& in, const auto& g) {
    if (c.kind == mg::PoolKind::max)
      return mg::eval(mg::max_pool2d(in, c.k, c.s, c.pad, c.dil, c.ceil).backward(std::integral_constant<int, 0>{}, g));
    if (c.kind == mg::PoolKind::avg)
      return mg::eval(
          mg::avg_pool2d(in, c.k, c.s, c.pad, c.ceil, c.include_pad).backward(std::integral_constant<int, 0>{}, g));
    return mg::eval(mg::adaptive_avg_pool2d(in, c.out).backward(std::integral_constant<int, 0>{}, g));
  };
  // A max is exact everywhere; metagrad's own kernels add in the CPU's order; cuDNN's average does not.
  const bool exact = c.kind == mg::PoolKind::max || !mg::cuda::pool_use_cudnn();
  auto compare = [&](const Tensor<T, 4>& got, const Tensor<T, 4>& want, const char* what) {
    if (exact)
      check_equal(got, want, what);
    else
      check_close(got, want, std::is_same_v<T, float> ? 1e-6 : 1e-14, what);
  };
  const Tensor<T, 4> y_cpu = pool(x);
  compare(pool(xg), y_cpu, "forward");
  const auto g = distinct<T>(y_cpu.shape(), seed + 1);
  check_equal(backward(xg, g.to(gpu)), backward(x, g), "backward");
  // Operands computed on the fly: read through their plans on the CPU, evaluated into buffers on the GPU.
  compare(pool(xg * T(2) - T(0.25)), pool(x * T(2) - T(0.25)), "forward of a computed operand");
  check_equal(backward(xg * T(2) - T(0.25), g.to(gpu) * T(3)), backward(x * T(2) - T(0.25), g * T(3)),
              "backward of computed operands");
}

TEST_CASE_TEMPLATE("cuda pooling: forward and backward equal the CPU's, through cuDNN and the own kernels", T, float,
                   double) {
  if (!have_device()) return;
  for (bool use_cudnn : {true, false}) {
    mg::cuda::set_pool_use_cudnn(use_cudnn);
    unsigned seed = 100;
    for (const PoolCase& c : pool_cases) pool_case<T>(c, seed += 2);
  }
  mg::cuda::set_pool_use_cudnn(true);
}

// softmax / log_softmax forward and backward on the GPU against the CPU, over LeNet's logits [64, 10], an
// inner axis ([3, 5, 7] over axis 1), a long axis with a stride ([2, 1000, 3] over axis 1) and long rows
// ([8, 4096]). Normwise tolerances: each output sums n exponentials in another order and takes one exp and one
// log of its own: 1e-5 (float), 1e-12 (double).
template <class T, int R>
void softmax_case(const Shape<R>& s, int axis, unsigned seed) {
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  Tensor<T, R> x(s), g(s);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> d(-4, 4);
  for (index_t i = 0; i < s.numel(); ++i) x.data()[i] = static_cast<T>(d(rng)), g.data()[i] = static_cast<T>(d(rng));
  const Tensor<T, R> xg = x.to(gpu), gg = g.to(gpu);
  auto close = [&](const Tensor<T, R>& got, const Tensor<T, R>& want, const std::string& what) {
    REQUIRE(got.device() == gpu);
    const auto a = got.to_vector(), b = want.to_vector();
    double err = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      err = std::fmax(err, std::fabs(double(a[i]) - double(b[i])));
      scale = std::fmax(scale, std::fabs(double(b[i])));
    }
    INFO(what << " " << mg::to_string(s) << " over axis " << axis << ": max |gpu - cpu| = " << err
              << ", max |cpu| = " << scale);
    CHECK(err <= tol * scale);
  };
  const std::integral_constant<int, 0> dx{};
  close(mg::eval(mg::softmax(xg, axis)), mg::eval(mg::softmax(x, axis)), "softmax");
  close(mg::eval(mg::log_softmax(xg, axis)), mg::eval(mg::log_softmax(x, axis)), "log_softmax");
  close(mg::eval(mg::softmax(xg, axis).backward(dx, gg)), mg::eval(mg::softmax(x, axis).backward(dx, g)),
        "softmax backward");
  close(mg::eval(mg::log_softmax(xg, axis).backward(dx, gg)), mg::eval(mg::log_softmax(x, axis).backward(dx, g)),
        "log_softmax backward");
  close(mg::eval(mg::softmax(xg * T(2) - T(1), axis)), mg::eval(mg::softmax(x * T(2) - T(1), axis)),
        "softmax of a computed operand");
}

TEST_CASE_TEMPLATE("cuda softmax: forward and backward equal the CPU's, through cuDNN and the own kernel", T, float,
                   double) {
  if (!have_device()) return;
  for (bool use_cudnn : {true, false}) {
    CAPTURE(use_cudnn);
    mg::cuda::set_softmax_use_cudnn(use_cudnn);
    softmax_case<T>(Shape<2>{64, 10}, 1, 81);
    softmax_case<T>(Shape<3>{3, 5, 7}, 1, 82);
    softmax_case<T>(Shape<3>{2, 1000, 3}, 1, 83);
    softmax_case<T>(Shape<2>{8, 4096}, -1, 84);
  }
  mg::cuda::set_softmax_use_cudnn(true);
}

TEST_CASE("cuda softmax: NaN and +inf rows are NaN on the GPU too, with and without cuDNN") {
  if (!have_device()) return;
  const double nan = std::nan(""), inf = INFINITY;
  const Tensor<double, 2> x({{1.0, nan, 2.0}, {0.0, inf, 1.0}, {0.0, 0.0, std::log(2.0)}});
  for (bool use_cudnn : {true, false}) {
    CAPTURE(use_cudnn);
    mg::cuda::set_softmax_use_cudnn(use_cudnn);
    const auto v = mg::eval(mg::softmax(x.to(gpu), 1)).to_vector();
    for (int i = 0; i < 6; ++i) CHECK(std::isnan(v[std::size_t(i)]));
    CHECK(v[6] == doctest::Approx(0.25).epsilon(1e-12));
    CHECK(v[8] == doctest::Approx(0.5).epsilon(1e-12));
  }
  mg::cuda::set_softmax_use_cudnn(true);
}

// A small conv net's loss: conv (padding 1) + bias, ReLU, 2x2 max pool, conv with stride 2, average pool.
template <class X, class W1, class B1, class W2>
auto conv_net_loss(const X& x, const W1& w1, const B1& b1, const W2& w2) {
  auto h =
      mg::relu(mg::conv2d(x, w1, {.padding = 1}) + mg::reshape(b1, {index_t{1}, index_t{4}, index_t{1}, index_t{1}}));
  auto p = mg::max_pool2d(h, 2);
  auto q = mg::avg_pool2d(mg::conv2d(p, w2, {.stride = 2, .padding = 1}), 2, 1);
  return mg::mean(mg::square(q));
}

TEST_CASE("cudnn: gradients of a small conv net through grad() on the GPU equal the CPU's") {
  if (!have_device()) return;
  mg::Param<struct cn_w1, double, 4> w1("w1", uniform<double>({4, 3, 3, 3}, 61));
  mg::Param<struct cn_b1, double, 1> b1("b1", mg::randn<double>({4}));
  mg::Param<struct cn_w2, double, 4> w2("w2", uniform<double>({6, 4, 3, 3}, 62));
  mg::Input<struct cn_x, double, 4> x;
  const auto loss = conv_net_loss(x, w1, b1, w2);
  const auto [d1, db, d2] = mg::grad(loss, w1, b1, w2);
  x.bind(distinct<double>({3, 3, 12, 12}, 63));
  const double l_cpu = mg::eval(loss).item();
  const Tensor<double, 4> d1_cpu = d1, d2_cpu = d2;
  const auto db_cpu = mg::eval(db).to_vector();
  w1.set(w1.value().to(gpu));
  b1.set(b1.value().to(gpu));
  w2.set(w2.value().to(gpu));
  x.bind(x.value().to(gpu));
  const double l_gpu = mg::eval(loss).item();
  CHECK(std::fabs(l_gpu - l_cpu) <= 1e-10 * std::fabs(l_cpu));
  const Tensor<double, 4> d1_gpu = d1, d2_gpu = d2;
  check_close(d1_gpu, d1_cpu, 1e-10, "dL/dw1");
  check_close(d2_gpu, d2_cpu, 1e-10, "dL/dw2");
  const Tensor<double, 1> db_gpu = db;
  const auto dbv = db_gpu.to_vector();
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < dbv.size(); ++i) {
    err = std::fmax(err, std::fabs(dbv[i] - db_cpu[i]));
    scale = std::fmax(scale, std::fabs(db_cpu[i]));
  }
  CHECK(err <= 1e-10 * scale);
}

TEST_CASE("cudnn: operands on different devices are a device_error naming the operation") {
  if (!have_device()) return;
  const auto x = uniform<float>({2, 3, 8, 8}, 71), w = uniform<float>({4, 3, 3, 3}, 72);
  auto message = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const mg::device_error& e) {
      return e.what();
    }
    return "no device_error";
  };
  const std::string conv = message([&] { (void)mg::eval(mg::conv2d(x.to(gpu), w)); });
  CHECK(conv.find("conv2d") != std::string::npos);
  CHECK(conv.find("cuda:0") != std::string::npos);
  const auto y = mg::conv2d(x.to(gpu), w.to(gpu));
  const std::string bd = message([&] {
    (void)mg::eval(y.backward(std::integral_constant<int, 0>{}, uniform<float>({2, 4, 6, 6}, 73)));
  });
  CHECK(bd.find("conv2d") != std::string::npos);
  const std::string mp = message([&] {
    (void)mg::eval(
        mg::max_pool2d(x.to(gpu), 2).backward(std::integral_constant<int, 0>{}, uniform<float>({2, 3, 4, 4}, 74)));
  });
  CHECK(mp.find("max_pool2d") != std::string::npos);
}

}  // namespace
