// CPU tests of the device-independent parts of metagrad's cuDNN backend: the algorithm-cache key and its
// hash, the 32-bit descriptor parameters of a convolution (backend/cuda/cudnn_params.hpp), the mapping of a
// pooling onto cuDNN's pooling descriptor (checked against a naive model of cuDNN's pooling on random
// geometries: wherever the mapping says "exact", cuDNN's rule gives metagrad's CPU result), and the window
// arithmetic of metagrad's own CUDA pooling kernels (backend/cuda/pool_index.hpp), run here on the CPU and
// compared with the CPU pooling bit for bit, ties, -inf and NaN included.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <metagrad/backend/cuda/cudnn_params.hpp>
#include <metagrad/backend/cuda/pool_index.hpp>
#include <metagrad/metagrad.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

using namespace metagrad;
using metagrad::cuda::ConvAlgoKey;

namespace {

Conv2dGeometry lenet_conv2(index_t n) {
  return detail::conv2d_geometry(Shape<4>{n, 6, 14, 14}, Shape<4>{16, 6, 5, 5}, Conv2dOptions{}, "conv2d");
}

// Every equal key hashes alike; each field changed alone makes a different key.
TEST_CASE("cudnn key: equality and hash cover every field") {
  const ConvAlgoKey base{ConvPass::forward, cuda::CudnnDtype::f32, false, lenet_conv2(64), 0};
  ConvAlgoKey same = base;
  CHECK(same == base);
  CHECK(cuda::ConvAlgoKeyHash{}(same) == cuda::ConvAlgoKeyHash{}(base));

  std::vector<ConvAlgoKey> variants;
  auto vary = [&](auto&& f) {
    ConvAlgoKey k = base;
    f(k);
    CHECK_FALSE(k == base);
    variants.push_back(k);
  };
  vary([](ConvAlgoKey& k) { k.pass = ConvPass::backward_data; });
  vary([](ConvAlgoKey& k) { k.pass = ConvPass::backward_weight; });
  vary([](ConvAlgoKey& k) { k.dtype = cuda::CudnnDtype::f64; });
  vary([](ConvAlgoKey& k) { k.tf32 = true; });
  vary([](ConvAlgoKey& k) { k.device = 1; });
  vary([](ConvAlgoKey& k) { k.geom.n = 65; });
  vary([](ConvAlgoKey& k) { k.geom.c_in = 7; });
  vary([](ConvAlgoKey& k) { k.geom.h = 15; });
  vary([](ConvAlgoKey& k) { k.geom.w = 15; });
  vary([](ConvAlgoKey& k) { k.geom.c_out = 17; });
  vary([](ConvAlgoKey& k) { k.geom.kh = 3; });
  vary([](ConvAlgoKey& k) { k.geom.kw = 3; });
  vary([](ConvAlgoKey& k) { k.geom.oh = 9; });
  vary([](ConvAlgoKey& k) { k.geom.ow = 9; });
  vary([](ConvAlgoKey& k) { k.geom.stride = Size2(2, 1); });
  vary([](ConvAlgoKey& k) { k.geom.stride = Size2(1, 2); });
  vary([](ConvAlgoKey& k) { k.geom.padding = Size2(1, 0); });
  vary([](ConvAlgoKey& k) { k.geom.padding = Size2(0, 1); });
  vary([](ConvAlgoKey& k) { k.geom.dilation = Size2(2, 1); });
  vary([](ConvAlgoKey& k) { k.geom.dilation = Size2(1, 2); });
  vary([](ConvAlgoKey& k) { k.geom.groups = 2; });
  std::set<std::size_t> hashes{cuda::ConvAlgoKeyHash{}(base)};
  for (const auto& k : variants) hashes.insert(cuda::ConvAlgoKeyHash{}(k));
  CHECK(hashes.size() == variants.size() + 1);
  // Swapped height and width values are different keys with different hashes (the mix is order-dependent).
  ConvAlgoKey a = base, b = base;
  a.geom.padding = Size2(1, 2);
  b.geom.padding = Size2(2, 1);
  CHECK_FALSE(a == b);
  CHECK(cuda::ConvAlgoKeyHash{}(a) != cuda::ConvAlgoKeyHash{}(b));
}

TEST_CASE("cudnn params: convolution descriptors in 32-bit int") {
  SUBCASE("LeNet's second layer") {
    const auto p = cuda::cudnn_conv_params(lenet_conv2(64));
    CHECK(std::vector<int>(p.x, p.x + 4) == std::vector<int>{64, 6, 14, 14});
    CHECK(std::vector<int>(p.w, p.w + 4) == std::vector<int>{16, 6, 5, 5});
    CHECK(std::vector<int>(p.y, p.y + 4) == std::vector<int>{64, 16, 10, 10});
    CHECK(p.pad_h == 0);
    CHECK(p.stride_w == 1);
    CHECK(p.dil_h == 1);
    CHECK(p.groups == 1);
  }
  SUBCASE("groups, stride, padding and dilation per axis") {
    const Conv2dOptions o{.stride = {2, 1}, .padding = {1, 2}, .dilation = {2, 3}, .groups = 2};
    const auto g = detail::conv2d_geometry(Shape<4>{3, 4, 11, 12}, Shape<4>{6, 2, 3, 3}, o, "conv2d");
    const auto p = cuda::cudnn_conv_params(g);
    CHECK(std::vector<int>(p.w, p.w + 4) == std::vector<int>{6, 2, 3, 3});
    // cuDNN's output extent 1 + (in + 2 pad - ((k - 1) dil + 1)) / stride, computed independently here.
    CHECK(p.y[2] == 1 + (11 + 2 * 1 - (2 * 2 + 1)) / 2);
    CHECK(p.y[3] == 1 + (12 + 2 * 2 - (2 * 3 + 1)) / 1);
    CHECK(p.pad_h == 1);
    CHECK(p.pad_w == 2);
    CHECK(p.stride_h == 2);
    CHECK(p.stride_w == 1);
    CHECK(p.dil_h == 2);
    CHECK(p.dil_w == 3);
    CHECK(p.groups == 2);
  }
  SUBCASE("a tensor past INT_MAX elements is a shape_error naming conv2d") {
    const auto g =
        detail::conv2d_geometry(Shape<4>{70000, 64, 32, 32}, Shape<4>{8, 64, 3, 3}, Conv2dOptions{}, "conv2d");
    try {
      (void)cuda::cudnn_conv_params(g);
      FAIL("no exception");
    } catch (const shape_error& e) {
      const std::string m = e.what();
      CHECK(m.find("conv2d") != std::string::npos);
      CHECK(m.find("[70000, 64, 32, 32]") != std::string::npos);
      CHECK(m.find("INT_MAX") != std::string::npos);
    }
  }
}

Pool2dParams pool(PoolKind kind, Size2 k, Size2 s, Size2 pad = 0, Size2 dil = 1, bool ceil = false, bool incl = true) {
  Pool2dParams p;
  p.kind = kind;
  p.kernel = k;
  p.stride = s;
  p.padding = pad;
  p.dilation = dil;
  p.ceil_mode = ceil;
  p.count_include_pad = incl;
  return p;
}

TEST_CASE("cudnn params: which poolings map onto cuDNN") {
  const Shape<4> xs{2, 3, 8, 8};
  SUBCASE("max 2 x 2") {
    const auto c = cuda::cudnn_pool_params(detail::pool2d_geometry(xs, pool(PoolKind::max, 2, 2)));
    CHECK(c.exact);
    CHECK(c.mode == cuda::CudnnPoolMode::max);
    CHECK(c.window_h == 2);
    CHECK(c.stride_w == 2);
    CHECK(std::vector<int>(c.y, c.y + 4) == std::vector<int>{2, 3, 4, 4});
  }
  SUBCASE("dilation has no cuDNN form") {
    const auto c = cuda::cudnn_pool_params(detail::pool2d_geometry(xs, pool(PoolKind::max, 2, 1, 0, 2)));
    CHECK_FALSE(c.exact);
    CHECK(std::string(c.why_not) == "dilation");
  }
  SUBCASE("ceil_mode maps only when it adds no window") {
    CHECK(cuda::cudnn_pool_params(detail::pool2d_geometry(xs, pool(PoolKind::max, 2, 2, 0, 1, true))).exact);
    const auto c =
        cuda::cudnn_pool_params(detail::pool2d_geometry(Shape<4>{1, 1, 5, 5}, pool(PoolKind::max, 2, 2, 0, 1, true)));
    CHECK_FALSE(c.exact);
    CHECK(std::string(c.why_not).find("ceil_mode") != std::string::npos);
  }
  SUBCASE("average modes") {
    CHECK(cuda::cudnn_pool_params(detail::pool2d_geometry(xs, pool(PoolKind::avg, 3, 2, 1))).mode ==
          cuda::CudnnPoolMode::avg_include_pad);
    CHECK(cuda::cudnn_pool_params(detail::pool2d_geometry(xs, pool(PoolKind::avg, 3, 2, 1, 1, false, false))).mode ==
          cuda::CudnnPoolMode::avg_exclude_pad);
  }
  SUBCASE("adaptive: even windows only") {
    Pool2dParams p;
    p.kind = PoolKind::adaptive_avg;
    p.output = Size2(4, 2);
    const auto c = cuda::cudnn_pool_params(detail::pool2d_geometry(xs, p));
    CHECK(c.exact);
    CHECK(c.window_h == 2);
    CHECK(c.window_w == 4);
    CHECK(c.stride_h == 2);
    CHECK(c.pad_w == 0);
    p.output = Size2(3, 3);
    CHECK_FALSE(cuda::cudnn_pool_params(detail::pool2d_geometry(xs, p)).exact);
  }
}

// A random valid pooling of kind `kind` on a random small input, or false when the draw has an empty output.
bool random_pooling(std::mt19937& rng, PoolKind kind, Shape<4>& xs, Pool2dParams& p) {
  auto u = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  xs = Shape<4>{u(1, 2), u(1, 3), u(1, 9), u(1, 9)};
  p = Pool2dParams{};
  p.kind = kind;
  if (kind == PoolKind::adaptive_avg) {
    p.output = Size2(u(1, 7), u(1, 7));
  } else {
    p.kernel = Size2(u(1, 4), u(1, 4));
    p.stride = Size2(u(1, 3), u(1, 3));
    p.padding = Size2(u(0, int(p.kernel.h / 2)), u(0, int(p.kernel.w / 2)));
    if (kind == PoolKind::max) p.dilation = Size2(u(1, 2), u(1, 2));
    p.ceil_mode = u(0, 1) == 1;
    p.count_include_pad = u(0, 1) == 1;
  }
  try {
    (void)detail::pool2d_geometry(xs, p);
    return true;
  } catch (const shape_error&) {
    return false;
  }
}

// Random data: distinct values, or (ties) few distinct integers, with -inf and NaN sprinkled in when asked.
Tensor<double, 4> random_input(std::mt19937& rng, const Shape<4>& xs, bool ties, bool specials) {
  Tensor<double, 4> x(xs);
  std::uniform_real_distribution<double> d(-1, 1);
  std::uniform_int_distribution<int> small(-2, 2), pick(0, 19);
  for (index_t i = 0; i < xs.numel(); ++i) {
    double v = ties ? small(rng) : d(rng);
    if (specials && pick(rng) == 0) v = -std::numeric_limits<double>::infinity();
    if (specials && pick(rng) == 1) v = std::numeric_limits<double>::quiet_NaN();
    x.data()[i] = v;
  }
  return x;
}

bool same_bits(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// cuDNN's pooling as its documentation states it: floor output extents, symmetric padding, a max over the
// in-bounds taps only, an average divided by kh kw (include padding) or by the in-bounds count (exclude).
std::vector<double> cudnn_model(const Tensor<double, 4>& x, const cuda::CudnnPoolParams& c) {
  const int n = c.x[0], ch = c.x[1], h = c.x[2], w = c.x[3], oh = c.y[2], ow = c.y[3];
  std::vector<double> y;
  for (int a = 0; a < n * ch; ++a)
    for (int i = 0; i < oh; ++i)
      for (int j = 0; j < ow; ++j) {
        double mx = -std::numeric_limits<double>::infinity(), sum = 0;
        bool nan = false;
        int count = 0;
        for (int p = 0; p < c.window_h; ++p)
          for (int q = 0; q < c.window_w; ++q) {
            const int yy = i * c.stride_h - c.pad_h + p, xx = j * c.stride_w - c.pad_w + q;
            if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
            const double v = x.data()[(a * h + yy) * w + xx];
            nan |= std::isnan(v);
            mx = v > mx ? v : mx;
            sum += v;
            ++count;
          }
        if (c.mode == cuda::CudnnPoolMode::max)
          y.push_back(nan ? std::numeric_limits<double>::quiet_NaN() : mx);
        else
          y.push_back(sum / (c.mode == cuda::CudnnPoolMode::avg_include_pad ? c.window_h * c.window_w : count));
      }
  return y;
}

TEST_CASE("cudnn params: where the mapping says exact, cuDNN's rule gives the CPU's pooling") {
  std::mt19937 rng(7);
  int exact = 0;
  for (PoolKind kind : {PoolKind::max, PoolKind::avg, PoolKind::adaptive_avg})
    for (int trial = 0; trial < 300; ++trial) {
      Shape<4> xs;
      Pool2dParams p;
      if (!random_pooling(rng, kind, xs, p)) continue;
      const auto g = detail::pool2d_geometry(xs, p);
      const auto c = cuda::cudnn_pool_params(g);
      if (!c.exact) continue;
      ++exact;
      const auto x = random_input(rng, xs, false, kind == PoolKind::max);
      Tensor<double, 4> y(g.output_shape());
      cpu::run_pool2d(Pool2dCall<double>{g, y.data()}, lower_expr(x, xs));
      const auto want = cudnn_model(x, c);
      REQUIRE(want.size() == std::size_t(y.numel()));
      for (index_t i = 0; i < y.numel(); ++i) {
        INFO("kind " << int(kind) << " input " << to_string(xs) << " kernel " << p.kernel.h << "x" << p.kernel.w
                     << " stride " << p.stride.h << "x" << p.stride.w << " pad " << p.padding.h << "x" << p.padding.w
                     << " element " << i);
        const bool close = std::fabs(y.data()[i] - want[std::size_t(i)]) <= 1e-15 * 16;
        CHECK((close || same_bits(y.data()[i], want[std::size_t(i)])));
      }
    }
  CHECK(exact > 100);  // the random draws exercised the mapping
}

TEST_CASE("cuda pool kernels: window arithmetic equals the CPU's pooling bit for bit") {
  std::mt19937 rng(11);
  int runs = 0;
  for (PoolKind kind : {PoolKind::max, PoolKind::avg, PoolKind::adaptive_avg})
    for (int trial = 0; trial < 400; ++trial) {
      Shape<4> xs;
      Pool2dParams p;
      if (!random_pooling(rng, kind, xs, p)) continue;
      const auto g = detail::pool2d_geometry(xs, p);
      const auto s = cuda::pool_shape(g);
      // A max window can be empty when padding and dilation step over a 1-wide input (kernel 2, padding 1,
      // dilation 2 on width 1). The CPU then sends the adjoint to a position outside the window (PyTorch's
      // rule, with the same quirk); the CUDA kernel sends it nowhere. Those geometries are left out here.
      bool empty = false;
      for (index_t i = 0; i < g.oh; ++i) {
        const auto w = cuda::pool_window(kind, s.y, i, s.include_pad);
        empty |= w.begin >= w.end;
      }
      for (index_t j = 0; j < g.ow; ++j) {
        const auto w = cuda::pool_window(kind, s.x, j, s.include_pad);
        empty |= w.begin >= w.end;
      }
      if (empty && kind == PoolKind::max) continue;
      ++runs;
      const bool ties = trial % 2 == 0, specials = kind == PoolKind::max && trial % 3 == 0;
      const auto x = random_input(rng, xs, ties, specials);
      const auto gy = random_input(rng, g.output_shape(), false, false);
      const index_t planes = g.n * g.c;
      INFO("kind " << int(kind) << " input " << to_string(xs) << " kernel " << p.kernel.h << "x" << p.kernel.w
                   << " stride " << p.stride.h << "x" << p.stride.w << " pad " << p.padding.h << "x" << p.padding.w
                   << " dil " << p.dilation.h << "x" << p.dilation.w << " ceil " << p.ceil_mode << " incl "
                   << p.count_include_pad << " out " << p.output.h << "x" << p.output.w);

      Tensor<double, 4> y(g.output_shape());
      cpu::run_pool2d(Pool2dCall<double>{g, y.data()}, lower_expr(x, xs));
      bool fwd = true;
      for (index_t a = 0; a < planes; ++a)
        for (index_t i = 0; i < g.oh; ++i)
          for (index_t j = 0; j < g.ow; ++j)
            fwd &= same_bits(cuda::pool_forward_at(x.data() + a * g.h * g.w, s, i, j),
                             y.data()[(a * g.oh + i) * g.ow + j]);
      CHECK(fwd);

      Tensor<double, 4> dx(xs);
      if (kind == PoolKind::max)
        cpu::run_max_pool2d_backward(Pool2dCall<double>{g, dx.data()}, lower_expr(gy, g.output_shape()),
                                     lower_expr(x, xs));
      else
        cpu::run_avg_pool2d_backward(Pool2dCall<double>{g, dx.data()}, lower_expr(gy, g.output_shape()));
      bool bwd = true;
      for (index_t a = 0; a < planes; ++a)
        for (index_t i = 0; i < g.h; ++i)
          for (index_t j = 0; j < g.w; ++j) {
            const double* gp = gy.data() + a * g.oh * g.ow;
            const double got = kind == PoolKind::max ? cuda::max_pool_backward_at(x.data() + a * g.h * g.w, gp, s, i, j)
                                                     : cuda::avg_pool_backward_at(gp, s, i, j);
            bwd &= same_bits(got, dx.data()[(a * g.h + i) * g.w + j]);
          }
      CHECK(bwd);
    }
  CHECK(runs > 600);
}

}  // namespace
