// Values of the neural-network functional ops (expr/softmax.hpp, loss.hpp, norm.hpp, dropout.hpp, gather.hpp,
// concat.hpp) against naive loops written here: softmax and log_softmax on every axis and at extreme logits;
// cross_entropy by hand on a 2x3 case and against a reference with every reduction, label smoothing and
// ignore_index; nll, bce and mse; batch_norm (training, statistics, evaluation) and layer_norm; dropout's
// statistics and the determinism of its mask; embedding; concat, stack, pad and flatten; and the errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <metagrad/metagrad.hpp>
#include <string>
#include <utility>
#include <vector>

using namespace metagrad;

namespace {

template <class T, int R>
std::vector<double> values(const Tensor<T, R>& t) {
  const auto v = contiguous(t).to_vector();
  return std::vector<double>(v.begin(), v.end());
}

void check_close(const std::vector<double>& got, const std::vector<double>& want, double eps = 1e-12) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(eps));
}

// A rank-3 tensor of shape [a, b, c] with deterministic, distinct values.
Tensor<double, 3> sample3(index_t a, index_t b, index_t c, double scale = 1.0) {
  Tensor<double, 3> t(Shape<3>{a, b, c});
  for (index_t i = 0; i < t.numel(); ++i) t.data()[i] = scale * std::sin(0.7 * static_cast<double>(i) + 0.3);
  return t;
}

// Naive softmax of x along `axis` (row-major [a, b, c]).
std::vector<double> naive_softmax(const Tensor<double, 3>& x, int axis, bool log_form) {
  const auto s = x.shape();
  std::vector<double> out(static_cast<std::size_t>(x.numel()));
  for (index_t i = 0; i < s[0]; ++i)
    for (index_t j = 0; j < s[1]; ++j)
      for (index_t k = 0; k < s[2]; ++k) {
        index_t idx[3] = {i, j, k};
        double m = -INFINITY;
        for (index_t q = 0; q < s[axis]; ++q) {
          idx[axis] = q;
          m = std::max(m, x(idx[0], idx[1], idx[2]));
        }
        double z = 0;
        for (index_t q = 0; q < s[axis]; ++q) {
          idx[axis] = q;
          z += std::exp(x(idx[0], idx[1], idx[2]) - m);
        }
        const double v = x(i, j, k) - m - std::log(z);
        out[static_cast<std::size_t>((i * s[1] + j) * s[2] + k)] = log_form ? v : std::exp(v);
      }
  return out;
}

// Naive PyTorch cross-entropy: per-row losses (0 for ignored rows) and the count of rows not ignored.
struct RowLosses {
  std::vector<double> rows;
  double count = 0;
};
RowLosses naive_cross_entropy(const Tensor<double, 2>& x, const std::vector<std::int64_t>& y, double e,
                              std::int64_t ignore = -1000000) {
  RowLosses r;
  const index_t n = x.shape()[0], c = x.shape()[1];
  for (index_t i = 0; i < n; ++i) {
    if (y[static_cast<std::size_t>(i)] == ignore) {
      r.rows.push_back(0);
      continue;
    }
    double m = -INFINITY, z = 0, mean = 0;
    for (index_t j = 0; j < c; ++j) m = std::max(m, x(i, j));
    for (index_t j = 0; j < c; ++j) z += std::exp(x(i, j) - m), mean += x(i, j) / static_cast<double>(c);
    const double lse = m + std::log(z);
    r.rows.push_back((1 - e) * (lse - x(i, y[static_cast<std::size_t>(i)])) + e * (lse - mean));
    r.count += 1;
  }
  return r;
}

double total(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

}  // namespace

// =========================================================================================== softmax

TEST_CASE("softmax: softmax and log_softmax on every axis against a naive loop") {
  const auto x = sample3(3, 4, 5, 3.0);
  for (int axis = 0; axis < 3; ++axis) {
    CAPTURE(axis);
    check_close(values(eval(softmax(x, axis))), naive_softmax(x, axis, false));
    check_close(values(eval(log_softmax(x, axis))), naive_softmax(x, axis, true));
    check_close(values(eval(log_softmax(x, axis - 3))), naive_softmax(x, axis, true));  // negative axis
  }
  SUBCASE("the default axis is the last") { check_close(values(eval(softmax(x))), naive_softmax(x, 2, false)); }
  SUBCASE("float") {
    const Tensor<float, 3> xf = x.to<float>();
    check_close(values(eval(softmax(xf, 1))), naive_softmax(x, 1, false), 1e-5);
  }
  SUBCASE("an axis out of range") { CHECK_THROWS_AS((void)softmax(x, 3), index_error); }
}

TEST_CASE("softmax: logits of +-1000 give finite, exact results") {
  const Tensor<double, 2> x({{1000.0, -1000.0, 0.0}, {-1000.0, -1000.0, -1000.0}});
  const auto p = values(eval(softmax(x)));
  const auto lp = values(eval(log_softmax(x)));
  for (double v : p) CHECK(std::isfinite(v));
  for (double v : lp) CHECK(std::isfinite(v));
  check_close(p, {1.0, 0.0, std::exp(-1000.0), 1.0 / 3, 1.0 / 3, 1.0 / 3});
  check_close(lp, {0.0, -2000.0, -1000.0, -std::log(3.0), -std::log(3.0), -std::log(3.0)});
  const Tensor<float, 1> xf({1000.0f, 999.0f});
  const auto pf = values(eval(softmax(xf)));
  CHECK(pf[0] == doctest::Approx(1 / (1 + std::exp(-1.0))).epsilon(1e-6));
}

