// CUDA tests of the fused convolution + bias + activation node (expr/conv_bias.hpp, backend/cuda/conv.hpp)
// against the CPU implementation of the same node on the same data: identity and ReLU, float and double,
// through cuDNN's fused cudnnConvolutionBiasActivationForward and through the unfused fallback
// (set_conv_bias_fusion(false): cudnnConvolutionForward + cudnnAddTensor + cudnnActivationForward), over
// strides, padding, dilation, groups, depthwise and 1x1 kernels and LeNet's two layers at batch 64; the
// fused call is checked to be the one that ran where cuDNN documents it (float, groups 1), the fallback
// where fusion is off; and the three gradients (input, weight, bias) through grad() on the GPU against the
// CPU's. They compile and link wherever nvcc and cuDNN are and report "skipped: no CUDA device" without a GPU.
//
// Tolerances, normwise: max |gpu - cpu| <= tol * max |cpu|. Each output sums K = C_in/g kH kW products and
// a bias; cuDNN and the CPU sum in different orders, so each may be off by about K u sum |a b| from the exact
// value; with inputs in [-1, 1] sum |a b| stays within a small multiple of max |y| for these sizes. 1e-4
// (float, u = 6e-8, K up to 150 here) and 1e-10 (double) leave room for both orders. ReLU does not widen the
// bound: relu is 1-Lipschitz, so |relu(a) - relu(b)| <= |a - b| even where the two sides straddle zero. The
// bias gradient sums N OH OW terms of the masked adjoint (CUB on the GPU, a double accumulator on the CPU):
// the same normwise bound holds. FMA math (no TF32) is what keeps float there (cuda::allow_tf32() is off by
// default).
#include <doctest/doctest.h>

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
using mg::Activation;
using mg::index_t;
using mg::Shape;
using mg::Tensor;

namespace {

const mg::Device gpu = mg::Device::cuda(0);

template <class T, int R>
Tensor<T, R> uniform(const Shape<R>& s, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> d(-1, 1);
  Tensor<T, R> t(s);
  for (index_t i = 0; i < s.numel(); ++i) t.data()[i] = static_cast<T>(d(rng));
  return t;
}

template <class T, int R>
void check_close(const Tensor<T, R>& got, const Tensor<T, R>& want, double tol, const std::string& what) {
  REQUIRE(got.device() == gpu);
  REQUIRE(got.shape() == want.shape());
  const auto g = got.to_vector();
  const auto w = mg::contiguous(want).to_vector();
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    err = std::fmax(err, std::fabs(double(g[i]) - double(w[i])));
    scale = std::fmax(scale, std::fabs(double(w[i])));
  }
  INFO(what << ": max |gpu - cpu| = " << err << ", max |cpu| = " << scale);
  CHECK(scale > 0);  // a comparison of zeros could not fail
  CHECK(err <= tol * scale);
}

struct Case {
  Shape<4> x, w;
  mg::Conv2dOptions o;
  std::string str() const {
    return "x " + mg::to_string(x) + ", w " + mg::to_string(w) + ", stride (" + std::to_string(o.stride.h) + ", " +
           std::to_string(o.stride.w) + "), padding (" + std::to_string(o.padding.h) + ", " +
           std::to_string(o.padding.w) + "), dilation (" + std::to_string(o.dilation.h) + ", " +
           std::to_string(o.dilation.w) + "), groups " + std::to_string(o.groups);
  }
};

// The first case is the one cuDNN documents for the fused call (groups 1, no dilation): it must run fused.
const std::vector<Case> cases = {
    {{4, 3, 12, 12}, {8, 3, 3, 3}, {.padding = 1}},
    {{2, 4, 11, 9}, {6, 4, 3, 2}, {.stride = {2, 1}, .padding = {1, 0}}},
    {{2, 3, 13, 13}, {4, 3, 3, 3}, {.padding = 2, .dilation = 2}},
    {{2, 4, 8, 8}, {6, 2, 3, 3}, {.padding = 1, .groups = 2}},
    {{2, 6, 9, 9}, {6, 1, 3, 3}, {.stride = 2, .padding = 1, .groups = 6}},  // depthwise
    {{3, 8, 7, 7}, {5, 8, 1, 1}, {}},                                        // 1x1
    {{64, 1, 28, 28}, {6, 1, 5, 5}, {.padding = 2}},                         // LeNet conv1
    {{64, 6, 14, 14}, {16, 6, 5, 5}, {}},                                    // LeNet conv2
};

