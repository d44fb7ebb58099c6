// Tests of the fused convolution + bias + activation node (expr/conv_bias.hpp) on the CPU: its values against
// a naive direct convolution written here, over strides, padding, dilation, groups (depthwise included),
// 1x1 kernels and non-square shapes, float and double, identity and ReLU, through every CPU implementation
// (im2col + GEMM with the epilogue loop; oneDNN with its bias argument and ReLU post-op when the build has
// it); computed operands and strided destinations; that relu() of the node is the node with ReLU, also
// through nn::Conv2d and nn::relu() in a Sequential (a static_assert on the type), with the values of the
// unfused composition; the shape errors, empty channels, and backends refusing a bias on a backward pass.
#include <doctest/doctest.h>

#include <cmath>
#include <metagrad/metagrad.hpp>
#include <random>
#include <string>
#include <type_traits>
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
  Shape<4> x_shape() const { return {n, c_in, h, w}; }
  Shape<4> w_shape() const { return {c_out, c_in / o.groups, kh, kw}; }
  Shape<4> y_shape() const { return {n, c_out, oh(), ow()}; }
};

const std::vector<Config> kConfigs = {
    {2, 3, 7, 6, 4, 3, 2, {}},
    {3, 2, 8, 8, 5, 3, 3, {.stride = 2}},
    {2, 3, 9, 7, 2, 3, 3, {.stride = {2, 3}, .padding = {1, 2}}},
    {1, 4, 10, 8, 6, 3, 2, {.stride = {1, 2}, .padding = {2, 0}, .dilation = {2, 3}}},
    {2, 4, 6, 6, 6, 3, 3, {.padding = 1, .groups = 2}},
    {2, 6, 7, 7, 6, 3, 3, {.stride = 2, .padding = 1, .groups = 6}},  // depthwise
    {3, 8, 5, 5, 4, 1, 1, {}},                                        // pointwise (no unrolling)
    {2, 1, 12, 12, 3, 5, 5, {.padding = 2}},                          // a small conv1 of LeNet
    {4, 3, 10, 10, 5, 5, 5, {}},                                      // a small conv2 of LeNet
};

// The reference: z = conv + b[o] in double, and the sum of |terms| (|b| and every |x w|), which bounds the
// rounding error of any summation order: |computed - z| <= K u sum|terms| for K terms.
struct Reference {
  std::vector<double> z, scale;
};

Reference ref_forward(const Config& c, const std::vector<double>& x, const std::vector<double>& w,
                      const std::vector<double>& b) {
  const index_t oh = c.oh(), ow = c.ow(), cg = c.c_in / c.o.groups, og = c.c_out / c.o.groups;
  Reference r;
  r.z.assign(static_cast<std::size_t>(c.n * c.c_out * oh * ow), 0.0);
  r.scale = r.z;
  for (index_t n = 0; n < c.n; ++n)
    for (index_t o = 0; o < c.c_out; ++o)
      for (index_t i = 0; i < oh; ++i)
        for (index_t j = 0; j < ow; ++j) {
          double s = b[static_cast<std::size_t>(o)], a = std::abs(s);
          const index_t g = o / og;
          for (index_t ci = 0; ci < cg; ++ci)
            for (index_t p = 0; p < c.kh; ++p)
              for (index_t q = 0; q < c.kw; ++q) {
                const index_t iy = i * c.o.stride.h - c.o.padding.h + p * c.o.dilation.h;
                const index_t ix = j * c.o.stride.w - c.o.padding.w + q * c.o.dilation.w;
                if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
                const double t = x[static_cast<std::size_t>(((n * c.c_in + g * cg + ci) * c.h + iy) * c.w + ix)] *
                                 w[static_cast<std::size_t>(((o * cg + ci) * c.kh + p) * c.kw + q)];
                s += t;
                a += std::abs(t);
              }
          const auto k = static_cast<std::size_t>(((n * c.c_out + o) * oh + i) * ow + j);
          r.z[k] = s;
          r.scale[k] = a;
        }
  return r;
}

double apply(Activation a, double z) { return a == Activation::relu ? (z < 0 ? 0.0 : z) : z; }