TEST_CASE("softmax: one node over long rows, wide inner axes, views and aliasing") {
  SUBCASE("rows longer and inner axes wider than a tile, in double and float") {
    // [2, 700, 3] over axis 1: 700-element columns of stride 3; [2, 5, 600] over axis 1: 600 columns, three
    // tiles of at most 256; [3, 2, 1000] over axis 2: rows of 1000.
    for (const auto& [s, axis] : {std::pair{Shape<3>{2, 700, 3}, 1}, std::pair{Shape<3>{2, 5, 600}, 1},
                                  std::pair{Shape<3>{3, 2, 1000}, 2}, std::pair{Shape<3>{300, 2, 2}, 0}}) {
      CAPTURE(to_string(s));
      CAPTURE(axis);
      const auto x = sample3(s[0], s[1], s[2], 6.0);
      check_close(values(eval(softmax(x, axis))), naive_softmax(x, axis, false));
      check_close(values(eval(log_softmax(x, axis))), naive_softmax(x, axis, true));
      const Tensor<float, 3> xf = x.to<float>();
      check_close(values(eval(softmax(xf, axis))), naive_softmax(x, axis, false), 2e-5);
      check_close(values(eval(log_softmax(xf, axis))), naive_softmax(x, axis, true), 2e-5);
    }
  }
  SUBCASE("the same bits on one thread and on two") {
    const Tensor<float, 3> x = sample3(64, 3, 2000, 4.0).to<float>();
    const int before = num_threads();
    set_num_threads(1);
    const auto one = values(eval(softmax(x, 2))), one_in = values(eval(log_softmax(x, 1)));
    set_num_threads(2);
    const auto two = values(eval(softmax(x, 2))), two_in = values(eval(log_softmax(x, 1)));
    set_num_threads(before);
    CHECK(one == two);
    CHECK(one_in == two_in);
  }
  SUBCASE("a transposed view and an expression as input") {
    const auto x = sample3(4, 3, 5, 2.0);
    const Tensor<double, 3> xt = contiguous(permute(x, {2, 0, 1}));
    check_close(values(eval(softmax(permute(x, {2, 0, 1}), 0))), naive_softmax(xt, 0, false));
    const Tensor<double, 3> x2 = x * 2.0 + 1.0;
    check_close(values(eval(log_softmax(x * 2.0 + 1.0, 1))), naive_softmax(x2, 1, true));
  }
  SUBCASE("assigned to its own input") {
    const auto x0 = sample3(3, 4, 5, 3.0);
    Tensor<double, 3> x = x0.clone();
    x = softmax(x, 1);
    check_close(values(x), naive_softmax(x0, 1, false));
    Tensor<double, 3> y = x0.clone();
    y = log_softmax(y, 2);
    check_close(values(y), naive_softmax(x0, 2, true));
  }
  SUBCASE("NaN and +inf make their row NaN, a row of -inf is NaN, as PyTorch; other rows are untouched") {
    const double nan = std::nan(""), inf = INFINITY;
    const Tensor<double, 2> x({{1.0, nan, 2.0}, {0.0, inf, 1.0}, {-inf, -inf, -inf}, {0.0, 0.0, std::log(2.0)}});
    for (const bool log_form : {false, true}) {
      CAPTURE(log_form);
      const auto v = values(log_form ? eval(log_softmax(x, 1)) : eval(softmax(x, 1)));
      for (int i = 0; i < 9; ++i) CHECK(std::isnan(v[static_cast<std::size_t>(i)]));
      const std::vector<double> last(v.begin() + 9, v.end());
      if (log_form)
        check_close(last, {-std::log(4.0), -std::log(4.0), -std::log(2.0)});
      else
        check_close(last, {0.25, 0.25, 0.5});
    }
  }
  SUBCASE("an empty axis is an error naming the op; empty other axes give an empty result") {
    const Tensor<double, 2> x = zeros<double>({3, 0});
    CHECK_THROWS_WITH_AS((void)eval(softmax(x, 1)), doctest::Contains("softmax: axis 1 of shape [3, 0] is empty"),
                         shape_error);
    CHECK_THROWS_AS((void)eval(log_softmax(x, -1)), shape_error);
    CHECK(eval(softmax(x, 0)).shape() == Shape<2>{3, 0});
  }
  SUBCASE("in a compiled gradient the backward pass reads the stored forward result") {
    Input<struct sm_prog_x, double, 2> xi("x");
    const auto xv = sample3(1, 6, 7, 2.0).reshape({6, 7});
    xi.bind(xv);
    const Tensor<double, 2> w = sample3(1, 6, 7, 1.0).reshape({6, 7}) * 0.5;
    auto loss = sum(softmax(xi, 1) * w);
    auto [dx] = grad(loss, xi);
    auto program = compile(loss, dx);
    const std::string d = program.describe();
    CAPTURE(d);
    CHECK(d.find("softmax -> [6, 7]") != std::string::npos);
    CHECK(d.find("(2 uses merged)") != std::string::npos);  // the forward node and the copy the backward reads
    CHECK(d.find("softmax (backward)") != std::string::npos);
    // dx = y (w - sum(w y)), with y from the naive loop.
    const Tensor<double, 3> x3 = xv.reshape({1, 6, 7});
    const auto y = naive_softmax(x3, 2, false);
    std::vector<double> want(42);
    for (int i = 0; i < 6; ++i) {
      double s = 0;
      for (int j = 0; j < 7; ++j) s += w(i, j) * y[static_cast<std::size_t>(i * 7 + j)];
      for (int j = 0; j < 7; ++j)
        want[static_cast<std::size_t>(i * 7 + j)] = y[static_cast<std::size_t>(i * 7 + j)] * (w(i, j) - s);
    }
    const auto& [l, g] = program.run();
    check_close(values(g), want, 1e-10);
  }
}

