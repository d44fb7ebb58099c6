// Tests of 2-D pooling as expressions (expr/pool.hpp, backend/cpu/pool.hpp): max_pool2d, avg_pool2d and
// adaptive_avg_pool2d forward values and the values of their backward nodes against naive loops written here
// (PyTorch's rules), over kernels, strides, padding, dilation, ceil_mode and count_include_pad, in float and
// double; output shapes worked out by hand; computed, strided and permuted operands and the fusion of
// relu(conv + bias) into the pool; max-pool ties, -inf and NaN; and the errors.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <metagrad/metagrad.hpp>
#include <string>
#include <vector>

using namespace metagrad;

namespace {

struct PoolCase {
  PoolKind kind;
  index_t n, c, h, w;
  Size2 k, s, p, d = 1;
  bool ceil = false, include_pad = true;
  Size2 out = 1;  // adaptive
  std::string str() const {
    const char* name = kind == PoolKind::max ? "max" : kind == PoolKind::avg ? "avg" : "adaptive avg";
    auto s2 = [](Size2 v) { return "(" + std::to_string(v.h) + ", " + std::to_string(v.w) + ")"; };
    return std::string(name) + " pool of [" + std::to_string(n) + ", " + std::to_string(c) + ", " + std::to_string(h) +
           ", " + std::to_string(w) + "], kernel " + s2(k) + ", stride " + s2(s) + ", padding " + s2(p) +
           ", dilation " + s2(d) + (ceil ? ", ceil_mode" : "") + (include_pad ? "" : ", no pad count") +
           (kind == PoolKind::adaptive_avg ? ", output " + s2(out) : "");
  }
};

// PyTorch's output extent, written out from its documentation.
index_t out_extent(index_t in, index_t k, index_t s, index_t p, index_t d, bool ceil) {
  const double v = double(in + 2 * p - d * (k - 1) - 1) / double(s) + 1;
  index_t o = ceil ? index_t(std::ceil(v)) : index_t(std::floor(v));
  if (ceil && (o - 1) * s >= in + p) --o;
  return o;
}

struct Ref {
  Shape<4> shape;
  std::vector<double> y;   // forward
  std::vector<double> dx;  // backward of the adjoint dy
};

// Naive pooling over each window tap by tap, and its transpose applied to dy.
Ref reference(const PoolCase& pc, const std::vector<double>& x, const std::vector<double>& dy_in, bool with_dy) {
  index_t oh, ow;
  if (pc.kind == PoolKind::adaptive_avg) {
    oh = pc.out.h;
    ow = pc.out.w;
  } else {
    const index_t d_h = pc.kind == PoolKind::max ? pc.d.h : 1, d_w = pc.kind == PoolKind::max ? pc.d.w : 1;
    oh = out_extent(pc.h, pc.k.h, pc.s.h, pc.p.h, d_h, pc.ceil);
    ow = out_extent(pc.w, pc.k.w, pc.s.w, pc.p.w, d_w, pc.ceil);
  }
  Ref r{Shape<4>{pc.n, pc.c, oh, ow}, {}, {}};
  r.y.assign(static_cast<std::size_t>(pc.n * pc.c * oh * ow), 0.0);
  r.dx.assign(x.size(), 0.0);
  for (index_t plane = 0; plane < pc.n * pc.c; ++plane)
    for (index_t i = 0; i < oh; ++i)
      for (index_t j = 0; j < ow; ++j) {
        const auto oi = static_cast<std::size_t>((plane * oh + i) * ow + j);
        const double dy = with_dy ? dy_in[oi] : 0.0;
        auto at = [&](index_t y, index_t xx) { return static_cast<std::size_t>((plane * pc.h + y) * pc.w + xx); };
        if (pc.kind == PoolKind::max) {
          double best = -INFINITY;
          std::size_t arg = 0;
          bool first = true;
          for (index_t a = 0; a < pc.k.h; ++a)
            for (index_t b = 0; b < pc.k.w; ++b) {
              const index_t y = i * pc.s.h - pc.p.h + a * pc.d.h, xx = j * pc.s.w - pc.p.w + b * pc.d.w;
              if (y < 0 || y >= pc.h || xx < 0 || xx >= pc.w) continue;
              const double v = x[at(y, xx)];
              if (first) arg = at(y, xx);
              first = false;
              if (v > best || std::isnan(v)) {
                best = v;
                arg = at(y, xx);
              }
            }
          r.y[oi] = best;
          r.dx[arg] += dy;
        } else if (pc.kind == PoolKind::avg) {
          const index_t y0 = i * pc.s.h - pc.p.h, x0 = j * pc.s.w - pc.p.w;
          double sum = 0;
          index_t inside = 0, padded = 0;
          for (index_t a = 0; a < pc.k.h; ++a)
            for (index_t b = 0; b < pc.k.w; ++b) {
              const index_t y = y0 + a, xx = x0 + b;
              if (y < pc.h + pc.p.h && xx < pc.w + pc.p.w) ++padded;  // taps within the padded input
              if (y < 0 || y >= pc.h || xx < 0 || xx >= pc.w) continue;
              sum += x[at(y, xx)];
              ++inside;
            }
          if (inside == 0) continue;
          const double div = pc.include_pad ? double(padded) : double(inside);
          r.y[oi] = sum / div;
          for (index_t a = 0; a < pc.k.h; ++a)
            for (index_t b = 0; b < pc.k.w; ++b) {
              const index_t y = y0 + a, xx = x0 + b;
              if (y < 0 || y >= pc.h || xx < 0 || xx >= pc.w) continue;
              r.dx[at(y, xx)] += dy / div;
            }
        } else {
          const index_t y0 = index_t(std::floor(double(i * pc.h) / double(oh)));
          const index_t y1 = index_t(std::ceil(double((i + 1) * pc.h) / double(oh)));
          const index_t x0 = index_t(std::floor(double(j * pc.w) / double(ow)));
          const index_t x1 = index_t(std::ceil(double((j + 1) * pc.w) / double(ow)));
          double sum = 0;
          for (index_t y = y0; y < y1; ++y)
            for (index_t xx = x0; xx < x1; ++xx) sum += x[at(y, xx)];
          const double div = double((y1 - y0) * (x1 - x0));
          r.y[oi] = sum / div;
          for (index_t y = y0; y < y1; ++y)
            for (index_t xx = x0; xx < x1; ++xx) r.dx[at(y, xx)] += dy / div;
        }
      }
  return r;
}

const std::vector<PoolCase> kCases = {
    {PoolKind::max, 2, 3, 8, 8, 2, 2, 0},
    {PoolKind::max, 1, 2, 7, 9, {3, 2}, {2, 1}, {1, 0}},
    {PoolKind::max, 2, 1, 9, 9, 3, 2, 1, 2},                       // dilation 2
    {PoolKind::max, 1, 2, 7, 7, 3, 2, 1, 1, true},                 // ceil_mode
    {PoolKind::max, 2, 2, 5, 6, 2, 2, 1, 1, true},                 // ceil_mode drops a window in the padding
    {PoolKind::max, 1, 1, 10, 8, {4, 3}, {3, 2}, {2, 1}, {1, 2}},  // mixed
    {PoolKind::max, 64, 6, 28, 28, 2, 2, 0},                       // LeNet pool 1
    {PoolKind::max, 2, 2, 5, 7, 2, 2, 0},                          // 2 x 2 with a row and a column left over
    {PoolKind::avg, 2, 3, 8, 8, 2, 2, 0},
    {PoolKind::avg, 1, 2, 7, 9, 3, 2, 1},
    {PoolKind::avg, 1, 2, 7, 9, 3, 2, 1, 1, false, false},  // count_include_pad = false
    {PoolKind::avg, 2, 1, 7, 7, 3, 2, 1, 1, true},          // ceil_mode: windows past the padded input
    {PoolKind::avg, 1, 2, 6, 5, {2, 3}, {2, 2}, {1, 1}, 1, true, false},
    {PoolKind::avg, 1, 1, 5, 5, 4, 3, 2, 1, true},  // padding as large as allowed
    {PoolKind::adaptive_avg, 2, 3, 8, 8, 1, 1, 0, 1, false, true, {4, 4}},
    {PoolKind::adaptive_avg, 1, 2, 7, 10, 1, 1, 0, 1, false, true, {3, 4}},  // overlapping windows
    {PoolKind::adaptive_avg, 1, 1, 5, 5, 1, 1, 0, 1, false, true, {7, 3}},   // more outputs than inputs
    {PoolKind::adaptive_avg, 2, 2, 6, 6, 1, 1, 0, 1, false, true, {1, 1}},   // global average
};

template <class T, int R>
std::vector<double> as_double(const Tensor<T, R>& t) {
  const auto v = contiguous(t).to_vector();
  return std::vector<double>(v.begin(), v.end());
}

template <class T>
void check_close(const std::string& what, const Tensor<T, 4>& got, const Shape<4>& shape,
                 const std::vector<double>& want) {
  INFO(what);
  REQUIRE(got.shape() == shape);
  const auto v = as_double(got);
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
  index_t bad = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const bool same = (std::isnan(v[i]) && std::isnan(want[i])) || v[i] == want[i] ||
                      std::abs(v[i] - want[i]) <= tol * (1 + std::abs(want[i]));
    if (!same && bad++ < 4) CHECK_MESSAGE(false, "element " << i << ": got " << v[i] << ", expected " << want[i]);
  }
  CHECK_MESSAGE(bad == 0, bad << " elements differ");
}