// Standard normal values from a fixed seed (randn takes a braced list of extents, these take a Shape).
template <class T, int R>
Tensor<T, R> normal(const Shape<R>& s) {
  static std::mt19937 rng(20240611u);
  std::normal_distribution<double> d;
  Tensor<T, R> t(s);
  for (index_t i = 0; i < s.numel(); ++i) t.data()[i] = static_cast<T>(d(rng));
  return t;
}

template <class T, int R>
std::vector<double> as_double(const Tensor<T, R>& t) {
  const auto v = contiguous(t).to_vector();
  return std::vector<double>(v.begin(), v.end());
}

// |got - act(z)| <= tol (1 + sum|terms|) element by element: float 1e-5, double 1e-12 relative to the size
// of the terms summed (the relative error of a sum is only bounded relative to that).
template <class T>
void check_close(const std::string& what, const Tensor<T, 4>& got, const Shape<4>& shape, const Reference& ref,
                 Activation act) {
  INFO(what);
  REQUIRE(got.shape() == shape);
  const auto v = as_double(got);
  REQUIRE(v.size() == ref.z.size());
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  index_t bad = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double want = apply(act, ref.z[i]);
    if (!(std::abs(v[i] - want) <= tol * (1 + ref.scale[i]))) {
      if (bad++ < 4) CHECK_MESSAGE(false, "element " << i << ": got " << v[i] << ", expected " << want);
    }
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

struct AlgorithmGuard {
  explicit AlgorithmGuard(cpu::ConvAlgorithm a) { cpu::set_conv_algorithm(a); }
  ~AlgorithmGuard() { cpu::set_conv_algorithm(cpu::ConvAlgorithm::automatic); }
};

template <class E>
struct activation_of : std::integral_constant<int, -1> {};
template <class X, class W, class B, Activation A>
struct activation_of<Conv2dBiasExpr<X, W, B, A>> : std::integral_constant<int, int(A)> {};
template <class E>
constexpr int activation_of_v = activation_of<std::remove_cvref_t<E>>::value;

template <class T>
void check_config(const Config& c) {
  const Tensor<T, 4> x = normal<T>(c.x_shape());
  const Tensor<T, 4> w = normal<T>(c.w_shape());
  const Tensor<T, 1> b = normal<T>(Shape<1>{{c.c_out}});
  const Reference ref = ref_forward(c, as_double(x), as_double(w), as_double(b));
  index_t negative = 0;
  for (double z : ref.z) negative += z < 0;
  // ReLU is tested where it clips: some outputs are negative before it, and some positive.
  REQUIRE(negative > 0);
  REQUIRE(negative < static_cast<index_t>(ref.z.size()));
  const auto id = conv2d(x, w, b, c.o);
  const auto rl = relu(conv2d(x, w, b, c.o));
  static_assert(activation_of_v<decltype(id)> == int(Activation::identity));
  static_assert(activation_of_v<decltype(rl)> == int(Activation::relu));
  const auto explicit_relu = conv2d<Activation::relu>(x, w, b, c.o);
  static_assert(std::is_same_v<decltype(explicit_relu), decltype(rl)>);
  for (auto a : algorithms()) {
    AlgorithmGuard guard(a);
    const std::string what = c.str() + " (" + name(a) + ")";
    check_close("identity, " + what, Tensor<T, 4>(id), c.y_shape(), ref, Activation::identity);
    check_close("relu, " + what, Tensor<T, 4>(rl), c.y_shape(), ref, Activation::relu);
    check_close("conv2d<relu>, " + what, Tensor<T, 4>(explicit_relu), c.y_shape(), ref, Activation::relu);
  }
}

}  // namespace

TEST_CASE_TEMPLATE("conv2d with bias: identity and relu against a direct convolution", T, float, double) {
  for (const auto& c : kConfigs) check_config<T>(c);
}