// ============================================================================================= losses

TEST_CASE("cross_entropy: a 2x3 case by hand") {
  const Tensor<double, 2> x({{1.0, 2.0, 3.0}, {0.5, -1.0, 2.0}});
  const Tensor<std::int64_t, 1> y({0, 1});
  // Row 0: log(e + e^2 + e^3) - 1; row 1: log(e^0.5 + e^-1 + e^2) + 1.
  const double r0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 1.0;
  const double r1 = std::log(std::exp(0.5) + std::exp(-1.0) + std::exp(2.0)) + 1.0;
  CHECK(cross_entropy(x, y).item() == doctest::Approx((r0 + r1) / 2).epsilon(1e-14));
  CHECK(cross_entropy<Reduction::sum>(x, y).item() == doctest::Approx(r0 + r1).epsilon(1e-14));
  check_close(values(eval(cross_entropy<Reduction::none>(x, y))), {r0, r1}, 1e-14);
  SUBCASE("label smoothing 0.3: (1 - e)(lse - x_y) + e (lse - mean x)") {
    const double l0 = r0 + 1.0, l1 = r1 - 1.0;  // the log-sum-exps
    const double s0 = 0.7 * r0 + 0.3 * (l0 - 2.0), s1 = 0.7 * r1 + 0.3 * (l1 - 0.5);
    check_close(values(eval(cross_entropy<Reduction::none>(x, y, {0.3, {}}))), {s0, s1}, 1e-14);
  }
  SUBCASE("ignore_index: the row contributes nothing and the mean divides by one") {
    const Tensor<std::int64_t, 1> yi({-100, 1});
    CHECK(cross_entropy(x, yi, {0.0, -100}).item() == doctest::Approx(r1).epsilon(1e-14));
    check_close(values(eval(cross_entropy<Reduction::none>(x, yi, {0.0, -100}))), {0.0, r1}, 1e-14);
  }
  SUBCASE("int32 labels") {
    const Tensor<std::int32_t, 1> y32({0, 1});
    CHECK(cross_entropy(x, y32).item() == doctest::Approx((r0 + r1) / 2).epsilon(1e-14));
  }
}

TEST_CASE("cross_entropy: against a naive reference with every reduction, smoothing and ignore_index") {
  const Tensor<double, 2> x = sample3(1, 7, 5, 4.0).reshape({7, 5}).eval();
  const std::vector<std::int64_t> yv = {4, 0, 2, 2, 1, 3, 0};
  const Tensor<std::int64_t, 1> y = from_vector(yv, {7});
  for (double e : {0.0, 0.1, 1.0}) {
    CAPTURE(e);
    const auto ref = naive_cross_entropy(x, yv, e);
    check_close(values(eval(cross_entropy<Reduction::none>(x, y, {e, {}}))), ref.rows);
    CHECK(cross_entropy<Reduction::sum>(x, y, {e, {}}).item() == doctest::Approx(total(ref.rows)).epsilon(1e-12));
    CHECK(cross_entropy(x, y, {e, {}}).item() == doctest::Approx(total(ref.rows) / 7).epsilon(1e-12));
    const auto refi = naive_cross_entropy(x, yv, e, 2);  // rows 2 and 3 ignored
    CHECK(cross_entropy(x, y, {e, 2}).item() == doctest::Approx(total(refi.rows) / refi.count).epsilon(1e-12));
    check_close(values(eval(cross_entropy<Reduction::none>(x, y, {e, 2}))), refi.rows);
  }
  SUBCASE("every row ignored: the mean is NaN, the sum 0 (as in PyTorch)") {
    const Tensor<std::int64_t, 1> all = full<std::int64_t>({7}, -1);
    CHECK(std::isnan(cross_entropy(x, all, {0.0, -1}).item()));
    CHECK(cross_entropy<Reduction::sum>(x, all, {0.0, -1}).item() == 0.0);
  }
  SUBCASE("labels bound to an Input later, and re-bound to another batch size") {
    Input<struct ce_x, double, 2> xi("x");
    Input<struct ce_y, std::int64_t, 1> yi("y");
    auto loss = cross_entropy<Reduction::sum>(xi, yi);
    xi.bind(x);
    yi.bind(y);
    CHECK(loss.item() == doctest::Approx(total(naive_cross_entropy(x, yv, 0).rows)).epsilon(1e-12));
    xi.bind(x.slice(0, 0, 3).eval());
    yi.bind(y.slice(0, 0, 3).eval());
    const auto ref3 = naive_cross_entropy(x.slice(0, 0, 3).eval(), {4, 0, 2}, 0);
    CHECK(loss.item() == doctest::Approx(total(ref3.rows)).epsilon(1e-12));
  }
  SUBCASE("logits of +-1000 stay finite") {
    const Tensor<double, 2> big({{1000.0, -1000.0}, {-1000.0, 1000.0}});
    const Tensor<std::int64_t, 1> yb({1, 1});
    check_close(values(eval(cross_entropy<Reduction::none>(big, yb))), {2000.0, 0.0});
    const Tensor<float, 2> bigf = big.to<float>();
    CHECK(cross_entropy(bigf, yb).item() == doctest::Approx(1000.0).epsilon(1e-6));
  }
}