// The forward pool of a case and the adjoint of sum(pool * dy) w.r.t. x.
template <class T, class XE>
void check_case(const PoolCase& pc, const XE& xexpr, const std::vector<double>& xv) {
  auto run = [&](auto&& make) {
    const auto y = make(xexpr);
    const Ref shape_only = reference(pc, xv, {}, false);
    const Tensor<T, 4> dy =
        randn<T>({shape_only.shape[0], shape_only.shape[1], shape_only.shape[2], shape_only.shape[3]});
    const Ref r = reference(pc, xv, as_double(dy), true);
    check_close("forward of " + pc.str(), Tensor<T, 4>(y), r.shape, r.y);
    Input<struct pool_x, T, 4> xi("x");
    xi.bind(Tensor<T, 4>(xexpr));
    auto [gx] = grad(sum(make(xi) * Const<T, 4>(dy)), xi);
    check_close("backward of " + pc.str(), Tensor<T, 4>(gx), Shape<4>{pc.n, pc.c, pc.h, pc.w}, r.dx);
  };
  if (pc.kind == PoolKind::max)
    run([&](const auto& x) { return max_pool2d(x, pc.k, pc.s, pc.p, pc.d, pc.ceil); });
  else if (pc.kind == PoolKind::avg)
    run([&](const auto& x) { return avg_pool2d(x, pc.k, pc.s, pc.p, pc.ceil, pc.include_pad); });
  else
    run([&](const auto& x) { return adaptive_avg_pool2d(x, pc.out); });
}

}  // namespace

