// Tests of conv2d as an expression (expr/conv.hpp, backend/cpu/conv.hpp): forward, backward-data and
// backward-weight values against a naive direct convolution written here, over strides, padding, dilation,
// groups (depthwise included), non-square kernels and inputs, batch 1 and more, float and double; computed,
// strided and permuted operands; writing into a destination an operand reads; every CPU implementation
// (im2col + GEMM always, oneDNN when the build has it); and the shape errors.
#include <doctest/doctest.h>

#include <cmath>
#include <metagrad/metagrad.hpp>
#include <string>
#include <vector>

using namespace metagrad;

namespace {

struct Config {
  index_t n, c_in, h, w, c_out, kh, kw;
  Conv2dOptions o;
  std::string str() const {
    return "x [" + std::to_string(n) + ", " + std::to_string(c_in) + ", " + std::to_string(h) + ", " +
           std::to_string(w) + "], w [" + std::to_string(c_out) + ", " + std::to_string(c_in / o.groups) + ", " +
           std::to_string(kh) + ", " + std::to_string(kw) + "], stride (" + std::to_string(o.stride.h) + ", " +
           std::to_string(o.stride.w) + "), padding (" + std::to_string(o.padding.h) + ", " +
           std::to_string(o.padding.w) + "), dilation (" + std::to_string(o.dilation.h) + ", " +
           std::to_string(o.dilation.w) + "), groups " + std::to_string(o.groups);
  }
  index_t oh() const { return (h + 2 * o.padding.h - o.dilation.h * (kh - 1) - 1) / o.stride.h + 1; }
  index_t ow() const { return (w + 2 * o.padding.w - o.dilation.w * (kw - 1) - 1) / o.stride.w + 1; }
};

const std::vector<Config> kConfigs = {
    {1, 1, 5, 5, 1, 3, 3, {}},
    {2, 3, 7, 6, 4, 3, 2, {}},
    {3, 2, 8, 8, 5, 3, 3, {.stride = 2}},
    {2, 3, 9, 7, 2, 3, 3, {.stride = {2, 3}, .padding = {1, 2}}},
    {2, 2, 9, 9, 3, 3, 3, {.padding = 2, .dilation = 2}},
    {1, 4, 10, 8, 6, 3, 2, {.stride = {1, 2}, .padding = {2, 0}, .dilation = {2, 3}}},
    {2, 4, 6, 6, 6, 3, 3, {.padding = 1, .groups = 2}},
    {2, 6, 7, 7, 6, 3, 3, {.stride = 2, .padding = 1, .groups = 6}},  // depthwise
    {2, 4, 7, 5, 8, 2, 3, {.padding = {1, 1}, .groups = 4}},          // depthwise, multiplier 2
    {3, 8, 5, 5, 4, 1, 1, {}},                                        // pointwise (no unrolling)
    {2, 6, 6, 6, 4, 1, 1, {.groups = 2}},                             // grouped pointwise
    {2, 3, 7, 7, 2, 1, 1, {.stride = 2, .padding = 1}},               // 1x1 that still unrolls
    {2, 1, 12, 12, 3, 5, 5, {.padding = 2}},                          // a small conv1 of LeNet
    {4, 3, 10, 10, 5, 5, 5, {}},                                      // a small conv2 of LeNet
    {1, 2, 4, 4, 3, 4, 4, {.padding = 3, .dilation = 1}},             // padding nearly a kernel wide
    {2, 2, 5, 9, 2, 5, 1, {.stride = {3, 1}, .padding = {0, 0}}},     // last rows never reached
};

// Reference values in double, indexed like contiguous tensors.
std::vector<double> ref_forward(const Config& c, const std::vector<double>& x, const std::vector<double>& w) {
  const index_t oh = c.oh(), ow = c.ow(), cg = c.c_in / c.o.groups, og = c.c_out / c.o.groups;
  std::vector<double> y(static_cast<std::size_t>(c.n * c.c_out * oh * ow), 0.0);
  for (index_t n = 0; n < c.n; ++n)
    for (index_t o = 0; o < c.c_out; ++o)
      for (index_t i = 0; i < oh; ++i)
        for (index_t j = 0; j < ow; ++j) {
          double s = 0;
          const index_t g = o / og;
          for (index_t ci = 0; ci < cg; ++ci)
            for (index_t p = 0; p < c.kh; ++p)
              for (index_t q = 0; q < c.kw; ++q) {
                const index_t iy = i * c.o.stride.h - c.o.padding.h + p * c.o.dilation.h;
                const index_t ix = j * c.o.stride.w - c.o.padding.w + q * c.o.dilation.w;
                if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
                s += x[static_cast<std::size_t>(((n * c.c_in + g * cg + ci) * c.h + iy) * c.w + ix)] *
                     w[static_cast<std::size_t>(((o * cg + ci) * c.kh + p) * c.kw + q)];
              }
          y[static_cast<std::size_t>(((n * c.c_out + o) * oh + i) * ow + j)] = s;
        }
  return y;
}

// dx[x-index] = sum over y-indices reading it of dy * w; dw likewise: the transposes of the forward sum.
void ref_backward(const Config& c, const std::vector<double>& x, const std::vector<double>& w,
                  const std::vector<double>& dy, std::vector<double>& dx, std::vector<double>& dw) {
  const index_t oh = c.oh(), ow = c.ow(), cg = c.c_in / c.o.groups, og = c.c_out / c.o.groups;
  dx.assign(x.size(), 0.0);
  dw.assign(w.size(), 0.0);
  for (index_t n = 0; n < c.n; ++n)
    for (index_t o = 0; o < c.c_out; ++o)
      for (index_t i = 0; i < oh; ++i)
        for (index_t j = 0; j < ow; ++j) {
          const double g_out = dy[static_cast<std::size_t>(((n * c.c_out + o) * oh + i) * ow + j)];
          const index_t g = o / og;
          for (index_t ci = 0; ci < cg; ++ci)
            for (index_t p = 0; p < c.kh; ++p)
              for (index_t q = 0; q < c.kw; ++q) {
                const index_t iy = i * c.o.stride.h - c.o.padding.h + p * c.o.dilation.h;
                const index_t ix = j * c.o.stride.w - c.o.padding.w + q * c.o.dilation.w;
                if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
                const auto xi = static_cast<std::size_t>(((n * c.c_in + g * cg + ci) * c.h + iy) * c.w + ix);
                const auto wi = static_cast<std::size_t>(((o * cg + ci) * c.kh + p) * c.kw + q);
                dx[xi] += g_out * w[wi];
                dw[wi] += g_out * x[xi];
              }
        }
}

template <class T, int R>
std::vector<double> as_double(const Tensor<T, R>& t) {
  const auto v = contiguous(t).to_vector();
  return std::vector<double>(v.begin(), v.end());
}

template <class T, int R>
void check_close(const std::string& what, const Tensor<T, R>& got, const Shape<R>& shape,
                 const std::vector<double>& want) {
  INFO(what);
  REQUIRE(got.shape() == shape);
  const auto v = as_double(got);
  REQUIRE(v.size() == want.size());
  const double tol = std::is_same_v<T, float> ? 1e-4 : 1e-12;
  index_t bad = 0;
  for (std::size_t i = 0; i < v.size(); ++i)
    if (!(std::abs(v[i] - want[i]) <= tol * (1 + std::abs(want[i])))) {
      if (bad++ < 4) CHECK_MESSAGE(false, "element " << i << ": got " << v[i] << ", expected " << want[i]);
    }
  CHECK_MESSAGE(bad == 0, bad << " elements differ");
}

std::vector<cpu::ConvAlgorithm> algorithms() {
  std::vector<cpu::ConvAlgorithm> a{cpu::ConvAlgorithm::im2col};
  if (cpu::have_onednn()) a.push_back(cpu::ConvAlgorithm::onednn);
  a.push_back(cpu::ConvAlgorithm::automatic);
  return a;
}

const char* name(cpu::ConvAlgorithm a) {
  return a == cpu::ConvAlgorithm::im2col ? "im2col" : a == cpu::ConvAlgorithm::onednn ? "oneDNN" : "automatic";
}

// Restores the automatic choice when a test case ends, also when a check throws.
struct AlgorithmGuard {
  explicit AlgorithmGuard(cpu::ConvAlgorithm a) { cpu::set_conv_algorithm(a); }
  ~AlgorithmGuard() { cpu::set_conv_algorithm(cpu::ConvAlgorithm::automatic); }
};

// Forward, backward-data and backward-weight of one configuration through the gradient nodes of grad().
template <class T>
void check_config(const Config& c) {
  const Tensor<T, 4> x = randn<T>({c.n, c.c_in, c.h, c.w});
  const Tensor<T, 4> w = randn<T>({c.c_out, c.c_in / c.o.groups, c.kh, c.kw});
  const Shape<4> ys{c.n, c.c_out, c.oh(), c.ow()};
  const Tensor<T, 4> dy = randn<T>({ys[0], ys[1], ys[2], ys[3]});
  const auto xv = as_double(x), wv = as_double(w), dyv = as_double(dy);
  std::vector<double> dx, dw;
  ref_backward(c, xv, wv, dyv, dx, dw);
  Input<struct conv_x, T, 4> xi("x");
  Input<struct conv_w, T, 4> wi("w");
  xi.bind(x);
  wi.bind(w);
  const auto y = conv2d(xi, wi, c.o);
  auto [gx, gw] = grad(sum(y * Const<T, 4>(dy)), xi, wi);
  for (auto a : algorithms()) {
    AlgorithmGuard guard(a);
    const std::string what = c.str() + " (" + name(a) + ")";
    check_close("forward of " + what, Tensor<T, 4>(y), ys, ref_forward(c, xv, wv));
    check_close("backward data of " + what, Tensor<T, 4>(gx), x.shape(), dx);
    check_close("backward weight of " + what, Tensor<T, 4>(gw), w.shape(), dw);
  }
}

}  // namespace