TEST_CASE("cross_entropy: errors") {
  const Tensor<double, 2> x = zeros<double>({3, 4});
  SUBCASE("a label out of range names the loss, the label, its row and the class count") {
    const Tensor<std::int64_t, 1> y({0, 4, 1});
    try {
      (void)cross_entropy(x, y).item();
      FAIL("no error");
    } catch (const error& e) {
      const std::string m = e.what();
      CHECK(m.find("cross_entropy") != std::string::npos);
      CHECK(m.find("label 4 of row 1") != std::string::npos);
      CHECK(m.find("4 classes") != std::string::npos);
    }
    const Tensor<std::int64_t, 1> neg({0, -1, 1});
    CHECK_THROWS_AS((void)cross_entropy(x, neg).item(), error);
    CHECK_THROWS_AS((void)nll_loss(x, neg).item(), error);
    CHECK_NOTHROW((void)cross_entropy(x, neg, {0.0, -1}).item());  // the ignored value is allowed
  }
  SUBCASE("labels of another batch size") {
    const Tensor<std::int64_t, 1> y({0, 1});
    CHECK_THROWS_AS((void)cross_entropy(x, y).item(), shape_error);
  }
  SUBCASE("bad options") {
    const Tensor<std::int32_t, 1> y({0, 1, 2});
    CHECK_THROWS_AS((void)cross_entropy(x, y, {1.5, {}}), error);
    CHECK_THROWS_AS((void)cross_entropy(x, y, {-0.1, {}}), error);
    CHECK_THROWS_AS((void)cross_entropy(x, y, {0.0, std::int64_t{1} << 40}), error);
  }
}

TEST_CASE("nll_loss, binary_cross_entropy_with_logits and mse_loss against naive formulas") {
  const Tensor<double, 2> x = sample3(1, 5, 3, 2.0).reshape({5, 3}).eval();
  SUBCASE("nll_loss") {
    const Tensor<std::int64_t, 1> y({2, 0, 1, 1, 0});
    const Tensor<double, 2> lp = eval(log_softmax(x, 1));
    double s = 0;
    std::vector<double> rows;
    for (index_t i = 0; i < 5; ++i) rows.push_back(-lp(i, y(i))), s += rows.back();
    CHECK(nll_loss(lp, y).item() == doctest::Approx(s / 5).epsilon(1e-12));
    CHECK(nll_loss<Reduction::sum>(lp, y).item() == doctest::Approx(s).epsilon(1e-12));
    check_close(values(eval(nll_loss<Reduction::none>(lp, y))), rows);
    CHECK(nll_loss(lp, y, 0).item() == doctest::Approx((s - rows[1] - rows[4]) / 3).epsilon(1e-12));
    // -inf log-probabilities of classes not picked do not leak in (no 0 * -inf).
    const Tensor<double, 2> with_inf({{-INFINITY, -0.5}});
    CHECK(nll_loss(with_inf, Tensor<std::int64_t, 1>({1})).item() == 0.5);
  }
  SUBCASE("binary_cross_entropy_with_logits") {
    const Tensor<double, 2> t = eval((sample3(1, 5, 3) + 1.0) * 0.5).reshape({5, 3}).eval();
    std::vector<double> want;
    for (index_t i = 0; i < 15; ++i) {
      const double v = x.data()[i], tv = t.data()[i], sg = 1 / (1 + std::exp(-v));
      want.push_back(-(tv * std::log(sg) + (1 - tv) * std::log(1 - sg)));
    }
    check_close(values(eval(binary_cross_entropy_with_logits<Reduction::none>(x, t))), want);
    CHECK(binary_cross_entropy_with_logits(x, t).item() == doctest::Approx(total(want) / 15).epsilon(1e-12));
    CHECK(binary_cross_entropy_with_logits<Reduction::sum>(x, t).item() == doctest::Approx(total(want)).epsilon(1e-12));
    const Tensor<double, 1> big({1000.0, -1000.0, 1000.0}), bt({0.0, 1.0, 1.0});
    check_close(values(eval(binary_cross_entropy_with_logits<Reduction::none>(big, bt))), {1000.0, 1000.0, 0.0});
  }
  SUBCASE("mse_loss") {
    const Tensor<double, 2> b = sample3(1, 5, 3, -1.5).reshape({5, 3}).eval();
    std::vector<double> want;
    for (index_t i = 0; i < 15; ++i) want.push_back((x.data()[i] - b.data()[i]) * (x.data()[i] - b.data()[i]));
    check_close(values(eval(mse_loss<Reduction::none>(x, b))), want);
    CHECK(mse_loss(x, b).item() == doctest::Approx(total(want) / 15).epsilon(1e-12));
    CHECK(mse_loss<Reduction::sum>(x, b).item() == doctest::Approx(total(want)).epsilon(1e-12));
    CHECK_THROWS_AS((void)mse_loss(x, zeros<double>({4})).item(), shape_error);
  }
}

// ====================================================================================== normalisation

