// CUDA tests of batch normalisation on the GPU (cuDNN's cudnnBatchNormalizationForwardTraining / Backward, and
// metagrad's own kernels, switch set_batch_norm_use_cudnn) against the CPU on the same data: y, the batch mean
// and the unbiased variance (the running-statistic inputs), and dx, dgamma, dbeta, for [N, C], [N, C, L] and
// [N, C, H, W] input in float and double; and channels of one value (where cuDNN is not asked). They compile and
// link wherever nvcc and cuDNN are and report "skipped: no CUDA device" without a GPU.
//
// Tolerance, normwise: max |gpu - cpu| <= tol * max |cpu|. The statistics are sums of n * inner values in a
// different order (cuDNN's, or a block's tree against the CPU's sequential double sums), and y and dx are a few
// operations on them: 1e-4 in float, 1e-10 in double.
#include <doctest/doctest.h>

#include <cmath>
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

template <class T, int R>
Tensor<T, R> uniform(const Shape<R>& s, unsigned seed, double lo = -1, double hi = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  Tensor<T, R> t(s);
  for (index_t i = 0; i < s.numel(); ++i) t.data()[i] = static_cast<T>(d(rng));
  return t;
}

template <class T>
constexpr double tol() {
  return std::is_same_v<T, float> ? 1e-4 : 1e-10;
}

template <class T, int R>
void check_close(const Tensor<T, R>& got, const Tensor<T, R>& want, const std::string& what) {
  REQUIRE(got.device() == gpu);
  REQUIRE(got.shape() == want.shape());
  const auto a = got.to_vector(), b = want.to_vector();
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    err = std::fmax(err, std::fabs(double(a[i]) - double(b[i])));
    scale = std::fmax(scale, std::fabs(double(b[i])));
  }
  INFO(what << " " << mg::to_string(want.shape()) << ": max |gpu - cpu| = " << err << ", max |cpu| = " << scale);
  CHECK(err <= tol<T>() * scale);
}

// y, the statistics, and the three gradients of sum(y * w), on the GPU and on the CPU.
template <class T, int R>
void batch_norm_case(const Shape<R>& s, unsigned seed) {
  const index_t c = s[1];
  // An offset mean keeps the variance computation honest (a sum of squares would cancel).
  const auto x = uniform<T, R>(s, seed, 2, 4);
  const auto w = uniform<T, R>(s, seed + 1);
  const auto g = uniform<T, 1>(Shape<1>{{c}}, seed + 2, 0.5, 2), b = uniform<T, 1>(Shape<1>{{c}}, seed + 3);
  mg::Input<struct bn_cuda_x, T, R> xi("x");
  mg::Param<struct bn_cuda_g, T, 1> gamma("gamma", g);
  mg::Param<struct bn_cuda_b, T, 1> beta("beta", b);
  auto run = [&](mg::Device d) {
    xi.bind(x.to(d));
    gamma.set(g.to(d));
    beta.set(b.to(d));
    const Tensor<T, R> wd = w.to(d);
    auto y = mg::batch_norm(xi, gamma, beta);
    auto [mean, var] = mg::batch_norm_stats(xi, gamma, beta);
    auto [dx, dg, db] = mg::grad(mg::sum(y * wd), xi, gamma, beta);
    return std::make_tuple(mg::eval(y), mg::eval(mean), mg::eval(var), mg::eval(dx), mg::eval(dg), mg::eval(db));
  };
  const auto cpu = run(mg::Device::cpu());
  const auto dev = run(gpu);
  check_close(std::get<0>(dev), std::get<0>(cpu), "y");
  check_close(std::get<1>(dev), std::get<1>(cpu), "batch mean");
  check_close(std::get<2>(dev), std::get<2>(cpu), "unbiased batch variance");
  check_close(std::get<3>(dev), std::get<3>(cpu), "dx");
  check_close(std::get<4>(dev), std::get<4>(cpu), "dgamma");
  check_close(std::get<5>(dev), std::get<5>(cpu), "dbeta");
}

}  // namespace

TEST_CASE_TEMPLATE("cuda batch_norm: y, statistics and gradients equal the CPU's, through cuDNN and the own kernels", T,
                   float, double) {
  if (!have_device()) return;
  for (bool use_cudnn : {true, false}) {
    CAPTURE(use_cudnn);
    mg::cuda::set_batch_norm_use_cudnn(use_cudnn);
    batch_norm_case<T>(Shape<2>{64, 10}, 11);
    batch_norm_case<T>(Shape<3>{5, 7, 33}, 12);
    batch_norm_case<T>(Shape<4>{8, 16, 12, 12}, 13);
    batch_norm_case<T>(Shape<4>{64, 6, 28, 28}, 14);
  }
  mg::cuda::set_batch_norm_use_cudnn(true);
}

TEST_CASE("cuda batch_norm: one value per channel gives a NaN unbiased variance, as on the CPU") {
  if (!have_device()) return;
  const Tensor<double, 2> x({{1.0, 2.0, 3.0}});
  const Tensor<double, 1> g({1.0, 1.0, 1.0}), b({0.0, 0.0, 0.0});
  const Tensor<double, 2> xd = x.to(gpu);
  const Tensor<double, 1> gd = g.to(gpu), bd = b.to(gpu);
  const auto y = mg::eval(mg::batch_norm(xd, gd, bd)).to_vector();
  for (double v : y) CHECK(v == 0.0);
  const auto var = mg::eval(mg::batch_norm_stats(xd, gd, bd).second).to_vector();
  for (double v : var) CHECK(std::isnan(v));
}