TEST_CASE_TEMPLATE("conv2d: forward, backward data and backward weight against a direct convolution", T, float,
                   double) {
  for (const auto& c : kConfigs) check_config<T>(c);
}

TEST_CASE("conv2d: options take a pair per axis or one number for both") {
  const Conv2dOptions a{.stride = 2, .padding = {2, 1}};
  CHECK(a.stride == Size2(2, 2));
  CHECK(a.padding.h == 2);
  CHECK(a.padding.w == 1);
  CHECK(a.dilation == Size2(1));
  CHECK(a.groups == 1);
  const Tensor<float, 4> x = randn<float>({1, 2, 9, 7});
  const Tensor<float, 4> w = randn<float>({3, 2, 3, 3});
  CHECK(conv2d(x, w, a).shape() == Shape<4>{1, 3, 6, 4});  // (9 + 4 - 2 - 1) / 2 + 1, (7 + 2 - 2 - 1) / 2 + 1
  CHECK(conv2d(x, w).shape() == Shape<4>{1, 3, 7, 5});
}

TEST_CASE("conv2d: computed, strided and permuted operands") {
  const Config c{2, 3, 8, 7, 4, 3, 3, {.padding = 1}};
  const Tensor<double, 4> x = randn<double>({2, 3, 8, 7});
  const Tensor<double, 4> w = randn<double>({4, 3, 3, 3});
  for (auto a : algorithms()) {
    AlgorithmGuard guard(a);
    INFO(name(a));
    SUBCASE("conv2d(relu(x), w * 2)") {
      const Tensor<double, 4> rx = relu(x);
      const Tensor<double, 4> w2 = w * 2.0;
      check_close("computed", Tensor<double, 4>(conv2d(relu(x), w * 2.0, c.o)), Shape<4>{2, 4, 8, 7},
                  ref_forward(c, as_double(rx), as_double(w2)));
    }
    SUBCASE("a strided window of a larger tensor") {
      const Tensor<double, 4> big = randn<double>({3, 5, 16, 9});
      auto win = big.slice({Slice{0, 3, 2}, Slice{1, 4}, Slice{0, 16, 2}, Slice{1, 8}});  // [2, 3, 8, 7]
      check_close("window", Tensor<double, 4>(conv2d(win, w, c.o)), Shape<4>{2, 4, 8, 7},
                  ref_forward(c, as_double(Tensor<double, 4>(win)), as_double(w)));
    }
    SUBCASE("an NHWC tensor seen as NCHW through permute") {
      const Tensor<double, 4> nhwc = randn<double>({2, 8, 7, 3});
      auto v = permute(nhwc, {0, 3, 1, 2});
      const auto wt = permute(Tensor<double, 4>(permute(w, {0, 2, 3, 1})), {0, 3, 1, 2});  // OHWI seen as OIHW
      check_close("permuted", Tensor<double, 4>(conv2d(v, wt, c.o)), Shape<4>{2, 4, 8, 7},
                  ref_forward(c, as_double(Tensor<double, 4>(v)), as_double(w)));
    }
    SUBCASE("a convolution of a convolution") {
      const Tensor<double, 4> w1 = randn<double>({3, 3, 3, 3});
      const Config c1{2, 3, 8, 7, 3, 3, 3, {.padding = 1}};
      const auto h = ref_forward(c1, as_double(x), as_double(w1));
      check_close("nested", Tensor<double, 4>(conv2d(conv2d(x, w1, c1.o), w, c.o)), Shape<4>{2, 4, 8, 7},
                  ref_forward(c, h, as_double(w)));
    }
  }
}