template <class T, Activation A>
void forward_case(const Case& c, unsigned seed, bool fusion) {
  const double tol = std::is_same_v<T, float> ? 1e-4 : 1e-10;
  const Tensor<T, 4> x = uniform<T>(c.x, seed), w = uniform<T>(c.w, seed + 1);
  const Tensor<T, 1> b = uniform<T>(Shape<1>{{c.w[0]}}, seed + 2);
  const Tensor<T, 4> want = mg::conv2d<A>(x, w, b, c.o);
  const Tensor<T, 4> xg = x.to(gpu), wg = w.to(gpu);
  const Tensor<T, 1> bg = b.to(gpu);
  const Tensor<T, 4> got = mg::conv2d<A>(xg, wg, bg, c.o);
  check_close(got, want, tol,
              c.str() + (A == Activation::relu ? ", relu" : ", identity") + (fusion ? ", fused" : ", unfused"));
}

// Restores fusion when a test case ends, also when a check throws.
struct FusionGuard {
  explicit FusionGuard(bool on) { mg::cuda::set_conv_bias_fusion(on); }
  ~FusionGuard() { mg::cuda::set_conv_bias_fusion(true); }
};

}  // namespace

TEST_CASE_TEMPLATE("cudnn conv2d with bias: identity and relu equal the CPU's, fused and unfused", T, float, double) {
  if (!have_device()) return;
  for (bool fusion : {true, false}) {
    FusionGuard guard(fusion);
    unsigned seed = 100;
    for (const Case& c : cases) {
      forward_case<T, Activation::identity>(c, seed, fusion);
      forward_case<T, Activation::relu>(c, seed, fusion);
      seed += 3;
    }
  }
}

TEST_CASE("cudnn conv2d with bias: the fused call runs where cuDNN documents it, the fallback when asked") {
  if (!have_device()) return;
  const Case& c = cases[0];
  for (Activation act : {Activation::identity, Activation::relu}) {
    const auto before = mg::cuda::conv_bias_counts();
    if (act == Activation::relu)
      forward_case<float, Activation::relu>(c, 7, true);
    else
      forward_case<float, Activation::identity>(c, 7, true);
    const auto after = mg::cuda::conv_bias_counts();
    INFO("activation " << mg::detail::activation_name(act));
    CHECK(after.fused == before.fused + 1);
    CHECK(after.unfused == before.unfused);
  }
  {
    FusionGuard off(false);
    const auto before = mg::cuda::conv_bias_counts();
    forward_case<float, Activation::relu>(c, 9, false);
    const auto after = mg::cuda::conv_bias_counts();
    CHECK(after.fused == before.fused);
    CHECK(after.unfused == before.unfused + 1);
  }
  // double: documented as well; reported rather than required (a refusal takes the fallback, still correct).
  const auto before = mg::cuda::conv_bias_counts();
  forward_case<double, Activation::relu>(c, 11, true);
  const auto after = mg::cuda::conv_bias_counts();
  MESSAGE("double conv + bias + relu ran " << (after.fused > before.fused ? "fused" : "through the fallback"));
  CHECK(after.fused + after.unfused == before.fused + before.unfused + 1);
}