TEST_CASE_TEMPLATE("pool2d: forward and backward against naive loops", T, float, double) {
  for (const auto& pc : kCases) {
    const Tensor<T, 4> x = randn<T>({pc.n, pc.c, pc.h, pc.w});
    check_case<T>(pc, x, as_double(x));
  }
}

TEST_CASE("pool2d: output shapes worked out by hand") {
  const Tensor<float, 4> x = randn<float>({2, 3, 7, 6});
  CHECK(max_pool2d(x, 2).shape() == Shape<4>{2, 3, 3, 3});
  CHECK(max_pool2d(x, 2, 2, 0, 1, true).shape() == Shape<4>{2, 3, 4, 3});  // ceil(5 / 2) + 1 rows
  CHECK(max_pool2d(x, 3, 1).shape() == Shape<4>{2, 3, 5, 4});
  CHECK(max_pool2d(x, 3, 2, 1, 2).shape() == Shape<4>{2, 3, 3, 2});  // (7 + 2 - 4 - 1) / 2 + 1
  CHECK(max_pool2d(x, {3, 2}, Size2{1, 2}).shape() == Shape<4>{2, 3, 5, 3});
  CHECK(avg_pool2d(x, 3, 2, 1).shape() == Shape<4>{2, 3, 4, 3});        // (7 + 2 - 3) / 2 + 1
  CHECK(avg_pool2d(x, 2, 3, 1, true).shape() == Shape<4>{2, 3, 3, 3});  // the 4th row would start in padding
  CHECK(adaptive_avg_pool2d(x, {5, 1}).shape() == Shape<4>{2, 3, 5, 1});
  const Tensor<float, 4> five = randn<float>({1, 1, 5, 5});
  CHECK(max_pool2d(five, 2, 2, 1, 1, true).shape() == Shape<4>{1, 1, 3, 3});  // not 4: that window is all padding
}

