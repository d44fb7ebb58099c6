// Tests of metagrad/core/math.hpp: every float function against the double-precision std:: result, in ulps of the
// correctly rounded float, over dense grids, fixed-seed random inputs (uniform in the interesting range, and random bit
// patterns over all floats) and the edge values; the special values exactly; and the double overloads against std::.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <metagrad/core/math.hpp>
#include <numbers>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace mm = metagrad::math;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr double kDInf = std::numeric_limits<double>::infinity();
constexpr float kTrigLimit = 0x1.8p31f;  // sin, cos and tan are accurate below, NaN above

// Values every sweep includes: signed zeros, infinities, NaN, the extremes of the normal and subnormal ranges.
constexpr float kEdges[] = {0.0f,         -0.0f,         kInf,   -kInf,   kNaN,   FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN,
                            FLT_TRUE_MIN, -FLT_TRUE_MIN, 1e-40f, -1e-40f, 1e-30f, -1e-30f, 1e30f,    -1e30f,  1.0f,
                            -1.0f,        0.5f,          -0.5f,  2.0f,    -2.0f,  1e-7f,   -1e-7f,   100.0f,  -100.0f};

std::string hex(double v) {
  std::ostringstream os;
  os << std::hexfloat << v;
  return os.str();
}

/// Distance of got from the exact value want, in units in the last place of the float nearest want (the subnormal
/// spacing below FLT_MIN). 0 when both are NaN, or when want rounds to an infinity that got equals; infinite when
/// only one is NaN or an infinity is missed.
double ulp_error(float got, double want) {
  if (std::isnan(want) || std::isnan(got)) return std::isnan(want) && std::isnan(got) ? 0.0 : kDInf;
  const auto rounded = static_cast<float>(want);
  if (std::isinf(rounded) || std::isinf(got)) return got == rounded ? 0.0 : kDInf;
  const int exponent = want == 0.0 ? -149 : std::max(std::ilogb(want) - 23, -149);
  return std::fabs(static_cast<double>(got) - want) / std::ldexp(1.0, exponent);
}

/// Inputs for a unary function on [lo, hi]: a dense grid, as many uniform draws, as many random bit patterns (every
/// representation equally likely, so all binades and the subnormals are covered) and the edge values. keep filters.
template <class Keep>
std::vector<float> sweep_inputs(float lo, float hi, Keep keep, int n = 1 << 17) {
  std::vector<float> xs;
  std::mt19937 rng(20240531u);
  std::uniform_real_distribution<float> uniform(lo, hi);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  for (int i = 0; i <= n; ++i) xs.push_back(lo + (hi - lo) * static_cast<float>(i) / static_cast<float>(n));
  for (int i = 0; i < n; ++i) xs.push_back(uniform(rng));
  for (int i = 0; i < n; ++i) xs.push_back(std::bit_cast<float>(any_bits(rng)));
  xs.insert(xs.end(), std::begin(kEdges), std::end(kEdges));
  std::erase_if(xs, [&](float x) { return !keep(x); });
  return xs;
}
std::vector<float> sweep_inputs(float lo, float hi) {
  return sweep_inputs(lo, hi, [](float) { return true; });
}

struct Worst {
  double ulps = 0;
  float at = 0;
};

/// The largest error of f against ref (evaluated in double) over xs.
template <class F, class R>
Worst worst_error(F f, R ref, const std::vector<float>& xs) {
  Worst w;
  for (float x : xs) {
    const double e = ulp_error(f(x), ref(static_cast<double>(x)));
    if (!(e <= w.ulps)) w = {e, x};
  }
  return w;
}

/// Checks that f and ref agree to within bound ulps over xs, naming the worst input on failure.
template <class F, class R>
void check_accuracy(F f, R ref, const std::vector<float>& xs, double bound) {
  const Worst w = worst_error(f, ref, xs);
  INFO("max error " << w.ulps << " ulp at x = " << hex(w.at) << " (" << w.at << ")");
  CHECK(w.ulps <= bound);
}