TEST_CASE("conv2d: writes into a destination, also one that an operand reads") {
  const Config c{1, 2, 6, 6, 2, 3, 3, {.padding = 1}};  // output shaped like the input
  Tensor<float, 4> x = randn<float>({1, 2, 6, 6});
  const Tensor<float, 4> w = randn<float>({2, 2, 3, 3});
  const auto want = ref_forward(c, as_double(x), as_double(w));
  for (auto a : algorithms()) {
    AlgorithmGuard guard(a);
    INFO(name(a));
    Tensor<float, 4> x2 = x.clone();
    const float* before = x2.data();
    x2 = conv2d(x2, w, c.o);  // in place: the result must not be computed from half-overwritten input
    CHECK(x2.data() == before);
    check_close("in place", x2, x.shape(), want);
    const Tensor<float, 4> big = zeros<float>({1, 2, 6, 12});
    // Every other column of big: a destination with strides [144, 72, 12, 2].
    auto dst = Tensor<float, 4>::from_storage(big.storage(), 0, x.shape(), Strides<4>{{144, 72, 12, 2}});
    dst.assign(conv2d(x, w, c.o));
    CHECK(big(0, 1, 5, 11) == 0.0f);
    check_close("strided destination", Tensor<float, 4>(dst), x.shape(), want);
  }
}