TEST_CASE("pool2d: values of a hand-built 4 x 4 plane") {
  const Tensor<double, 4> x = from_vector<double>({1, 2, 3, 4,     //
                                                   5, 6, 7, 8,     //
                                                   9, 10, 11, 12,  //
                                                   13, 14, 15, 16},
                                                  {1, 1, 4, 4});
  CHECK(Tensor<double, 4>(max_pool2d(x, 2)).to_vector() == std::vector<double>{6, 8, 14, 16});
  CHECK(Tensor<double, 4>(avg_pool2d(x, 2)).to_vector() == std::vector<double>{3.5, 5.5, 11.5, 13.5});
  // padding 1: corners see one element over a 4-tap window (count_include_pad) or over 1.
  CHECK(Tensor<double, 4>(avg_pool2d(x, 2, 2, 1)).to_vector() ==
        std::vector<double>{0.25, 1.25, 1, 3.5, 8.5, 5, 3.25, 7.25, 4});
  CHECK(Tensor<double, 4>(avg_pool2d(x, 2, 2, 1, false, false)).to_vector() ==
        std::vector<double>{1, 2.5, 4, 7, 8.5, 10, 13, 14.5, 16});
  CHECK(Tensor<double, 4>(adaptive_avg_pool2d(x, {1, 1})).to_vector() == std::vector<double>{8.5});
  CHECK(Tensor<double, 4>(adaptive_avg_pool2d(x, {3, 3})).to_vector() ==
        std::vector<double>{3.5, 4.5, 5.5, 7.5, 8.5, 9.5, 11.5, 12.5, 13.5});
}

TEST_CASE("max_pool2d: ties, -inf and NaN follow PyTorch") {
  METAGRAD_INPUT(x, double, 4);
  auto [gx] = grad(sum(max_pool2d(x, 2, 1)), x);  // overlapping 2 x 2 windows over a 3 x 3 plane
  SUBCASE("a tie sends the whole adjoint to the first maximum in row-major window order") {
    x.bind(from_vector<double>({7, 7, 1,  //
                                7, 7, 7,  //
                                0, 7, 2},
                               {1, 1, 3, 3}));
    CHECK(Tensor<double, 4>(max_pool2d(x, 2, 1)).to_vector() == std::vector<double>{7, 7, 7, 7});
    // Windows start at (0,0), (0,1), (1,0), (1,1): their first 7s are (0,0), (0,1), (1,0), (1,1).
    CHECK(Tensor<double, 4>(gx).to_vector() == std::vector<double>{1, 1, 0, 1, 1, 0, 0, 0, 0});
  }
  SUBCASE("a window of -inf picks its first element") {
    const double m = -std::numeric_limits<double>::infinity();
    x.bind(from_vector<double>({m, m, m, m, m, m, m, m, 5}, {1, 1, 3, 3}));
    CHECK(Tensor<double, 4>(max_pool2d(x, 2, 1)).to_vector() == std::vector<double>{m, m, m, 5});
    CHECK(Tensor<double, 4>(gx).to_vector() == std::vector<double>{1, 1, 0, 1, 0, 0, 0, 0, 1});
  }
  SUBCASE("NaN propagates and takes the adjoint") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    x.bind(from_vector<double>({1, 9, 2, 3, nan, 4, 5, 6, 8}, {1, 1, 3, 3}));
    const auto y = Tensor<double, 4>(max_pool2d(x, 2, 1)).to_vector();
    for (double v : y) CHECK(std::isnan(v));
    CHECK(Tensor<double, 4>(gx).to_vector() == std::vector<double>{0, 0, 0, 0, 4, 0, 0, 0, 0});
  }
}