TEST_CASE("batch_norm: training form, batch statistics and evaluation form against naive loops") {
  const Tensor<double, 4> x = sample3(2, 3, 20, 2.0).reshape({2, 3, 4, 5}).eval();
  const Tensor<double, 1> gamma({0.5, -1.0, 2.0}), beta({0.1, 0.2, -0.3});
  std::vector<double> mean(3, 0), var(3, 0);
  const double n = 2 * 4 * 5;
  for (index_t c = 0; c < 3; ++c) {
    for (index_t i = 0; i < 2; ++i)
      for (index_t h = 0; h < 4; ++h)
        for (index_t w = 0; w < 5; ++w) mean[c] += x(i, c, h, w) / n;
    for (index_t i = 0; i < 2; ++i)
      for (index_t h = 0; h < 4; ++h)
        for (index_t w = 0; w < 5; ++w) var[c] += (x(i, c, h, w) - mean[c]) * (x(i, c, h, w) - mean[c]) / n;
  }
  auto expect = [&](const std::vector<double>& m, const std::vector<double>& v, bool affine, double eps) {
    std::vector<double> out;
    for (index_t i = 0; i < 2; ++i)
      for (index_t c = 0; c < 3; ++c)
        for (index_t h = 0; h < 4; ++h)
          for (index_t w = 0; w < 5; ++w) {
            const double z = (x(i, c, h, w) - m[c]) / std::sqrt(v[c] + eps);
            out.push_back(affine ? z * gamma(c) + beta(c) : z);
          }
    return out;
  };
  check_close(values(eval(batch_norm(x, gamma, beta))), expect(mean, var, true, 1e-5));
  check_close(values(eval(batch_norm(x, 1e-3))), expect(mean, var, false, 1e-3));
  check_close(values(eval(batch_mean(x))), mean);
  check_close(values(eval(batch_var(x, false))), var);
  check_close(values(eval(batch_var(x))), {var[0] * n / (n - 1), var[1] * n / (n - 1), var[2] * n / (n - 1)});
  SUBCASE("evaluation form with running statistics") {
    const std::vector<double> rm = {0.3, -0.2, 1.0}, rv = {2.0, 0.5, 1.5};
    const Tensor<double, 1> rmt = from_vector(rm, {3}), rvt = from_vector(rv, {3});
    check_close(values(eval(batch_norm_eval(x, rmt, rvt, gamma, beta))), expect(rm, rv, true, 1e-5));
    check_close(values(eval(batch_norm_eval(x, rmt, rvt, 0.1))), expect(rm, rv, false, 0.1));
  }
  SUBCASE("a running-statistics update compiled with the step") {
    Tensor<double, 1> running = ones<double>({3});
    running.assign(running * 0.9 + batch_var(x) * 0.1);
    for (int c = 0; c < 3; ++c) CHECK(running(c) == doctest::Approx(0.9 + 0.1 * var[c] * n / (n - 1)).epsilon(1e-12));
  }
  SUBCASE("rank-2 input [N, C]") {
    const Tensor<double, 2> x2 = sample3(1, 6, 3).reshape({6, 3}).eval();
    std::vector<double> m(3, 0), v(3, 0), want;
    for (index_t c = 0; c < 3; ++c) {
      for (index_t i = 0; i < 6; ++i) m[c] += x2(i, c) / 6;
      for (index_t i = 0; i < 6; ++i) v[c] += (x2(i, c) - m[c]) * (x2(i, c) - m[c]) / 6;
    }
    for (index_t i = 0; i < 6; ++i)
      for (index_t c = 0; c < 3; ++c) want.push_back((x2(i, c) - m[c]) / std::sqrt(v[c] + 1e-5) * gamma(c) + beta(c));
    check_close(values(eval(batch_norm(x2, gamma, beta))), want);
  }
  SUBCASE("gamma of the wrong length") {
    CHECK_THROWS_AS((void)eval(batch_norm(x, ones<double>({4}), beta)), shape_error);
    try {
      (void)eval(batch_norm(x, gamma, ones<double>({2})));
      FAIL("no error");
    } catch (const shape_error& e) {
      const std::string m = e.what();
      CHECK(m.find("batch_norm") != std::string::npos);
      CHECK(m.find("[2, 3, 4, 5]") != std::string::npos);
      CHECK(m.find("beta [2]") != std::string::npos);
    }
    CHECK_THROWS_AS((void)eval(batch_norm(x, gamma, beta, -1.0)), error);
  }
  SUBCASE("the statistics of the same node: mean and unbiased variance") {
    auto [m, v] = batch_norm_stats(x, gamma, beta);
    check_close(values(eval(m)), mean);
    check_close(values(eval(v)), {var[0] * n / (n - 1), var[1] * n / (n - 1), var[2] * n / (n - 1)});
  }
  SUBCASE("a Program computes y and the statistics in one batch_norm step") {
    Input<struct bn_prog_x, double, 4> xi("x");
    xi.bind(x);
    auto [m, v] = batch_norm_stats(xi, gamma, beta);
    auto program = compile(batch_norm(xi, gamma, beta), m, v);
    const std::string d = program.describe();
    CAPTURE(d);
    const auto first = d.find("batch_norm");
    REQUIRE(first != std::string::npos);
    CHECK(d.find("batch_norm", first + 1) == std::string::npos);
    const auto& [y, mo, vo] = program.run();
    check_close(values(y), expect(mean, var, true, 1e-5));
    check_close(values(mo), mean);
  }
  SUBCASE("a computed, strided input") {
    const Tensor<double, 4> xt = x.permute({0, 1, 3, 2}).eval();  // [2, 3, 5, 4], read back transposed
    check_close(values(eval(batch_norm(xt.permute({0, 1, 3, 2}) * 1.0, gamma, beta))), expect(mean, var, true, 1e-5));
  }
}