TEST_CASE("conv2d: a compiled training step reuses its primitives and buffers") {
  METAGRAD_INPUT(x, float, 4);
  METAGRAD_PARAM(w, float, 4, randn<float>({4, 2, 3, 3}));
  const auto y = relu(conv2d(x, w, {.padding = 1}));
  const Config c{3, 2, 6, 5, 4, 3, 3, {.padding = 1}};
  auto [gw] = grad(sum(y), w);
  auto step = compile(sum(y), gw);
  for (int run = 0; run < 3; ++run) {
    const Tensor<float, 4> xt = randn<float>({3, 2, 6, 5});
    const auto& [loss, dw] = step.run(x.bind(xt));
    const auto yv = ref_forward(c, as_double(xt), as_double(w.value()));
    double want = 0;
    std::vector<double> dy(yv.size());
    for (std::size_t i = 0; i < yv.size(); ++i) {
      want += std::max(0.0, yv[i]);
      dy[i] = yv[i] > 0 ? 1.0 : 0.0;
    }
    CHECK(loss.item() == doctest::Approx(want).epsilon(1e-4));
    std::vector<double> dx_ref, dw_ref;
    ref_backward(c, as_double(xt), as_double(w.value()), dy, dx_ref, dw_ref);
    check_close("dw, run " + std::to_string(run), dw, w.value().shape(), dw_ref);
  }
}