TEST_CASE("max_pool2d: ties, -inf and NaN in the common 2 x 2, stride 2 case") {
  const double m = -std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  METAGRAD_INPUT(x, double, 4);
  x.bind(from_vector<double>({3, 5, m, m,    //
                              5, 1, m, m,    //
                              2, nan, 4, 4,  //
                              9, 1, 4, 4},
                             {1, 1, 4, 4}));
  const auto y = Tensor<double, 4>(max_pool2d(x, 2)).to_vector();
  CHECK(y[0] == 5);
  CHECK(y[1] == m);
  CHECK(std::isnan(y[2]));
  CHECK(y[3] == 4);
  auto [gx] = grad(sum(max_pool2d(x, 2) * Const<double, 4>(from_vector<double>({1, 2, 3, 4}, {1, 1, 2, 2}))), x);
  // The first 5 (0, 1); the first -inf (0, 2); the NaN (2, 1); the first 4 (2, 2).
  CHECK(Tensor<double, 4>(gx).to_vector() == std::vector<double>{0, 1, 2, 0, 0, 0, 0, 0, 0, 3, 4, 0, 0, 0, 0, 0});
}

TEST_CASE("pool2d: computed, strided and permuted operands") {
  const PoolCase pc{PoolKind::max, 2, 3, 6, 8, 3, 2, 1};
  const PoolCase pa{PoolKind::avg, 2, 3, 6, 8, 3, 2, 1, 1, true, false};
  const Tensor<double, 4> x = randn<double>({2, 3, 6, 8});
  SUBCASE("relu(x + 0.5) * 2") {
    const auto e = relu(x + 0.5) * 2.0;
    const auto xv = as_double(Tensor<double, 4>(e));
    check_case<double>(pc, e, xv);
    check_case<double>(pa, e, xv);
  }
  SUBCASE("a strided window") {
    const Tensor<double, 4> big = randn<double>({3, 4, 12, 9});
    auto win = big.slice({Slice{0, 3, 2}, Slice{1, 4}, Slice{0, 12, 2}, Slice{1, 9}});
    const auto xv = as_double(Tensor<double, 4>(win));
    check_case<double>(pc, win, xv);
    check_case<double>(pa, win, xv);
  }
  SUBCASE("NHWC seen as NCHW") {
    const Tensor<double, 4> nhwc = randn<double>({2, 6, 8, 3});
    auto v = permute(nhwc, {0, 3, 1, 2});
    const auto xv = as_double(Tensor<double, 4>(v));
    check_case<double>(pc, v, xv);
    check_case<double>(pa, v, xv);
  }
}

TEST_CASE("pool2d: relu(conv2d + bias) is fused into the pool, with no buffer of its own") {
  METAGRAD_INPUT(x, float, 4);
  METAGRAD_PARAM(w, float, 4, randn<float>({4, 2, 3, 3}));
  METAGRAD_PARAM(b, float, 1, randn<float>({4}));
  const auto y = max_pool2d(relu(conv2d(x, w, {.padding = 1}) + b.reshape({1, 4, 1, 1})), 2);
  auto program = compile(y);
  CHECK(program.steps() == 2);  // the convolution and the pool: no step for relu or the bias
  const Tensor<float, 4> xt = randn<float>({2, 2, 6, 6});
  const auto& [out] = program.run(x.bind(xt));
  const Tensor<float, 4> h = relu(conv2d(xt, w.value(), {.padding = 1}) + b.value().reshape({1, 4, 1, 1}));
  const PoolCase pc{PoolKind::max, 2, 4, 6, 6, 2, 2, 0};
  check_close("fused", out, Shape<4>{2, 4, 3, 3}, reference(pc, as_double(h), {}, false).y);
}