TEST_CASE("batch_norm: float input far from zero, one value per channel, and thread counts") {
  SUBCASE("float with a large offset keeps its precision (the mean is taken before the deviations)") {
    const Tensor<double, 3> xd = (sample3(16, 2, 50) + 1000.0).eval();
    const Tensor<float, 3> xf = xd.to<float>();
    const Tensor<float, 1> g({1.0f, 2.0f}), b({0.0f, 0.5f});
    std::vector<double> want;
    const Tensor<double, 3> xr = xf.to<double>();  // the float values, exactly
    double m[2] = {0, 0}, v[2] = {0, 0};
    for (index_t c = 0; c < 2; ++c) {
      for (index_t i = 0; i < 16; ++i)
        for (index_t j = 0; j < 50; ++j) m[c] += xr(i, c, j) / 800;
      for (index_t i = 0; i < 16; ++i)
        for (index_t j = 0; j < 50; ++j) v[c] += (xr(i, c, j) - m[c]) * (xr(i, c, j) - m[c]) / 800;
    }
    for (index_t i = 0; i < 16; ++i)
      for (index_t c = 0; c < 2; ++c)
        for (index_t j = 0; j < 50; ++j)
          want.push_back((xr(i, c, j) - m[c]) / std::sqrt(v[c] + 1e-5) * (c == 0 ? 1.0 : 2.0) + (c == 0 ? 0.0 : 0.5));
    // Each x - mean loses the bits of 1000 beyond float's 24 (about 6e-5 absolute) over a deviation of about
    // 0.7: a few 1e-4 relative at worst.
    const auto got = values(eval(batch_norm(xf, g, b)));
    REQUIRE(got.size() == want.size());
    double err = 0;
    for (std::size_t i = 0; i < got.size(); ++i) err = std::max(err, std::fabs(got[i] - want[i]));
    CHECK(err < 1e-3);
  }
  SUBCASE("one value per channel: y is beta, the unbiased variance NaN") {
    const Tensor<double, 2> x1({{1.0, -2.0, 3.0}});
    const Tensor<double, 1> g({1.0, 2.0, 3.0}), b({0.5, 0.0, -1.0});
    check_close(values(eval(batch_norm(x1, g, b))), {0.5, 0.0, -1.0});
    for (double v : values(eval(batch_norm_stats(x1, g, b).second))) CHECK(std::isnan(v));
  }
  SUBCASE("the same bits on one thread and on two") {
    const Tensor<float, 3> x = sample3(64, 40, 300, 4.0).to<float>();
    const Tensor<float, 1> g = sample3(1, 1, 40).reshape({40}).eval().to<float>();
    const Tensor<float, 1> b = (g * 0.5f).eval();
    const int before = num_threads();
    set_num_threads(1);
    const auto one = values(eval(batch_norm(x, g, b)));
    set_num_threads(2);
    const auto two = values(eval(batch_norm(x, g, b)));
    set_num_threads(before);
    CHECK(one == two);
  }
}

TEST_CASE("layer_norm over the last one and two axes against a naive loop") {
  const auto x = sample3(2, 3, 4, 1.5);
  for (int k : {1, 2}) {
    CAPTURE(k);
    const index_t group = k == 1 ? 4 : 12;
    std::vector<double> want;
    const auto xv = values(x);
    for (index_t g = 0; g < 24 / group; ++g) {
      double m = 0, v = 0;
      for (index_t i = 0; i < group; ++i) m += xv[static_cast<std::size_t>(g * group + i)] / group;
      for (index_t i = 0; i < group; ++i) {
        const double d = xv[static_cast<std::size_t>(g * group + i)] - m;
        v += d * d / group;
      }
      for (index_t i = 0; i < group; ++i)
        want.push_back((xv[static_cast<std::size_t>(g * group + i)] - m) / std::sqrt(v + 1e-5));
    }
    if (k == 1) {
      check_close(values(eval(layer_norm<1>(x))), want);
      const Tensor<double, 1> gamma({1.0, 2.0, 3.0, 4.0}), beta({0.0, -1.0, 1.0, 0.5});
      auto affine = want;
      for (std::size_t i = 0; i < affine.size(); ++i)
        affine[i] = affine[i] * gamma(index_t(i % 4)) + beta(index_t(i % 4));
      check_close(values(eval(layer_norm(x, gamma, beta))), affine);
    } else {
      check_close(values(eval(layer_norm<2>(x))), want);
      const Tensor<double, 2> gamma = full<double>({3, 4}, 2.0), beta = full<double>({3, 4}, 1.0);
      auto affine = want;
      for (auto& v : affine) v = v * 2 + 1;
      check_close(values(eval(layer_norm(x, gamma, beta))), affine);
    }
  }
}

// ============================================================================================ dropout