TEST_CASE("conv2d with bias: computed operands, default options and destinations") {
  const Config c{2, 3, 8, 7, 4, 3, 3, {.padding = 1}};
  const Tensor<double, 4> x = normal<double>(c.x_shape());
  const Tensor<double, 4> w = normal<double>(c.w_shape());
  const Tensor<double, 1> b = normal<double>(Shape<1>{{4}});
  for (auto a : algorithms()) {
    AlgorithmGuard guard(a);
    INFO(name(a));
    SUBCASE("relu(conv2d(x * 2, w, b + 1)), the bias a computed expression") {
      const Tensor<double, 4> x2 = x * 2.0;
      const Tensor<double, 1> b1 = b + 1.0;
      check_close("computed", Tensor<double, 4>(relu(conv2d(x * 2.0, w, b + 1.0, c.o))), c.y_shape(),
                  ref_forward(c, as_double(x2), as_double(w), as_double(b1)), Activation::relu);
    }
    SUBCASE("a strided bias: every other element of a tensor") {
      const Tensor<double, 1> big = normal<double>(Shape<1>{{8}});
      auto bs = big.slice({Slice{0, 8, 2}});
      check_close("strided bias", Tensor<double, 4>(relu(conv2d(x, w, bs, c.o))), c.y_shape(),
                  ref_forward(c, as_double(x), as_double(w), as_double(Tensor<double, 1>(bs))), Activation::relu);
    }
    SUBCASE("default options") {
      const Config d{2, 3, 8, 7, 4, 3, 3, {}};
      check_close("defaults", Tensor<double, 4>(conv2d(x, w, b)), d.y_shape(),
                  ref_forward(d, as_double(x), as_double(w), as_double(b)), Activation::identity);
    }
    SUBCASE("in place and into a strided destination") {
      const Config s{1, 2, 6, 6, 2, 3, 3, {.padding = 1}};  // output shaped like the input
      Tensor<double, 4> xs = normal<double>(s.x_shape());
      const Tensor<double, 4> ws = normal<double>(s.w_shape());
      const Tensor<double, 1> bsm = normal<double>(Shape<1>{{2}});
      const auto want = ref_forward(s, as_double(xs), as_double(ws), as_double(bsm));
      Tensor<double, 4> x2 = xs.clone();
      const double* before = x2.data();
      x2 = relu(conv2d(x2, ws, bsm, s.o));
      CHECK(x2.data() == before);
      check_close("in place", x2, s.y_shape(), want, Activation::relu);
      const Tensor<double, 4> big = zeros<double>({1, 2, 6, 12});
      auto dst = Tensor<double, 4>::from_storage(big.storage(), 0, s.y_shape(), Strides<4>{{144, 72, 12, 2}});
      dst.assign(relu(conv2d(xs, ws, bsm, s.o)));
      CHECK(big(0, 1, 5, 11) == 0.0);
      check_close("strided destination", Tensor<double, 4>(dst), s.y_shape(), want, Activation::relu);
    }
  }
}

TEST_CASE("conv2d with bias: relu() picks the fused node, equal to the unfused composition") {
  const Config c{2, 3, 8, 8, 4, 3, 3, {.stride = 2, .padding = 1}};
  const Tensor<float, 4> x = normal<float>(c.x_shape());
  const Tensor<float, 4> w = normal<float>(c.w_shape());
  const Tensor<float, 1> b = normal<float>(Shape<1>{{4}});
  auto node = conv2d(x, w, b, c.o);
  const auto& cnode = node;
  // Every value category reaches the fused overload, not the elementwise relu of expr/functions.hpp.
  static_assert(activation_of_v<decltype(relu(node))> == int(Activation::relu));
  static_assert(activation_of_v<decltype(relu(cnode))> == int(Activation::relu));
  static_assert(activation_of_v<decltype(relu(conv2d(x, w, b, c.o)))> == int(Activation::relu));
  static_assert(activation_of_v<decltype(relu(std::move(node)))> == int(Activation::relu));
  // relu of a node that already has ReLU, and other activations, are the ordinary elementwise functions.
  static_assert(activation_of_v<decltype(relu(relu(cnode)))> == -1);
  static_assert(activation_of_v<decltype(tanh(cnode))> == -1);
  static_assert(activation_of_v<decltype(relu(conv2d(x, w, c.o)))> == -1);
  const Tensor<float, 4> fused = relu(cnode);
  const Tensor<float, 4> twice = relu(relu(cnode));
  const Tensor<float, 4> unfused = relu(conv2d(x, w, c.o) + reshape(b, {1, 4, 1, 1}));
  const auto f = fused.to_vector(), t = twice.to_vector(), u = unfused.to_vector();
  REQUIRE(f.size() == u.size());
  for (std::size_t i = 0; i < f.size(); ++i) {
    CHECK(f[i] == doctest::Approx(u[i]).epsilon(1e-5).scale(1));
    CHECK(t[i] == f[i]);
  }
}