TEST_CASE("pool2d: writes into a destination its operand reads") {
  Tensor<double, 4> x = randn<double>({1, 2, 6, 6});
  const PoolCase pc{PoolKind::avg, 1, 2, 6, 6, 3, 1, 1};  // output shaped like the input
  const auto want = reference(pc, as_double(x), {}, false).y;
  const double* before = x.data();
  x = avg_pool2d(x, 3, 1, 1);
  CHECK(x.data() == before);
  check_close("in place", x, Shape<4>{1, 2, 6, 6}, want);
}

TEST_CASE("pool2d: errors name the pool and the input shape") {
  const Tensor<float, 4> x = randn<float>({2, 3, 4, 4});
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  SUBCASE("an empty output") {
    const auto m = message([&] { (void)max_pool2d(x, 5).shape(); });
    CHECK(m.find("max_pool2d") != std::string::npos);
    CHECK(m.find("[2, 3, 4, 4]") != std::string::npos);
    CHECK_THROWS_AS((void)avg_pool2d(x, {2, 5}).shape(), shape_error);
    CHECK_THROWS_AS((void)max_pool2d(x, 3, 1, 0, 2).shape(), shape_error);  // dilated kernel spans 5
  }
  SUBCASE("a dilated window over padding only") {
    // Width 1, kernel 2, padding 1, dilation 2: the taps sit at -1 and +1, both outside the input.
    const Tensor<float, 4> thin = randn<float>({1, 1, 4, 1});
    const auto m = message([&] { (void)Tensor<float, 4>(max_pool2d(thin, {1, 2}, 1, {0, 1}, 2)); });
    CHECK(m.find("covers only padding") != std::string::npos);
    CHECK(m.find("[1, 1, 4, 1]") != std::string::npos);
    CHECK_NOTHROW((void)Tensor<float, 4>(max_pool2d(randn<float>({1, 1, 4, 3}), {1, 2}, 1, {0, 1}, 2)));
  }
  SUBCASE("bad parameters throw at once") {
    CHECK(message([&] { (void)max_pool2d(x, 0); }).find("max_pool2d") != std::string::npos);
    CHECK(message([&] { (void)avg_pool2d(x, 2, 0); }).find("avg_pool2d") != std::string::npos);
    CHECK(message([&] { (void)max_pool2d(x, 2, 2, 2); }).find("half the kernel") != std::string::npos);
    CHECK(message([&] { (void)max_pool2d(x, 2, 2, 0, 0); }).find("dilation") != std::string::npos);
    CHECK(message([&] { (void)adaptive_avg_pool2d(x, {0, 2}); }).find("adaptive_avg_pool2d") != std::string::npos);
  }
  SUBCASE("an adaptive pool of nothing") {
    const auto m = message([&] { (void)Tensor<float, 4>(adaptive_avg_pool2d(zeros<float>({1, 2, 0, 3}), {2, 2})); });
    CHECK(m.find("adaptive_avg_pool2d") != std::string::npos);
    CHECK(m.find("[1, 2, 0, 3]") != std::string::npos);
  }
  SUBCASE("an output adjoint of the wrong shape") {
    METAGRAD_INPUT(xi, float, 4);
    xi.bind(x);
    Pool2dParams p;
    p.kernel = 2;
    p.stride = 2;
    MaxPool2dBackwardExpr<Const<float, 4>, decltype(xi)> bad(Const<float, 4>(randn<float>({2, 3, 3, 2})), xi, p);
    const auto m = message([&] { (void)Tensor<float, 4>(bad); });
    CHECK(m.find("[2, 3, 3, 2]") != std::string::npos);
    CHECK(m.find("[2, 3, 2, 2]") != std::string::npos);
  }
}

TEST_CASE("pool2d: empty batches") {
  CHECK(Tensor<float, 4>(max_pool2d(zeros<float>({0, 3, 4, 4}), 2)).shape() == Shape<4>{0, 3, 2, 2});
  CHECK(Tensor<float, 4>(adaptive_avg_pool2d(zeros<float>({2, 0, 4, 4}), {2, 2})).shape() == Shape<4>{2, 0, 2, 2});
}