TEST_CASE("dropout: statistics, scaling and the determinism of the mask") {
  const index_t n = 100000;
  const double p = 0.3;
  const Tensor<float, 2> x = full<float>({100, 1000}, 2.0f);
  DropoutKey key(77, 5);
  const Tensor<float, 2> y = eval(dropout(x, p, key));
  index_t kept = 0;
  double sum = 0;
  for (float v : y.to_vector()) {
    if (v != 0.0f) {
      ++kept;
      CHECK_MESSAGE(v == doctest::Approx(2.0 / (1 - p)).epsilon(1e-6), "a kept element is scaled by 1 / (1 - p)");
    }
    sum += v;
  }
  const double sigma = std::sqrt(n * p * (1 - p));
  CHECK(std::abs(static_cast<double>(kept) - n * (1 - p)) < 5 * sigma);
  CHECK(std::abs(sum / n - 2.0) < 5 * 2.0 / (1 - p) * sigma / n);  // the mean is preserved
  SUBCASE("the same mask twice in a step, another after advance()") {
    CHECK(values(eval(dropout(x, p, key))) == values(y));
    const DropoutKey copy = key;  // copies share the step
    copy.advance();
    CHECK(key.step() == 1);
    const auto z = values(eval(dropout(x, p, key)));
    CHECK(z != values(y));
    key.set_step(0);
    CHECK(values(eval(dropout(x, p, key))) == values(y));
  }
  SUBCASE("another stream or seed: another mask") {
    CHECK(values(eval(dropout(x, p, DropoutKey(77, 6)))) != values(y));
    CHECK(values(eval(dropout(x, p, DropoutKey(78, 5)))) != values(y));
  }
  SUBCASE("independent of the thread count") {
    set_num_threads(1);
    const auto one = values(eval(dropout(x * 1.0f, p, key)));
    set_num_threads(2);
    const auto two = values(eval(dropout(x * 1.0f, p, key)));
    set_num_threads(0);
    CHECK(one == values(y));
    CHECK(two == values(y));
  }
  SUBCASE("a strided read keeps each element's mask bit") {
    const Tensor<float, 2> xt = full<float>({1000, 100}, 2.0f);
    const auto strided = values(eval(dropout(xt.t(), p, key)));
    CHECK(strided == values(y));  // same shape, same positions
  }
}

TEST_CASE("dropout: evaluation mode, p = 0, p = 1, bad p, and an Input re-bound to other batch sizes") {
  const Tensor<double, 2> x = sample3(1, 4, 6).reshape({4, 6}).eval();
  DropoutKey key(1, 2);
  CHECK(values(eval(dropout(x, 0.5, key, false))) == values(x));
  CHECK(values(eval(dropout(x, 0.0, key))) == values(x));
  for (double v : values(eval(dropout(x, 1.0, key)))) CHECK(v == 0.0);
  CHECK_THROWS_AS((void)dropout(x, 1.5, key), error);
  CHECK_THROWS_AS((void)dropout(x, -0.1, key), error);
  CHECK_THROWS_AS((void)dropout(x, NAN, key), error);
  CHECK_THROWS_AS(DropoutKey(1, std::uint64_t{1} << 32), error);
  Input<struct drop_x, double, 2> xi("x");
  auto d = dropout(xi, 0.5, key);
  xi.bind(x);
  const auto full4 = values(eval(d));
  xi.bind(x.slice(0, 0, 2).eval());
  const auto half = values(eval(d));
  REQUIRE(half.size() == 12);
  // Element i of a [2, 6] batch has the position of element i of the [4, 6] one, so the masks agree there.
  CHECK(std::vector<double>(full4.begin(), full4.begin() + 12) == half);
}

// ========================================================================================== embedding

TEST_CASE("embedding: rows gathered for indices of any rank, with checks") {
  const Tensor<double, 2> w = sample3(1, 5, 3).reshape({5, 3}).eval();
  const Tensor<std::int64_t, 2> idx({{4, 0, 4}, {2, 2, 1}});
  std::vector<double> want;
  for (std::int64_t r : idx.to_vector())
    for (index_t d = 0; d < 3; ++d) want.push_back(w(r, d));
  const Tensor<double, 3> e = eval(embedding(w, idx));
  CHECK(e.shape() == Shape<3>{2, 3, 3});
  CHECK(values(e) == want);
  SUBCASE("int32 indices, a transposed table and a computed table") {
    const Tensor<std::int32_t, 1> i32({1, 3});
    CHECK(values(eval(embedding(w, i32))) == std::vector<double>{w(1, 0), w(1, 1), w(1, 2), w(3, 0), w(3, 1), w(3, 2)});
    const Tensor<double, 2> wt = w.t().eval();
    CHECK(values(eval(embedding(wt.t(), idx))) == want);
    auto twice = want;
    for (auto& v : twice) v *= 2;
    check_close(values(eval(embedding(w * 2.0, idx))), twice);
  }
  SUBCASE("writing into the table it reads") {
    Tensor<double, 2> table = w.clone();
    const Tensor<std::int64_t, 1> perm({4, 3, 2, 1, 0});
    table = embedding(table, perm);
    for (index_t r = 0; r < 5; ++r)
      for (index_t d = 0; d < 3; ++d) CHECK(table(r, d) == w(4 - r, d));
  }
  SUBCASE("an index out of range names embedding, the index and V") {
    const Tensor<std::int64_t, 1> bad({0, 5});
    try {
      (void)eval(embedding(w, bad));
      FAIL("no error");
    } catch (const index_error& ex) {
      const std::string m = ex.what();
      CHECK(m.find("embedding") != std::string::npos);
      CHECK(m.find("index 5") != std::string::npos);
      CHECK(m.find("5 rows") != std::string::npos);
    }
    CHECK_THROWS_AS((void)eval(embedding(w, Tensor<std::int64_t, 1>({-1}))), index_error);
  }
}