/// Checks f(x) == float(ref(x)) exactly at each of xs: both NaN, or equal with the same sign (of zero too).
template <class F, class R>
void check_special(F f, R ref, std::initializer_list<float> xs) {
  for (float x : xs) {
    const auto want = static_cast<float>(ref(static_cast<double>(x)));
    const float got = f(x);
    INFO("x = " << hex(x) << ": got " << hex(got) << ", want " << hex(want));
    if (std::isnan(want)) {
      CHECK(std::isnan(got));
    } else {
      CHECK(got == want);
      CHECK(std::signbit(got) == std::signbit(want));
    }
  }
}

bool same_float(float got, float want) {
  return std::isnan(want) ? std::isnan(got) : got == want && std::signbit(got) == std::signbit(want);
}

// References in double for the composite functions, written without their cancellations.
double sigmoid_ref(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double softplus_ref(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); }
double gelu_erf_ref(double x) { return x == -kDInf ? -0.0 : 0.5 * x * std::erfc(-x / std::sqrt(2.0)); }
double gelu_tanh_ref(double x) {
  if (x == -kDInf) return -0.0;
  return x / (1.0 + std::exp(-2.0 * std::sqrt(2.0 / std::numbers::pi) * (x + 0.044715 * x * x * x)));
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Exponentials and logarithms

TEST_CASE("math: exp is within 1.5 ulp and exact at the special values") {
  auto f = [](float x) { return mm::exp(x); };
  auto ref = [](double x) { return std::exp(x); };
  check_accuracy(f, ref, sweep_inputs(-104.0f, 89.0f), 1.5);
  SUBCASE("around 0, where the result is close to 1") { check_accuracy(f, ref, sweep_inputs(-1e-3f, 1e-3f), 1.5); }
  SUBCASE("special values, overflow and gradual underflow") {
    check_special(f, ref, {0.0f, -0.0f, kInf, -kInf, kNaN, 89.0f, 1000.0f, -104.0f, -1000.0f});
    CHECK(mm::exp(-100.0f) > 0.0f);  // subnormal, not flushed
  }
}

TEST_CASE("math: exp2 is within 1.5 ulp and exact at the special values") {
  auto f = [](float x) { return mm::exp2(x); };
  auto ref = [](double x) { return std::exp2(x); };
  check_accuracy(f, ref, sweep_inputs(-150.0f, 128.0f), 1.5);
  check_special(f, ref, {0.0f, -0.0f, kInf, -kInf, kNaN, 128.0f, -150.0f, -1000.0f, 1000.0f});
  for (int k = -149; k < 128; ++k) CHECK(mm::exp2(static_cast<float>(k)) == std::ldexp(1.0f, k));
}

TEST_CASE("math: expm1 is within 2 ulp and exact at the special values") {
  auto f = [](float x) { return mm::expm1(x); };
  auto ref = [](double x) { return std::expm1(x); };
  check_accuracy(f, ref, sweep_inputs(-20.0f, 89.0f), 2.0);
  SUBCASE("small arguments keep their relative accuracy") { check_accuracy(f, ref, sweep_inputs(-1e-3f, 1e-3f), 2.0); }
  check_special(f, ref, {0.0f, -0.0f, kInf, -kInf, kNaN, 1e-30f, -1e-30f, FLT_TRUE_MIN, -FLT_TRUE_MIN, 89.0f, -200.0f});
}

TEST_CASE("math: log is within 1 ulp and exact at the special values") {
  auto f = [](float x) { return mm::log(x); };
  auto ref = [](double x) { return std::log(x); };
  check_accuracy(f, ref, sweep_inputs(0.0f, 16.0f), 1.0);
  SUBCASE("around 1") { check_accuracy(f, ref, sweep_inputs(0.99f, 1.01f), 1.0); }
  check_special(f, ref, {0.0f, -0.0f, 1.0f, -1.0f, kInf, -kInf, kNaN, -FLT_TRUE_MIN});
}

TEST_CASE("math: log2 is within 1.5 ulp, exact at powers of two and at the special values") {
  auto f = [](float x) { return mm::log2(x); };
  auto ref = [](double x) { return std::log2(x); };
  check_accuracy(f, ref, sweep_inputs(0.0f, 16.0f), 1.5);
  check_special(f, ref, {0.0f, -0.0f, 1.0f, -1.0f, kInf, -kInf, kNaN});
  for (int k = -149; k < 128; ++k) CHECK(mm::log2(std::ldexp(1.0f, k)) == static_cast<float>(k));
}

TEST_CASE("math: log1p is within 1 ulp and exact at the special values") {
  auto f = [](float x) { return mm::log1p(x); };
  auto ref = [](double x) { return std::log1p(x); };
  check_accuracy(f, ref, sweep_inputs(-1.0f, 16.0f), 1.0);
  SUBCASE("small arguments keep their relative accuracy") { check_accuracy(f, ref, sweep_inputs(-1e-3f, 1e-3f), 1.0); }
  check_special(f, ref, {0.0f, -0.0f, -1.0f, -2.0f, kInf, -kInf, kNaN, FLT_TRUE_MIN, -FLT_TRUE_MIN});
}

// ---------------------------------------------------------------------------------------------------------------
// Trigonometric functions

TEST_CASE("math: sin and cos are within 2 ulp below 3.2e9, NaN beyond, and exact at the special values") {
  auto in_range = [](float x) { return std::fabs(x) < kTrigLimit; };
  const std::vector<float> near = sweep_inputs(-10.0f, 10.0f, in_range);
  const std::vector<float> far = sweep_inputs(-1e5f, 1e5f, in_range);
  auto s = [](float x) { return mm::sin(x); };
  auto c = [](float x) { return mm::cos(x); };
  auto sref = [](double x) { return std::sin(x); };
  auto cref = [](double x) { return std::cos(x); };
  SUBCASE("sin") {
    check_accuracy(s, sref, near, 2.0);
    check_accuracy(s, sref, far, 2.0);
  }
  SUBCASE("cos") {
    check_accuracy(c, cref, near, 2.0);
    check_accuracy(c, cref, far, 2.0);
  }
  SUBCASE("near multiples of pi/2 up to the limit, where the reduction must keep every bit") {
    // The floats closest to multiples of pi/2 in several binades (found by exhaustive search).
    for (float x : {0x1.921fb6p+0f, 0x1.2d97c8p+2f, 0x1.f9cbe2p+7f, 0x1.17cc5p+14f, 0x1.9a48dep+15f, 0x1.04ccbcp+20f,
                    0x1.4ac55cp+23f, 0x1.4665d2p+25f, 0x1.27a94ap+30f}) {
      CHECK(ulp_error(mm::sin(x), std::sin(static_cast<double>(x))) <= 2.0);
      CHECK(ulp_error(mm::cos(x), std::cos(static_cast<double>(x))) <= 2.0);
    }
  }
  SUBCASE("special values and the limit") {
    check_special(s, sref, {0.0f, -0.0f, kInf, -kInf, kNaN});
    check_special(c, cref, {0.0f, -0.0f, kInf, -kInf, kNaN});
    CHECK(std::isnan(mm::sin(kTrigLimit)));
    CHECK(std::isnan(mm::cos(-1e30f)));
    CHECK(!std::isnan(mm::sin(std::nextafter(kTrigLimit, 0.0f))));
  }
}

TEST_CASE("math: tan is within 3 ulp below 3.2e9 and exact at the special values") {
  auto f = [](float x) { return mm::tan(x); };
  auto ref = [](double x) { return std::tan(x); };
  auto in_range = [](float x) { return std::fabs(x) < kTrigLimit; };
  check_accuracy(f, ref, sweep_inputs(-10.0f, 10.0f, in_range), 3.0);
  check_accuracy(f, ref, sweep_inputs(-1e5f, 1e5f, in_range), 3.0);
  check_special(f, ref, {0.0f, -0.0f, kInf, -kInf, kNaN});
  CHECK(std::isnan(mm::tan(1e10f)));
}

TEST_CASE("math: asin and acos are within 2.5 ulp and exact at the special values") {
  const std::vector<float> xs = sweep_inputs(-1.0f, 1.0f);
  auto as = [](float x) { return mm::asin(x); };
  auto ac = [](float x) { return mm::acos(x); };
  auto asref = [](double x) { return std::asin(x); };
  auto acref = [](double x) { return std::acos(x); };
  check_accuracy(as, asref, xs, 2.5);
  check_accuracy(ac, acref, xs, 2.5);
  check_special(as, asref, {0.0f, -0.0f, 1.0f, -1.0f, 1.5f, -1.5f, kInf, -kInf, kNaN});
  check_special(ac, acref, {1.0f, -1.0f, 1.5f, -1.5f, kInf, -kInf, kNaN});
}

TEST_CASE("math: atan is within 2.5 ulp and exact at the special values") {
  auto f = [](float x) { return mm::atan(x); };
  auto ref = [](double x) { return std::atan(x); };
  check_accuracy(f, ref, sweep_inputs(-20.0f, 20.0f), 2.5);
  check_special(f, ref, {0.0f, -0.0f, kInf, -kInf, kNaN, FLT_MAX, -FLT_MAX});
}

TEST_CASE("math: atan2 is within 2.5 ulp and has all of std::atan2's special values") {
  std::mt19937 rng(7u);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  std::uniform_real_distribution<float> uniform(-10.0f, 10.0f);
  double worst = 0;
  float wy = 0, wx = 0;
  for (int i = 0; i < 400000; ++i) {
    const bool wide = i % 2 == 0;
    const float y = wide ? std::bit_cast<float>(any_bits(rng)) : uniform(rng);
    const float x = wide ? std::bit_cast<float>(any_bits(rng)) : uniform(rng);
    const double e = ulp_error(mm::atan2(y, x), std::atan2(static_cast<double>(y), static_cast<double>(x)));
    if (!(e <= worst)) worst = e, wy = y, wx = x;
  }
  INFO("max error " << worst << " ulp at y = " << hex(wy) << ", x = " << hex(wx));
  CHECK(worst <= 2.5);
  const std::initializer_list<float> specials = {0.0f, -0.0f, 1.0f, -1.0f, kInf, -kInf, kNaN, FLT_MAX, -FLT_MAX};
  for (float y : specials) {
    for (float x : specials) {
      const auto want = static_cast<float>(std::atan2(static_cast<double>(y), static_cast<double>(x)));
      INFO("atan2(" << y << ", " << x << ")");
      CHECK(same_float(mm::atan2(y, x), want));
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Hyperbolic functions

TEST_CASE("math: sinh and cosh are within 2 ulp and exact at the special values") {
  const std::vector<float> xs = sweep_inputs(-90.0f, 90.0f);
  auto s = [](float x) { return mm::sinh(x); };
  auto c = [](float x) { return mm::cosh(x); };
  auto sref = [](double x) { return std::sinh(x); };
  auto cref = [](double x) { return std::cosh(x); };
  check_accuracy(s, sref, xs, 2.0);
  check_accuracy(c, cref, xs, 2.0);
  check_accuracy(s, sref, sweep_inputs(-1.0f, 1.0f), 2.0);
  check_special(s, sref, {0.0f, -0.0f, kInf, -kInf, kNaN, 89.5f, -89.5f, 1000.0f});
  check_special(c, cref, {0.0f, -0.0f, kInf, -kInf, kNaN, 89.5f, -89.5f, 1000.0f});
}

TEST_CASE("math: tanh is within 1.5 ulp and exact at the special values") {
  auto f = [](float x) { return mm::tanh(x); };
  auto ref = [](double x) { return std::tanh(x); };
  check_accuracy(f, ref, sweep_inputs(-10.0f, 10.0f), 1.5);
  SUBCASE("small arguments keep their relative accuracy") { check_accuracy(f, ref, sweep_inputs(-1e-3f, 1e-3f), 1.5); }
  check_special(f, ref, {0.0f, -0.0f, kInf, -kInf, kNaN, 9.1f, -9.1f, 20.0f, FLT_MAX, -FLT_MAX, FLT_TRUE_MIN});
}

// ---------------------------------------------------------------------------------------------------------------
// Special functions and activations

TEST_CASE("math: erf is within 1.5 ulp and exact at the special values") {
  auto f = [](float x) { return mm::erf(x); };
  auto ref = [](double x) { return std::erf(x); };
  check_accuracy(f, ref, sweep_inputs(-5.0f, 5.0f), 1.5);
  check_special(f, ref, {0.0f, -0.0f, kInf, -kInf, kNaN, 4.0f, -4.0f, 100.0f, FLT_TRUE_MIN, -FLT_TRUE_MIN});
}

TEST_CASE("math: pow is within 1.5 ulp and has all of std::pow's special values") {
  std::mt19937 rng(11u);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  double worst = 0;
  float wx = 0, wy = 0;
  for (int i = 0; i < 400000; ++i) {
    float x, y;
    switch (i % 4) {
      case 0:  // anything
        x = std::bit_cast<float>(any_bits(rng));
        y = std::bit_cast<float>(any_bits(rng));
        break;
      case 1:  // moderate magnitudes, results near the overflow and underflow thresholds included
        x = std::exp(10.0f * unit(rng));
        y = 40.0f * unit(rng);
        break;
      case 2:  // x near 1 with large y: needs log2 x well beyond float precision
        x = 1.0f + 0.01f * unit(rng);
        y = 20000.0f * unit(rng);
        break;
      default:  // negative x with integer y
        x = 100.0f * unit(rng);
        y = std::round(30.0f * unit(rng));
        break;
    }
    const double e = ulp_error(mm::pow(x, y), std::pow(static_cast<double>(x), static_cast<double>(y)));
    if (!(e <= worst)) worst = e, wx = x, wy = y;
  }
  INFO("max error " << worst << " ulp at x = " << hex(wx) << ", y = " << hex(wy));
  CHECK(worst <= 1.5);
  const std::initializer_list<float> specials = {
      0.0f,     -0.0f,        1.0f,          -1.0f,   0.5f,           -0.5f,       2.0f,        -2.0f,
      3.0f,     -3.0f,        2.5f,          -2.5f,   kInf,           -kInf,       kNaN,        FLT_MAX,
      -FLT_MAX, FLT_TRUE_MIN, -FLT_TRUE_MIN, 0x1p24f, 0x1p24f + 2.0f, 16777215.0f, -16777215.0f};
  for (float x : specials) {
    for (float y : specials) {
      const auto want = static_cast<float>(std::pow(static_cast<double>(x), static_cast<double>(y)));
      INFO("pow(" << hex(x) << ", " << hex(y) << "): got " << hex(mm::pow(x, y)) << ", want " << hex(want));
      if (std::isinf(want) || std::isnan(want) || want == 0.0f || x == 1.0f || y == 0.0f || std::isinf(x) ||
          std::isinf(y) || std::isnan(x) || std::isnan(y) || x == 0.0f) {
        CHECK(same_float(mm::pow(x, y), want));
      } else {
        CHECK(ulp_error(mm::pow(x, y), std::pow(static_cast<double>(x), static_cast<double>(y))) <= 1.5);
      }
    }
  }
}

TEST_CASE("math: sigmoid is within 2.5 ulp, subnormal in the far negative tail, and exact at the special values") {
  auto f = [](float x) { return mm::sigmoid(x); };
  check_accuracy(f, sigmoid_ref, sweep_inputs(-110.0f, 30.0f), 2.5);
  check_special(f, sigmoid_ref, {0.0f, -0.0f, kInf, -kInf, kNaN, 20.0f, -200.0f});
  CHECK(mm::sigmoid(-100.0f) > 0.0f);
}

TEST_CASE("math: softplus is within 2 ulp and exact at the special values") {
  auto f = [](float x) { return mm::softplus(x); };
  check_accuracy(f, softplus_ref, sweep_inputs(-110.0f, 40.0f), 2.0);
  check_special(f, softplus_ref, {kInf, -kInf, kNaN, -200.0f, FLT_MAX});
}

TEST_CASE("math: gelu_erf is within 3 ulp, its negative tail included, and exact at the special values") {
  auto f = [](float x) { return mm::gelu_erf(x); };
  check_accuracy(f, gelu_erf_ref, sweep_inputs(-16.0f, 8.0f), 3.0);
  check_special(f, gelu_erf_ref, {0.0f, -0.0f, kInf, -kInf, kNaN, -20.0f, FLT_MAX, -FLT_MAX});
}

TEST_CASE("math: gelu_tanh is within 4 ulp, its negative tail included, and exact at the special values") {
  auto f = [](float x) { return mm::gelu_tanh(x); };
  check_accuracy(f, gelu_tanh_ref, sweep_inputs(-12.0f, 12.0f), 4.0);
  check_special(f, gelu_tanh_ref, {0.0f, -0.0f, kInf, -kInf, kNaN, -20.0f, FLT_MAX, -FLT_MAX});
}

// ---------------------------------------------------------------------------------------------------------------
// Double overloads: libm, so they must agree with std:: exactly (the composites with their stable formulas).

TEST_CASE("math: the double overloads are std::'s functions") {
  for (double x : {-3.5, -1.0, -0.25, 0.0, 0.3, 1.0, 2.5, 40.0}) {
    CAPTURE(x);
    CHECK(mm::exp(x) == std::exp(x));
    CHECK(mm::exp2(x) == std::exp2(x));
    CHECK(mm::expm1(x) == std::expm1(x));
    CHECK(mm::sin(x) == std::sin(x));
    CHECK(mm::cos(x) == std::cos(x));
    CHECK(mm::tan(x) == std::tan(x));
    CHECK(mm::atan(x) == std::atan(x));
    CHECK(mm::sinh(x) == std::sinh(x));
    CHECK(mm::cosh(x) == std::cosh(x));
    CHECK(mm::tanh(x) == std::tanh(x));
    CHECK(mm::erf(x) == std::erf(x));
    CHECK(mm::atan2(x, 0.75) == std::atan2(x, 0.75));
    CHECK(mm::pow(1.5, x) == std::pow(1.5, x));
    CHECK(mm::sigmoid(x) == doctest::Approx(sigmoid_ref(x)).epsilon(1e-15));
    CHECK(mm::softplus(x) == doctest::Approx(softplus_ref(x)).epsilon(1e-15));
    CHECK(mm::gelu_erf(x) == doctest::Approx(gelu_erf_ref(x)).epsilon(1e-15));
    CHECK(mm::gelu_tanh(x) == doctest::Approx(gelu_tanh_ref(x)).epsilon(1e-14));
  }
  for (double x : {1e-300, 0.5, 1.0, 3.0, 1e300}) {
    CHECK(mm::log(x) == std::log(x));
    CHECK(mm::log2(x) == std::log2(x));
    CHECK(mm::log1p(x) == std::log1p(x));
  }
  for (double x : {-1.0, -0.5, 0.0, 0.5, 1.0}) {
    CHECK(mm::asin(x) == std::asin(x));
    CHECK(mm::acos(x) == std::acos(x));
  }
  CHECK(mm::sigmoid(-1000.0) == 0.0);
  CHECK(mm::sigmoid(1000.0) == 1.0);
  CHECK(mm::gelu_erf(-kDInf) == 0.0);
  CHECK(std::signbit(mm::gelu_tanh(-kDInf)));
  CHECK(mm::softplus(1000.0) == 1000.0);
}