TEST_CASE_TEMPLATE("cudnn conv2d with bias: gradients of input, weight and bias equal the CPU's", T, float, double) {
  if (!have_device()) return;
  const double tol = std::is_same_v<T, float> ? 1e-4 : 1e-10;
  const Case c{{3, 4, 10, 9}, {6, 4, 3, 3}, {.stride = {2, 1}, .padding = 1}};
  mg::Input<struct cbg_x, T, 4> x("x");
  mg::Input<struct cbg_w, T, 4> w("w");
  mg::Input<struct cbg_b, T, 1> b("b");
  mg::Input<struct cbg_r, T, 4> r("r");
  const auto y_relu = mg::relu(mg::conv2d(x, w, b, c.o));
  const auto y_id = mg::conv2d(x, w, b, c.o);
  auto [rx, rw, rb] = mg::grad(mg::sum(y_relu * r), x, w, b);
  auto [ix, iw, ib] = mg::grad(mg::sum(y_id * r), x, w, b);
  const Tensor<T, 4> xt = uniform<T>(c.x, 21), wt = uniform<T>(c.w, 22);
  const Tensor<T, 1> bt = uniform<T>(Shape<1>{{6}}, 23);
  x.bind(xt);
  w.bind(wt);
  b.bind(bt);
  r.bind(uniform<T>(y_id.shape(), 24));
  const Tensor<T, 4> rx_cpu = rx, rw_cpu = rw, ix_cpu = ix, iw_cpu = iw;
  const Tensor<T, 1> rb_cpu = rb, ib_cpu = ib;
  x.bind(xt.to(gpu));
  w.bind(wt.to(gpu));
  b.bind(bt.to(gpu));
  r.bind(r.value().to(gpu));
  for (bool fusion : {true, false}) {
    FusionGuard guard(fusion);
    const std::string f = fusion ? " (fused forward)" : " (unfused forward)";
    check_close(Tensor<T, 4>(rx), rx_cpu, tol, "relu: dx" + f);
    check_close(Tensor<T, 4>(rw), rw_cpu, tol, "relu: dw" + f);
    check_close(Tensor<T, 1>(rb), rb_cpu, tol, "relu: db" + f);
    check_close(Tensor<T, 4>(ix), ix_cpu, tol, "identity: dx" + f);
    check_close(Tensor<T, 4>(iw), iw_cpu, tol, "identity: dw" + f);
    check_close(Tensor<T, 1>(ib), ib_cpu, tol, "identity: db" + f);
  }
}

TEST_CASE("cudnn conv2d with bias: a compiled step on the GPU equals the CPU's") {
  if (!have_device()) return;
  mg::Input<struct cbp_x, float, 4> x("x");
  mg::Param<struct cbp_w, float, 4> w("w", uniform<float>(Shape<4>{16, 6, 5, 5}, 31));
  mg::Param<struct cbp_b, float, 1> b("b", uniform<float>(Shape<1>{{16}}, 32));
  const auto loss = mg::mean(mg::square(mg::relu(mg::conv2d(x, w, b)) - 0.1f));
  auto [gx, gw, gb] = mg::grad(loss, x, w, b);
  auto program = mg::compile(loss, gx, gw, gb);
  const Tensor<float, 4> xt = uniform<float>(Shape<4>{8, 6, 14, 14}, 33);
  const auto& [l_cpu, dx_cpu, dw_cpu, db_cpu] = program.run(x.bind(xt));
  const float lc = l_cpu.item();
  const Tensor<float, 4> dxc = dx_cpu.clone(), dwc = dw_cpu.clone();
  const Tensor<float, 1> dbc = db_cpu.clone();
  w.set(w.value().to(gpu));
  b.set(b.value().to(gpu));
  auto gpu_program = mg::compile(loss, gx, gw, gb);
  for (int run = 0; run < 2; ++run) {  // the second run replays (CUDA graph) where the Program captures
    const auto& [l, dx, dw, db] = gpu_program.run(x.bind(xt.to(gpu)));
    CHECK(std::fabs(double(l.item()) - double(lc)) <= 1e-4 * std::fabs(double(lc)));
    check_close(dx, dxc, 1e-4, "compiled dx, run " + std::to_string(run));
    check_close(dw, dwc, 1e-4, "compiled dw, run " + std::to_string(run));
    check_close(db, dbc, 1e-4, "compiled db, run " + std::to_string(run));
  }
}