// ======================================================================= concat, stack, pad, flatten

TEST_CASE("concat and stack against naive index arithmetic") {
  const auto a = sample3(2, 3, 4), b = sample3(2, 1, 4, 2.0), c = sample3(2, 2, 4, -1.0);
  const Tensor<double, 3> j = eval(concat(1, a, b, c));
  REQUIRE(j.shape() == Shape<3>{2, 6, 4});
  for (index_t i = 0; i < 2; ++i)
    for (index_t q = 0; q < 6; ++q)
      for (index_t k = 0; k < 4; ++k) {
        const double want = q < 3 ? a(i, q, k) : (q < 4 ? b(i, q - 3, k) : c(i, q - 4, k));
        CHECK(j(i, q, k) == want);
      }
  SUBCASE("the last axis, a negative axis and computed operands") {
    const Tensor<double, 3> k2 = eval(concat(-1, a, a * 2.0));
    for (index_t i = 0; i < 2; ++i)
      for (index_t q = 0; q < 3; ++q)
        for (index_t k = 0; k < 8; ++k) CHECK(k2(i, q, k) == (k < 4 ? a(i, q, k) : 2 * a(i, q, k - 4)));
  }
  SUBCASE("stack") {
    const Tensor<double, 4> s = eval(stack(1, a, a * -1.0));
    REQUIRE(s.shape() == Shape<4>{2, 2, 3, 4});
    for (index_t i = 0; i < 2; ++i)
      for (index_t q = 0; q < 3; ++q)
        for (index_t k = 0; k < 4; ++k) {
          CHECK(s(i, 0, q, k) == a(i, q, k));
          CHECK(s(i, 1, q, k) == -a(i, q, k));
        }
    const Tensor<double, 4> last = eval(stack(-1, a, a));
    CHECK(last.shape() == Shape<4>{2, 3, 4, 2});
  }
  SUBCASE("Inputs bound later") {
    Input<struct cat_a, double, 3> ia("a");
    Input<struct cat_b, double, 3> ib("b");
    auto e = concat(0, ia, ib);
    ia.bind(a);
    ib.bind(a);
    CHECK(eval(e).shape() == Shape<3>{4, 3, 4});
    ib.bind(sample3(5, 3, 4));
    CHECK(eval(e).shape() == Shape<3>{7, 3, 4});
  }
  SUBCASE("shape errors name the op and the shapes") {
    try {
      (void)concat(0, a, b);
      FAIL("no error");
    } catch (const shape_error& ex) {
      const std::string m = ex.what();
      CHECK(m.find("concat") != std::string::npos);
      CHECK(m.find("[2, 3, 4]") != std::string::npos);
      CHECK(m.find("[2, 1, 4]") != std::string::npos);
    }
    CHECK_THROWS_AS((void)stack(0, a, b), shape_error);
    CHECK_THROWS_AS((void)concat(3, a, b), index_error);
  }
}

TEST_CASE("pad and flatten against naive index arithmetic") {
  const auto x = sample3(2, 3, 4);
  const Tensor<double, 3> p = eval(pad(x, {{1, 0}, {2, 3}}, -7.0));
  REQUIRE(p.shape() == Shape<3>{2, 4, 9});
  for (index_t i = 0; i < 2; ++i)
    for (index_t q = 0; q < 4; ++q)
      for (index_t k = 0; k < 9; ++k) {
        const bool inside = q >= 1 && k >= 2 && k < 6;
        CHECK(p(i, q, k) == (inside ? x(i, q - 1, k - 2) : -7.0));
      }
  CHECK_THROWS_AS((void)pad(x, {{-1, 0}}), error);
  SUBCASE("pad of a computed expression, every axis") {
    const Tensor<double, 3> q = eval(pad(x * 2.0, {{1, 1}, {0, 0}, {0, 1}}));
    CHECK(q.shape() == Shape<3>{4, 3, 5});
    CHECK(q(0, 0, 0) == 0.0);
    CHECK(q(1, 2, 3) == 2 * x(0, 2, 3));
    CHECK(q(2, 1, 4) == 0.0);
  }
  SUBCASE("flatten") {
    const auto f1 = eval(flatten(x));
    CHECK(f1.shape() == Shape<2>{2, 12});
    CHECK(values(f1) == values(x));
    CHECK(eval(flatten<0>(x)).shape() == Shape<1>{24});
    CHECK(eval(flatten<2>(x)).shape() == Shape<3>{2, 3, 4});
    // A transposed (non-contiguous) operand and a computed one keep row-major order.
    const Tensor<double, 3> xt = x.permute({2, 1, 0}).eval();
    CHECK(values(eval(flatten(xt.permute({2, 1, 0})))) == values(x));
    check_close(values(eval(flatten(x * 3.0))), values(eval(x * 3.0)));
  }
  SUBCASE("flatten of an Input bound later to other batch sizes") {
    Input<struct flat_x, double, 3> xi("x");
    auto f = flatten(xi);
    xi.bind(x);
    CHECK(eval(f).shape() == Shape<2>{2, 12});
    xi.bind(sample3(5, 3, 4));
    CHECK(eval(f).shape() == Shape<2>{5, 12});
  }
}