TEST_CASE("conv2d: shape errors name conv2d and both shapes") {
  const Tensor<float, 4> x = randn<float>({2, 3, 8, 8});
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const shape_error& e) {
      return std::string(e.what());
    }
    return std::string("no shape_error");
  };
  SUBCASE("channels") {
    const auto m = message([&] { (void)conv2d(x, randn<float>({4, 2, 3, 3})).shape(); });
    CHECK(m.find("conv2d") != std::string::npos);
    CHECK(m.find("[2, 3, 8, 8]") != std::string::npos);
    CHECK(m.find("[4, 2, 3, 3]") != std::string::npos);
    CHECK(m.find("3 channels") != std::string::npos);
  }
  SUBCASE("groups that do not divide the output channels") {
    const Tensor<float, 4> x6 = randn<float>({2, 6, 8, 8});
    const auto m = message([&] { (void)conv2d(x6, randn<float>({4, 2, 3, 3}), {.groups = 3}).shape(); });
    CHECK(m.find("conv2d") != std::string::npos);
    CHECK(m.find("[4, 2, 3, 3]") != std::string::npos);
    CHECK(m.find("groups = 3") != std::string::npos);
  }
  SUBCASE("groups that do not match the input channels") {
    const auto m = message([&] { (void)conv2d(x, randn<float>({4, 3, 3, 3}), {.groups = 2}).shape(); });
    CHECK(m.find("[2, 3, 8, 8]") != std::string::npos);
    CHECK(m.find("[4, 3, 3, 3]") != std::string::npos);
  }
  SUBCASE("an empty output") {
    const auto m = message([&] { (void)Tensor<float, 4>(conv2d(x, randn<float>({4, 3, 9, 3}))); });
    CHECK(m.find("conv2d") != std::string::npos);
    CHECK(m.find("[4, 3, 9, 3]") != std::string::npos);
    CHECK(m.find("empty") != std::string::npos);
    CHECK(message([&] { (void)conv2d(x, randn<float>({4, 3, 5, 5}), {.dilation = 2}).shape(); }) != "no shape_error");
    CHECK(message([&] { (void)conv2d(x, randn<float>({4, 3, 9, 9}), {.padding = 1}).shape(); }) == "no shape_error");
  }
  SUBCASE("bad options throw at once") {
    CHECK_THROWS_AS((void)conv2d(x, randn<float>({4, 3, 3, 3}), {.stride = 0}), error);
    CHECK_THROWS_AS((void)conv2d(x, randn<float>({4, 3, 3, 3}), {.padding = -1}), error);
    CHECK_THROWS_AS((void)conv2d(x, randn<float>({4, 3, 3, 3}), {.dilation = {1, 0}}), error);
    CHECK_THROWS_AS((void)conv2d(x, randn<float>({4, 3, 3, 3}), {.groups = 0}), error);
  }
  SUBCASE("an output adjoint of the wrong shape") {
    METAGRAD_INPUT(xi, float, 4);
    METAGRAD_INPUT(wi, float, 4);
    xi.bind(x);
    wi.bind(randn<float>({4, 3, 3, 3}));
    const Tensor<float, 4> wrong = randn<float>({2, 4, 5, 5});
    Conv2dBackwardDataExpr<Const<float, 4>, decltype(wi), decltype(xi)> bd(Const<float, 4>(wrong), wi, xi, {});
    const auto m = message([&] { (void)Tensor<float, 4>(bd); });
    CHECK(m.find("[2, 4, 5, 5]") != std::string::npos);
    CHECK(m.find("[2, 4, 6, 6]") != std::string::npos);
  }
}

TEST_CASE("conv2d: empty batches and channels") {
  const Tensor<double, 4> w = randn<double>({3, 2, 3, 3});
  CHECK(Tensor<double, 4>(conv2d(zeros<double>({0, 2, 5, 5}), w)).shape() == Shape<4>{0, 3, 3, 3});
  METAGRAD_INPUT(x, double, 4);
  METAGRAD_INPUT(wi, double, 4);
  x.bind(zeros<double>({0, 2, 5, 5}));
  wi.bind(w);
  auto [gw] = grad(sum(conv2d(x, wi)), wi);
  const Tensor<double, 4> dw = gw;
  CHECK(dw.shape() == w.shape());
  for (double v : dw.to_vector()) CHECK(v == 0.0);
}