TEST_CASE("conv2d with bias: nn::Conv2d followed by nn::relu() is one node") {
  manual_seed(5);
  auto model = nn::sequential<struct cb_seq>(nn::conv2d(3, 4, 3, {.padding = 1}), nn::relu());
  nn::Conv2d<struct cb_alone> conv(nn::conv2d(3, 4, 3, {.padding = 1}));
  nn::Conv2d<struct cb_nobias, float, false> nobias(nn::conv2d(3, 4, 3, {.padding = 1}, nn::no_bias));
  const Tensor<float, 4> xt = randn<float>({2, 3, 6, 6});
  METAGRAD_INPUT(x, float, 4);
  x.bind(xt);
  static_assert(activation_of_v<decltype(conv(x))> == int(Activation::identity));
  static_assert(activation_of_v<decltype(nn::relu()(conv(x)))> == int(Activation::relu));
  static_assert(activation_of_v<decltype(model(x))> == int(Activation::relu));
  static_assert(activation_of_v<decltype(nn::relu()(nobias(x)))> == -1);  // no bias: conv2d then relu
  // Names, state and summary are those of the unfused layer.
  CHECK(nn::state_of(model)[0].name == "0.weight");
  CHECK(nn::state_of(model)[1].name == "0.bias");
  CHECK(model.describe().find("Conv2d(3, 4, kernel_size=(3, 3), padding=(1, 1))") != std::string::npos);
  CHECK(model.describe().find("ReLU()") != std::string::npos);
  const auto& layer = model.template get<0>();
  const Tensor<float, 4> got = model(x);
  const Tensor<float, 4> want =
      relu(conv2d(xt, layer.weight().value(), {.padding = 1}) + reshape(layer.bias().value(), {1, 4, 1, 1}));
  const auto g = got.to_vector(), wv = want.to_vector();
  REQUIRE(g.size() == wv.size());
  index_t zeros_seen = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    CHECK(g[i] == doctest::Approx(wv[i]).epsilon(1e-5).scale(1));
    zeros_seen += g[i] == 0.0f;
  }
  CHECK(zeros_seen > 0);
}

TEST_CASE("conv2d with bias: shape errors name the operation and the shapes") {
  const Tensor<float, 4> x = randn<float>({2, 3, 8, 8});
  const Tensor<float, 4> w = randn<float>({4, 3, 3, 3});
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const shape_error& e) {
      return std::string(e.what());
    }
    return std::string("no shape_error");
  };
  SUBCASE("a bias of the wrong length") {
    const Tensor<float, 1> b5 = normal<float>(Shape<1>{{5}});
    const auto m = message([&] { (void)conv2d(x, w, b5).shape(); });
    CHECK(m.find("conv2d with bias") != std::string::npos);
    CHECK(m.find("[2, 3, 8, 8]") != std::string::npos);
    CHECK(m.find("[4, 3, 3, 3]") != std::string::npos);
    CHECK(m.find("[5]") != std::string::npos);
    CHECK(message([&] { (void)Tensor<float, 4>(relu(conv2d(x, w, b5))); }) == m);
  }
  SUBCASE("input channels that do not match the weight") {
    const auto m = message([&] { (void)conv2d(x, randn<float>({4, 2, 3, 3}), normal<float>(Shape<1>{{4}})).shape(); });
    CHECK(m.find("conv2d") != std::string::npos);
    CHECK(m.find("[4, 2, 3, 3]") != std::string::npos);
    CHECK(m.find("3 channels") != std::string::npos);
  }
  SUBCASE("bad options throw at once") {
    const Tensor<float, 1> b = normal<float>(Shape<1>{{4}});
    CHECK_THROWS_AS((void)conv2d(x, w, b, {.stride = 0}), error);
    CHECK_THROWS_AS((void)conv2d(x, w, b, {.groups = 0}), error);
  }
}

TEST_CASE("conv2d with bias: empty batches, and no input channels leave act(b)") {
  Tensor<double, 1> b{Shape<1>{{3}}};
  for (int i = 0; i < 3; ++i) b.data()[i] = i - 1.5;  // -1.5, -0.5, 0.5
  CHECK(Tensor<double, 4>(conv2d(zeros<double>({0, 2, 5, 5}), randn<double>({3, 2, 3, 3}), b)).shape() ==
        Shape<4>{0, 3, 3, 3});
  const Tensor<double, 4> x0 = zeros<double>({2, 0, 4, 4});
  const Tensor<double, 4> w0 = zeros<double>({3, 0, 3, 3});
  const Tensor<double, 4> id = conv2d(x0, w0, b);
  const Tensor<double, 4> rl = relu(conv2d(x0, w0, b));
  REQUIRE(id.shape() == Shape<4>{2, 3, 2, 2});
  for (index_t n = 0; n < 2; ++n)
    for (index_t o = 0; o < 3; ++o)
      for (index_t i = 0; i < 2; ++i)
        for (index_t j = 0; j < 2; ++j) {
          CHECK(id(n, o, i, j) == o - 1.5);
          CHECK(rl(n, o, i, j) == std::max(0.0, o - 1.5));
        }
}

TEST_CASE("conv2d with bias: the CPU backends refuse a bias or activation on a backward pass") {
  const Config c{1, 2, 5, 5, 2, 3, 3, {}};
  Conv2dGeometry g = detail::conv2d_geometry(c.x_shape(), c.w_shape(), c.o, "test");
  std::vector<float> x(50, 1.0f), w(36, 1.0f), dy(18, 1.0f), out(50), bias(2, 1.0f);
  Conv2dCall<float> call{ConvPass::backward_data, g, nullptr, w.data(), dy.data(), out.data()};
  call.bias = bias.data();
  CHECK_THROWS_AS(cpu::run_conv2d(call), error);
  CHECK_THROWS_AS(cpu::conv2d_im2col(call), error);
  call.bias = nullptr;
  call.activation = Activation::relu;
  CHECK_THROWS_AS(cpu::run_conv2d(call), error);
  call.activation = Activation::identity;
  CHECK_NOTHROW(cpu::run_conv2d(call));
}

#if defined(METAGRAD_WITH_DNNL) && METAGRAD_WITH_DNNL
TEST_CASE("conv2d with bias: oneDNN runs the bias and ReLU in its primitive, equal to the im2col epilogue") {
  const Config c{4, 6, 14, 14, 16, 5, 5, {}};  // LeNet's conv2 at batch 4
  const Conv2dGeometry g = detail::conv2d_geometry(c.x_shape(), c.w_shape(), c.o, "test");
  REQUIRE_FALSE(cpu::conv2d_onednn_impl(ConvPass::forward, g, true, Activation::relu).empty());
  const Tensor<float, 4> x = normal<float>(c.x_shape());
  const Tensor<float, 4> w = normal<float>(c.w_shape());
  const Tensor<float, 1> b = normal<float>(Shape<1>{{16}});
  const Reference ref = ref_forward(c, as_double(x), as_double(w), as_double(b));
  for (Activation act : {Activation::identity, Activation::relu}) {
    Tensor<float, 4> by_dnnl(c.y_shape()), by_im2col(c.y_shape());
    Conv2dCall<float> call{ConvPass::forward, g, x.data(), w.data(), nullptr, by_dnnl.data()};
    call.bias = b.data();
    call.activation = act;
    REQUIRE(cpu::conv2d_onednn(call));
    call.out = by_im2col.data();
    cpu::conv2d_im2col(call);
    check_close(std::string("oneDNN, ") + detail::activation_name(act), by_dnnl, c.y_shape(), ref, act);
    check_close(std::string("im2col, ") + detail::activation_name(act), by_im2col, c.y_shape(), ref, act);
  }
}
#endif
