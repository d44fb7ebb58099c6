// metagrad/core/math.hpp — the scalar math functions fused elementwise loops call: exp, exp2, expm1, log, log2,
// log1p, sin, cos, tan, asin, acos, atan, atan2, sinh, cosh, tanh, erf, pow, sigmoid, softplus and the two GELUs,
// in namespace metagrad::math, for float and double. The float versions are written so that a loop calling them
// auto-vectorises (g++ 12 and clang -O3, SSE2 upwards, with or without -fmath-errno): no libm calls, no branches, no
// data-dependent lookups, only range reduction, polynomials, bit manipulation and selects, all forced inline. The
// double versions call libm: that path is for accuracy, not speed. Under nvcc's device pass every function is the
// CUDA math library's. Include <metagrad/core.hpp> instead of this file.
//
// Accuracy: beside each float function is the largest error in ulps (of the correctly rounded result) measured
// against the double-precision libm value, with and without FMA contraction, over a third of all floats (every
// third bit pattern) and the tests' sweeps. Special values (NaN, infinities, signed zeros, poles, overflow) follow
// std::, and results in the subnormal range underflow gradually: nothing is flushed. This assumes IEEE arithmetic:
// -ffinite-math-only (part of -ffast-math) breaks the NaN and infinity handling, and -fassociative-math may
// reassociate the split-constant sums and cost ulps.
#pragma once

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>

#include "config.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace math {

namespace detail {

// The helpers below are host-only: the public functions call them only outside nvcc's device pass.

inline constexpr float kInf = std::numeric_limits<float>::infinity();
inline constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
inline constexpr float kPio2Hi = 0x1.921fb6p+0f;  // pi/2 = kPio2Hi + kPio2Lo to ~48 bits
inline constexpr float kPio2Lo = -0x1.777a5cp-25f;
inline constexpr float kPiHi = 0x1.921fb6p+1f;
inline constexpr float kPiLo = -0x1.777a5cp-24f;
// pi/4 with its last three bits clear, so that k * kPio4Hi is exact for k = 0..4.
inline constexpr float kPio4Hi = 0x1.921fbp-1f;
inline constexpr float kPio4Lo = 0x1.5110b4p-23f;

// Bit-level work is done in unsigned arithmetic, so that the garbage lanes (NaN, out-of-range arguments whose result
// is selected away later) wrap instead of overflowing.
METAGRAD_INLINE std::uint32_t bits(float x) { return std::bit_cast<std::uint32_t>(x); }
METAGRAD_INLINE float from_bits(std::uint32_t i) { return std::bit_cast<float>(i); }

/// c ? a : b, without a branch. A plain ?: reaches g++'s middle end as a branch; jump threading then duplicates the
/// code behind it (after a clamp to a constant, the rest folds on that path), and the if-conversion that should undo
/// it refuses blocks holding a division or an int-to-float conversion, so the loop stays scalar. The mask form never
/// becomes a branch, and g++ still emits a blend or a masked move for it. Conditions combine with & and |, never the
/// short-circuiting && and ||, and must come from 32-bit comparisons: SSE2 cannot narrow a double comparison's mask.
METAGRAD_INLINE float select_mask(std::uint32_t m, float a, float b) {
  return from_bits((bits(a) & m) | (bits(b) & ~m));
}
METAGRAD_INLINE float select(bool c, float a, float b) { return select_mask(0u - static_cast<std::uint32_t>(c), a, b); }
METAGRAD_INLINE std::int32_t select(bool c, std::int32_t a, std::int32_t b) {
  const std::uint32_t m = 0u - static_cast<std::uint32_t>(c);
  return static_cast<std::int32_t>((static_cast<std::uint32_t>(a) & m) | (static_cast<std::uint32_t>(b) & ~m));
}

/// c0 + x (c1 + x (c2 + ...)): Horner's rule, coefficients lowest order first.
template <class T, class... Cs>
METAGRAD_INLINE T poly(T x, T c0, Cs... cs) {
  if constexpr (sizeof...(Cs) == 0) {
    return c0;
  } else {
    return c0 + x * poly(x, static_cast<T>(cs)...);
  }
}

/// The integer nearest x (ties to even), for |x| < 2^22. Adding 1.5 * 2^23 leaves no fraction bits, so the addition
/// itself rounds and the integer lands in the low significand bits. Reading it back with bit_cast rather than a
/// float-to-int conversion keeps NaN and infinity defined (they give some integer; callers select them away).
METAGRAD_INLINE std::int32_t round_to_int(float x) {
  return static_cast<std::int32_t>(bits(x + 0x1.8p23f) - 0x4B400000u);
}

/// 2^n, exactly, for n in [-126, 127].
METAGRAD_INLINE float pow2(std::int32_t n) { return from_bits(static_cast<std::uint32_t>(n + 127) << 23); }

/// x * 2^n for n in [-252, 254]. Two power-of-two factors cover the whole range, and the second product rounds only
/// once, so results that overflow become inf and results in the subnormal range underflow gradually.
METAGRAD_INLINE float ldexp2(float x, std::int32_t n) {
  const std::int32_t h = n >> 1;
  return x * pow2(h) * pow2(n - h);
}

/// sqrt(z) for z = 0 or z in [2^-126, 1]. std::sqrt would keep the loop scalar: under the default -fmath-errno g++
/// guards it with a branch to the library call that sets errno for negative arguments. An estimate of 1/sqrt(z) from
/// the bit pattern (Lomont's constant, 3.5e-3), two Newton steps in float, and one correction in double, where
/// z - s*s is exact, give the correctly rounded root but in rare near-halfway cases.
METAGRAD_INLINE float sqrt_unit(float z) {
  float y = from_bits(0x5F375A86u - (bits(z) >> 1));
  y = y * (1.5f - 0.5f * z * y * y);
  y = y * (1.5f - 0.5f * z * y * y);
  const double s = static_cast<double>(z * y);
  return static_cast<float>(s + 0.5 * static_cast<double>(y) * (static_cast<double>(z) - s * s));
}

/// e^(x + lo) = 2^n p: Cody-Waite reduction x = n ln2 + r with |r| <= ln2/2 (ln2 split so that n * 0.693359375 is
/// exact and x - n * 0.693359375 too), then p = e^r by an own degree-6 minimax polynomial (relative error 3.1e-9). lo
/// (|lo| <= 2^-20 |x|) carries the part of an argument float cannot hold (x as hi + lo); it joins r, where it rounds
/// finely. The default -0.0f folds away (r + -0 is r even for r = -0).
struct ExpParts {
  float p;
  std::int32_t n;
};
METAGRAD_INLINE ExpParts exp_parts(float x, float lo = -0.0f) {
  const std::int32_t n = round_to_int(x * 1.44269504088896341f);
  const float fn = static_cast<float>(n);
  const float r = ((x - fn * 0.693359375f) + lo) - fn * -2.12194440e-4f;
  return {poly(r, 1.0f, 1.0f, 0.499999933379f, 0.166665190054f, 0.0416684072084f, 0.00836891371618f, 0.00138141898636f),
          n};
}

/// e^(x + lo) * 2^k for |k| <= 64, lo as for exp_parts. NaN propagates; |x| is clamped at 110, where the result has
/// already underflowed or overflowed, and the scaling by ldexp2 produces inf, subnormals and 0 as they come.
METAGRAD_INLINE float exp_kernel(float x, float lo = -0.0f, std::int32_t k = 0) {
  const ExpParts e = exp_parts(select(std::fabs(x) > 110.0f, std::copysign(110.0f, x), x), lo);
  return ldexp2(e.p, e.n + k);
}

/// 2^r for |r| <= 1/2 (Cephes exp2f minimax polynomial).
METAGRAD_INLINE float exp2_poly(float r) {
  return 1.0f + r * poly(r, 6.931472028550421e-1f, 2.402264791363012e-1f, 5.550332471162809e-2f, 9.618437357674640e-3f,
                         1.339887440266574e-3f, 1.535336188319500e-4f);
}

/// 2^t for a double t (pow's exponent, which needs more than float's precision): n = round(t) in float, the
/// fraction t - n exactly in double, then rounded to float. Where |t| > 160, n is clamped to +-160 and the fraction
/// dropped, which still overflows or underflows correctly; NaN propagates.
METAGRAD_INLINE float exp2_wide(double t) {
  const float tf = static_cast<float>(t);
  const std::int32_t n = round_to_int(select(std::fabs(tf) > 160.0f, std::copysign(160.0f, tf), tf));
  const float r = static_cast<float>(t - static_cast<double>(n));
  return ldexp2(exp2_poly(select(std::fabs(r) > 1.0f, 0.0f, r)), n);
}

/// x = 2^e * m with m in [sqrt(1/2), sqrt(2)), for positive finite x (subnormals included; other inputs give
/// garbage the callers select away). Offsetting the bits by those of sqrt(1/2) before splitting makes the exponent
/// field step over at sqrt(2) instead of 2 (the musl logf trick).
struct Mantissa {
  float m, e;
};
METAGRAD_INLINE Mantissa split_mantissa(float x) {
  const bool subnormal = x < 0x1p-126f;
  x = select(subnormal, x * 0x1p23f, x);
  const std::uint32_t ix = bits(x) + (0x3F800000u - 0x3F3504F3u);
  const std::int32_t e = static_cast<std::int32_t>(ix >> 23) - select(subnormal, 150, 127);
  return {from_bits((ix & 0x007FFFFFu) + 0x3F3504F3u), static_cast<float>(e)};
}

/// f - f^2/2 + f^3 P(f) ~ log(1 + f) - f - ... : the Cephes logf polynomial, for f = m - 1 in [-0.293, 0.415].
/// Returns the part beyond f (that is log(1 + f) - f), so callers can add f last and keep its bits.
METAGRAD_INLINE float log1p_tail(float f) {
  const float z = f * f;
  const float p = poly(f, 3.3333331174e-1f, -2.4999993993e-1f, 2.0000714765e-1f, -1.6668057665e-1f, 1.4249322787e-1f,
                       -1.2420140846e-1f, 1.1676998740e-1f, -1.1514610310e-1f, 7.0376836292e-2f);
  return f * z * p - 0.5f * z;
}

/// log2(x) in double, to about 2^-40 relative, for pow: x = 2^e m, and log2(m) = 2/ln2 atanh(s) with s = f/(2+f)
/// in [-0.172, 0.172], summed as the odd series (8 terms). Positive finite x only (pow handles the rest).
METAGRAD_INLINE double log2_wide(float x) {
  const Mantissa s = split_mantissa(x);
  const double f = static_cast<double>(s.m) - 1.0;
  const double t = f / (2.0 + f);
  const double t2 = t * t;
  return static_cast<double>(s.e) + t * poly(t2, 2.8853900817779268, 0.9617966939259756, 0.5770780163555853,
                                             0.4121985831111324, 0.3205988979753252, 0.2623081892525388,
                                             0.22195308321368667, 0.19235933878519512);
}

/// Reduction for sin, cos and tan: x = j pi/2 + r with |r| <= pi/4, returned as (r, j mod 2^32). Done in double with
/// a three-part Cody-Waite split of pi/2 (22 + 22 + 53 bits, so j * part is exact for |j| < 2^31): the subtraction
/// loses nothing even where x is close to a multiple of pi/2 (no float below 2^31 comes closer than 2^-28, so r
/// keeps full float precision). Valid for |x| < kTrigLimit; j is rounded with the 1.5 * 2^52 trick and read from the
/// low bits, which stays defined for any input. Beyond the limit floats are multiples of 256 and an exact reduction
/// needs pi to ~200 bits (Payne-Hanek): a table, or ~50 more double operations on every element; the trigonometric
/// functions return NaN there instead.
inline constexpr float kTrigLimit = 0x1.8p31f;  // 3.2e9: |j| <= 2^31 * 1.5 * 2/pi < 2^31
struct Reduced {
  float r;
  std::uint32_t j;
};
METAGRAD_INLINE Reduced reduce_pio2(float x) {
  const double xd = x;
  const double t = xd * 0.6366197723675814 + 0x1.8p52;
  const auto j = static_cast<std::uint32_t>(std::bit_cast<std::uint64_t>(t));
  const double jd = static_cast<std::int32_t>(j);
  const double r = ((xd - jd * 0x1.921fb8p+0) - jd * -0x1.5dde98p-23) - jd * 0x1.8469898cc517p-48;
  return {static_cast<float>(r), j};
}

/// sin(r) and cos(r) for |r| <= pi/4 (Cephes sinf/cosf minimax polynomials).
METAGRAD_INLINE float sin_poly(float r, float z) {
  return r + r * z * poly(z, -1.6666654611e-1f, 8.3321608736e-3f, -1.9515295891e-4f);
}
METAGRAD_INLINE float cos_poly(float z) {
  return (z * z * poly(z, 4.166664568298827e-2f, -1.388731625493765e-3f, 2.443315711809948e-5f) - 0.5f * z) + 1.0f;
}

/// sin(|x| + q pi/2) from the reduction of |x|: quadrant bit 0 picks sine or cosine, bit 1 flips the sign, and so
/// does sign, x's sign bit for the odd sine (reducing |x| and restoring the sign keeps sin(-0) = -0).
METAGRAD_INLINE float sin_quadrant(float x, Reduced red, std::uint32_t q, std::uint32_t sign) {
  const float z = red.r * red.r;
  const float v = select((q & 1) != 0, cos_poly(z), sin_poly(red.r, z));
  const float res = from_bits(bits(v) ^ ((q & 2) << 30) ^ sign);
  return select(std::fabs(x) < kTrigLimit, res, kNaN);
}

/// atan(t) for |t| <= tan(pi/8) (Cephes atanf polynomial).
METAGRAD_INLINE float atan_poly(float t) {
  const float z = t * t;
  return t + t * z * poly(z, -3.33329491539e-1f, 1.99777106478e-1f, -1.38776856032e-1f, 8.05374449538e-2f);
}

/// asin(s) for s in [0, 1/2], z = s^2 (Cephes asinf polynomial).
METAGRAD_INLINE float asin_poly(float s, float z) {
  return s + s * z * poly(z, 1.6666752422e-1f, 7.4953002686e-2f, 4.5470025998e-2f, 2.4181311049e-2f, 4.2163199048e-2f);
}

/// erf(x) for |x| < 0.875, as x + x Q(x^2) (own minimax fit, relative error 8.5e-9): writing erf(x)/x - 1 rather
/// than erf(x)/x keeps the rounding of the leading 2/sqrt(pi) out of the result.
METAGRAD_INLINE float erf_small(float x) {
  return x + x * poly(x * x, 0.1283791575f, -0.3761255046f, 0.1128245533f, -0.02679146307f, 0.005032181372f,
                      -0.000620325538f);
}

/// log, log2 or log1p's result res, or its special value where the argument u (x, or 1 + x for log1p) is outside
/// (0, inf): -inf at 0, NaN below, u itself for inf and NaN.
METAGRAD_INLINE float log_special(float u, float res) {
  const float special = select(u == 0.0f, -kInf, select(u < 0.0f, kNaN, u));
  return select((u > 0.0f) & (u < kInf), res, special);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------------------------
// Exponentials and logarithms

/// e^x. Max error 1.17 ulp. exp(-inf) = +0, exp(+inf) = inf, overflow (x > 88.72) gives inf, and results below FLT_MIN
/// underflow gradually (subnormals are produced, not flushed).
METAGRAD_HD METAGRAD_INLINE float exp(float x) {
#if defined(__CUDA_ARCH__)
  return ::expf(x);
#else
  return detail::exp_kernel(x);
#endif
}

/// 2^x. Max error 1.22 ulp. Special values and underflow as exp.
METAGRAD_HD METAGRAD_INLINE float exp2(float x) {
#if defined(__CUDA_ARCH__)
  return ::exp2f(x);
#else
  x = detail::select(std::fabs(x) > 160.0f, std::copysign(160.0f, x), x);
  const std::int32_t n = detail::round_to_int(x);
  return detail::ldexp2(detail::exp2_poly(x - static_cast<float>(n)), n);
#endif
}

/// e^x - 1, accurate near 0. Max error 1.56 ulp. expm1(+-0) = +-0, expm1(-inf) = -1, expm1(inf) = inf.
///
/// With x = n ln2 + r: e^x - 1 = 2 (2^(n-1) expm1(r) + (2^(n-1) - 1/2)). The halved scale keeps 2^(n-1)
/// representable up to the overflow threshold, the bracket rounds once, and for n = 0 it is exactly expm1(r).
METAGRAD_HD METAGRAD_INLINE float expm1(float x) {
#if defined(__CUDA_ARCH__)
  return ::expm1f(x);
#else
  const float xc = detail::select(std::fabs(x) > 89.0f, std::copysign(89.0f, x), x);
  const std::int32_t n = detail::round_to_int(xc * 1.44269504088896341f);
  const float fn = static_cast<float>(n);
  const float r = (xc - fn * 0.693359375f) - fn * -2.12194440e-4f;
  const float em = detail::poly(r, 5.0000001201e-1f, 1.6666665459e-1f, 4.1665795894e-2f, 8.3334519073e-3f,
                                1.3981999507e-3f, 1.9875691500e-4f) *
                       (r * r) +
                   r;
  const float h = detail::ldexp2(1.0f, n - 1);  // subnormal for n < -125, where the result is -1 anyway
  const float res = 2.0f * (h * em + (h - 0.5f));
  return detail::select(std::fabs(x) < 0x1p-24f, x, res);  // keeps -0 and subnormals exact
#endif
}

/// Natural logarithm. Max error 0.89 ulp. log(+-0) = -inf, log(x < 0) = NaN, log(inf) = inf; subnormal inputs are
/// handled exactly.
METAGRAD_HD METAGRAD_INLINE float log(float x) {
#if defined(__CUDA_ARCH__)
  return ::logf(x);
#else
  const detail::Mantissa s = detail::split_mantissa(x);
  const float f = s.m - 1.0f;  // exact (Sterbenz)
  const float res = (f + (detail::log1p_tail(f) + s.e * -2.12194440e-4f)) + s.e * 0.693359375f;
  return detail::log_special(x, res);
#endif
}

/// Base-2 logarithm. Max error 1.44 ulp; exact at powers of two. Special values as log.
METAGRAD_HD METAGRAD_INLINE float log2(float x) {
#if defined(__CUDA_ARCH__)
  return ::log2f(x);
#else
  const detail::Mantissa s = detail::split_mantissa(x);
  const float f = s.m - 1.0f;
  const float y = detail::log1p_tail(f);
  // log2e = 1 + 0.44269504...: multiplying f by the fraction part only keeps f's own bits exact (Cephes log2f).
  constexpr float kLog2eM1 = 0.44269504088896340736f;
  const float res = (((y * kLog2eM1 + f * kLog2eM1) + y) + f) + s.e;
  return detail::log_special(x, res);
#endif
}

/// log(1 + x), accurate near 0. Max error 0.90 ulp. log1p(+-0) = +-0, log1p(-1) = -inf, log1p(x < -1) = NaN,
/// log1p(inf) = inf.
///
/// u = 1 + x is split as for log, and the rounding error of the addition, recovered exactly as x - (u - 1) (or
/// 1 - (u - x) once x >= 1), is added back as its first-order effect c / u.
METAGRAD_HD METAGRAD_INLINE float log1p(float x) {
#if defined(__CUDA_ARCH__)
  return ::log1pf(x);
#else
  const float u = 1.0f + x;
  const detail::Mantissa s = detail::split_mantissa(u);
  const float f = s.m - 1.0f;
  const float c = detail::select(x >= 1.0f, 1.0f - (u - x), x - (u - 1.0f)) / u;
  const float res = (f + (detail::log1p_tail(f) + (s.e * -2.12194440e-4f + c))) + s.e * 0.693359375f;
  // Below 2^-24, log1p(x) rounds to x; returning x keeps -0 and subnormals exact.
  return detail::log_special(u, detail::select(std::fabs(x) < 0x1p-24f, x, res));
#endif
}

// ---------------------------------------------------------------------------------------------------------------
// Trigonometric functions

/// Sine. Max error 1.55 ulp for |x| < 3.2e9 (1.5 * 2^31); beyond that bound, where floats are multiples of 256, the
/// result is NaN (see detail::reduce_pio2). sin(+-0) = +-0, sin(+-inf) = NaN.
METAGRAD_HD METAGRAD_INLINE float sin(float x) {
#if defined(__CUDA_ARCH__)
  return ::sinf(x);
#else
  const detail::Reduced red = detail::reduce_pio2(std::fabs(x));
  return detail::sin_quadrant(x, red, red.j, detail::bits(x) & 0x80000000u);
#endif
}

/// Cosine. Max error 1.55 ulp, range as sin (NaN beyond 3.2e9). cos(+-inf) = NaN.
METAGRAD_HD METAGRAD_INLINE float cos(float x) {
#if defined(__CUDA_ARCH__)
  return ::cosf(x);
#else
  const detail::Reduced red = detail::reduce_pio2(std::fabs(x));
  return detail::sin_quadrant(x, red, red.j + 1u, 0u);  // cos x = sin(|x| + pi/2)
#endif
}

/// Tangent. Max error 2.78 ulp, range as sin (NaN beyond 3.2e9). tan(+-0) = +-0, tan(+-inf) = NaN.
METAGRAD_HD METAGRAD_INLINE float tan(float x) {
#if defined(__CUDA_ARCH__)
  return ::tanf(x);
#else
  const detail::Reduced red = detail::reduce_pio2(std::fabs(x));
  const float z = red.r * red.r;
  // Cephes tanf polynomial on |r| <= pi/4; tan(r + pi/2) = -1/tan(r); x's sign restored at the end (tan is odd).
  const float t = red.r + red.r * z *
                              detail::poly(z, 3.33331568548e-1f, 1.33387994085e-1f, 5.34112807005e-2f,
                                           2.44301354525e-2f, 3.11992232697e-3f, 9.38540185543e-3f);
  const float res = detail::select_mask(0u - (red.j & 1u), -1.0f / t, t);
  return detail::select(std::fabs(x) < detail::kTrigLimit,
                        detail::from_bits(detail::bits(res) ^ (detail::bits(x) & 0x80000000u)), detail::kNaN);
#endif
}

/// Inverse sine. Max error 2.35 ulp. asin(+-0) = +-0, asin(+-1) = +-pi/2, |x| > 1 gives NaN.
///
/// Above 1/2, asin(a) = pi/2 - 2 asin(sqrt((1 - a)/2)), which brings the argument back under 1/2.
METAGRAD_HD METAGRAD_INLINE float asin(float x) {
#if defined(__CUDA_ARCH__)
  return ::asinf(x);
#else
  const float a = std::fabs(x);
  const bool big = a > 0.5f;
  const float z = detail::select(big, 0.5f * (1.0f - a), a * a);
  const float s = detail::select(big, detail::sqrt_unit(z), a);
  const float p = detail::asin_poly(s, z);
  const float res = detail::select(big, detail::kPio2Hi - (2.0f * p - detail::kPio2Lo), p);
  return detail::select(a <= 1.0f, std::copysign(res, x), detail::kNaN);
#endif
}

/// Inverse cosine. Max error 1.14 ulp. acos(1) = +0, acos(-1) = pi, |x| > 1 gives NaN.
METAGRAD_HD METAGRAD_INLINE float acos(float x) {
#if defined(__CUDA_ARCH__)
  return ::acosf(x);
#else
  const float a = std::fabs(x);
  const bool big = a > 0.5f;
  const float z = detail::select(big, 0.5f * (1.0f - a), a * a);
  const float s = detail::select(big, detail::sqrt_unit(z), a);
  const float p = detail::asin_poly(s, z);
  // acos x = 2 asin(sqrt((1 - x)/2)) for x > 1/2, pi - that for x < -1/2, pi/2 - asin x in between.
  const float outer = detail::select(x > 0.0f, 2.0f * p, detail::kPiHi - (2.0f * p - detail::kPiLo));
  const float res = detail::select(big, outer, detail::kPio2Hi - (std::copysign(p, x) - detail::kPio2Lo));
  return detail::select(a <= 1.0f, res, detail::kNaN);
#endif
}

/// Inverse tangent. Max error 2.30 ulp. atan(+-0) = +-0, atan(+-inf) = +-pi/2.
///
/// The argument is brought under tan(pi/8) by atan a = pi/4 + atan((a-1)/(a+1)) or pi/2 + atan(-1/a); the
/// multiple of pi/4 is added in two parts so the result keeps full precision.
METAGRAD_HD METAGRAD_INLINE float atan(float x) {
#if defined(__CUDA_ARCH__)
  return ::atanf(x);
#else
  const float a = std::fabs(x);
  const bool big = a > 2.414213562373095f;
  const bool mid = a > 0.4142135623730950f;
  const float num = detail::select(big, -1.0f, detail::select(mid, a - 1.0f, a));
  const float den = detail::select(big, a, detail::select(mid, a + 1.0f, 1.0f));
  const float k = static_cast<float>(static_cast<int>(big) + static_cast<int>(mid));
  const float res = k * detail::kPio4Hi + (k * detail::kPio4Lo + detail::atan_poly(num / den));
  return std::copysign(res, x);
#endif
}

/// Angle of the point (x, y), in [-pi, pi]. Max error 2.22 ulp (over 2e8 random pairs). All of std::atan2's special
/// values: atan2(+-0, +0) =
/// +-0, atan2(+-0, -0) = +-pi, atan2(+-inf, +-inf) = +-pi/4 or +-3pi/4, atan2(y, +-0) = +-pi/2, NaN if either is NaN.
///
/// With t = min(|x|,|y|) / max(|x|,|y|) in [0, 1], reduced once more around 1 as for atan, the angle is
/// k pi/4 +- atan(t') for k in 0..4: swapping x and y and the left half-plane only change k and the sign.
METAGRAD_HD METAGRAD_INLINE float atan2(float y, float x) {
#if defined(__CUDA_ARCH__)
  return ::atan2f(y, x);
#else
  const float ax = std::fabs(x);
  const float ay = std::fabs(y);
  const bool swap = ay > ax;
  const bool same = ax == ay;  // 0/0 and inf/inf: the ratio is taken as 0 or 1 instead
  // Scaled by 1/4 near the top of the range so that num + den below cannot overflow.
  const float scale = detail::select((ax > 0x1p126f) | (ay > 0x1p126f), 0.25f, 1.0f);
  const float num = detail::select(same, detail::select(ax == 0.0f, 0.0f, 1.0f), detail::select(swap, ax, ay) * scale);
  const float den = detail::select(same, 1.0f, detail::select(swap, ay, ax) * scale);
  const bool mid = num > 0.4142135623730950f * den;
  const float t = detail::select(mid, num - den, num) / detail::select(mid, num + den, den);
  const float p = detail::atan_poly(t);
  // angle = base + sign (k0 pi/4 + p): base pi/2 when swapped, pi in the left half-plane, pi/2 for both;
  // the inner part is subtracted when exactly one of the two applies.
  const bool left = std::signbit(x);
  const bool flip = swap != left;
  const float base = detail::select(swap, 2.0f, detail::select(left, 4.0f, 0.0f));
  const float k = base + detail::select(flip, -1.0f, 1.0f) * static_cast<float>(static_cast<int>(mid));
  const float res = k * detail::kPio4Hi + (k * detail::kPio4Lo + detail::select(flip, -p, p));
  return std::copysign(res, y);
#endif
}

// ---------------------------------------------------------------------------------------------------------------
// Hyperbolic functions

/// Hyperbolic sine. Max error 1.66 ulp. sinh(+-0) = +-0, sinh(+-inf) = +-inf, overflow (|x| > 89.42) gives +-inf.
///
/// |x| < 1: the Cephes odd polynomial (no cancellation); above, e^|x|/2 - 1/(4 (e^|x|/2)), with e^|x|/2 computed
/// directly so it does not overflow before sinh does.
METAGRAD_HD METAGRAD_INLINE float sinh(float x) {
#if defined(__CUDA_ARCH__)
  return ::sinhf(x);
#else
  const float a = std::fabs(x);
  const float z = x * x;
  const float small = x + x * z * detail::poly(z, 1.66667160211e-1f, 8.33028376239e-3f, 2.03721912945e-4f);
  const float h = detail::exp_kernel(a, -0.0f, -1);
  return detail::select(a < 1.0f, small, std::copysign(h - 0.25f / h, x));
#endif
}

/// Hyperbolic cosine, e^|x|/2 + 1/(4 (e^|x|/2)). Max error 1.60 ulp. cosh(+-inf) = inf, overflow (|x| > 89.42) gives
/// inf.
METAGRAD_HD METAGRAD_INLINE float cosh(float x) {
#if defined(__CUDA_ARCH__)
  return ::coshf(x);
#else
  const float h = detail::exp_kernel(std::fabs(x), -0.0f, -1);
  return h + 0.25f / h;
#endif
}

/// Hyperbolic tangent. Max error 1.35 ulp. tanh(+-0) = +-0, tanh(+-inf) = +-1.
///
/// |x| < 0.625: the Cephes odd polynomial, which keeps relative accuracy for tiny x where 1 - 2/(e^2x + 1) would
/// cancel; above, 1 - 2/(e^2|x| + 1).
METAGRAD_HD METAGRAD_INLINE float tanh(float x) {
#if defined(__CUDA_ARCH__)
  return ::tanhf(x);
#else
  const float a = std::fabs(x);
  const float z = a * a;
  const float small = a + a * z *
                              detail::poly(z, -3.33332819422e-1f, 1.33314422036e-1f, -5.37397155531e-2f,
                                           2.06390887954e-2f, -5.70498872745e-3f);
  // e^2a as in exp_parts, with the constants halved so that 2a is never formed. From 9.1 on tanh rounds to 1; the
  // clamp keeps e^2a small enough for a single power-of-two factor.
  const float ac = detail::select(a > 9.1f, 9.1f, a);
  const std::int32_t n = detail::round_to_int(ac * 2.88539008177792681f);
  const auto fn = static_cast<float>(n);
  const float rh = (ac - fn * 0.3466796875f) - fn * -1.06097220e-4f;
  const float e =
      detail::poly(rh, 1.0f, 2.0f, 1.99999973352f, 1.33332152043f, 0.666694515334f, 0.267805238918f, 0.088410815127f);
  const float big = 1.0f - 2.0f / (e * detail::pow2(n) + 1.0f);
  // Both parts are computed from |x| and the sign restored last, which also keeps tanh(-0) = -0.
  return std::copysign(detail::select(a < 0.625f, small, big), x);
#endif
}

// ---------------------------------------------------------------------------------------------------------------
// Special functions and activations

/// Error function. Max error 1.33 ulp. erf(+-0) = +-0, erf(+-inf) = +-1.
///
/// |x| < 0.875: odd polynomial. Above, 1 - erfc(|x|) with erfc(u) = e^(P(u) - u^2), P a degree-6 minimax fit of
/// log(erfc u) + u^2 on [0.875, 4] weighted for erfc's absolute error (1.8e-9); erf is 1 in float from 3.92 on, so u
/// is clamped at 4. Only erfc's absolute error matters here, so float arithmetic throughout is enough.
METAGRAD_HD METAGRAD_INLINE float erf(float x) {
#if defined(__CUDA_ARCH__)
  return ::erff(x);
#else
  const float a = std::fabs(x);
  const float u = detail::select(a > 4.0f, 4.0f, a);
  const float p = detail::poly(u, -0.000144213972332f, -1.12788937301f, 0.363179324565f, -0.10425017789f,
                               0.0223810177427f, -0.00308199265679f, 0.000199901011122f);
  const detail::ExpParts e = detail::exp_parts(p - u * u);
  const float erfc = e.p * detail::pow2(e.n);
  return detail::select(a < 0.875f, detail::erf_small(x), std::copysign(1.0f - erfc, x));
#endif
}

/// x^y. Max error 1.35 ulp (over 2e8 random pairs: any floats, bases near 1, integer exponents). Follows std::pow's
/// special cases: pow(x, +-0) = 1 and pow(1, y) = 1 even for NaN; pow(-1, +-inf) = 1; negative finite x with
/// non-integer finite y gives NaN; pow(+-0, y) is +-0 or +-inf (sign kept for odd integer y); pow(x, +-inf) and
/// pow(+-inf, y) by |x| against 1 and the sign of y; NaN otherwise propagates. Overflow gives inf; tiny results
/// underflow gradually.
///
/// |x|^y = 2^(y log2|x|) with log2 and the product in double (y log2|x| reaches 150 in magnitude, so float's 24 bits
/// would cost up to 2^7 ulps), then the sign from y's parity.
METAGRAD_HD METAGRAD_INLINE float pow(float x, float y) {
#if defined(__CUDA_ARCH__)
  return ::powf(x, y);
#else
  const float ax = std::fabs(x);
  const float ay = std::fabs(y);
  float mag = detail::exp2_wide(static_cast<double>(y) * detail::log2_wide(ax));
  // |x| = 0 or inf: 0 or inf by whether y < 0 agrees with |x| = 0; NaN in either argument gives NaN.
  const bool zero = ax == 0.0f;
  mag = detail::select(zero | (ax == detail::kInf), detail::select((y < 0.0f) == zero, detail::kInf, 0.0f), mag);
  mag = detail::select((ax != ax) | (ay != ay), x + y, mag);
  // Every float from 2^24 on (and inf) is an even integer; below, truncation decides.
  const float yc = detail::select(ay < 0x1p24f, ay, 0.0f);
  const auto yi = static_cast<std::int32_t>(yc);
  const bool y_int = static_cast<float>(yi) == yc;
  // Negative x and odd integer y flip the sign: x's sign bit, masked by y's units bit moved to the sign position.
  const std::uint32_t flip = detail::bits(x) & (static_cast<std::uint32_t>(yi) << 31) & (0u - std::uint32_t{y_int});
  const float signed_mag = detail::from_bits(detail::bits(mag) ^ flip);
  const bool domain_error = (x < 0.0f) & (x > -detail::kInf) & !y_int;
  const bool one = (y == 0.0f) | (x == 1.0f) | ((x == -1.0f) & (ay == detail::kInf));
  return detail::select(one, 1.0f, detail::select(domain_error, detail::kNaN, signed_mag));
#endif
}

/// The logistic function 1 / (1 + e^-x). Max error 2.40 ulp. sigmoid(-inf) = +0, sigmoid(inf) = 1; for x < -87.3 the
/// result is subnormal and is produced (not flushed).
///
/// With e = e^-|x| <= 1: 1/(1 + e) for x >= 0 and e/(1 + e) for x < 0, so neither side overflows or cancels.
METAGRAD_HD METAGRAD_INLINE float sigmoid(float x) {
#if defined(__CUDA_ARCH__)
  return 1.0f / (1.0f + ::expf(-x));
#else
  const float e = detail::exp_kernel(-std::fabs(x));
  return detail::select(x >= 0.0f, 1.0f, e) / (1.0f + e);
#endif
}

/// softplus(x) = log(1 + e^x), computed as max(x, 0) + log1p(e^-|x|), which neither overflows nor loses the small
/// values for negative x. Max error 1.75 ulp. softplus(-inf) = +0, softplus(inf) = inf.
METAGRAD_HD METAGRAD_INLINE float softplus(float x) {
#if defined(__CUDA_ARCH__)
  return ::fmaxf(x, 0.0f) + ::log1pf(::expf(-::fabsf(x)));
#else
  return detail::select(x > 0.0f, x, 0.0f) + math::log1p(detail::exp_kernel(-std::fabs(x)));
#endif
}

/// GELU with the exact Gaussian CDF, x Phi(x) = x/2 (1 + erf(x / sqrt 2)). Max error 2.63 ulp, the negative tail
/// included: there 1 + erf(u) = erfc(|u|) is computed directly rather than by cancellation. gelu_erf(inf) = inf,
/// gelu_erf(-inf) = -0 (the limit); subnormal results are produced, down to x = -14.8 where they round to -0.
///
/// With u = |x|/sqrt2: erfc(u) = e^A, A = -u^2 + P(u), for u < 2, and e^A / u, A = -u^2 + P(1/u^2), above; P are
/// own degree-8 minimax fits of log(e^(u^2) erfc u) and log(u e^(u^2) erfc u) (absolute error 3.1e-9, so erfc keeps
/// that relative accuracy), selected coefficient by coefficient for one Horner pass. The coefficients are
/// rescaled to take |x| and 1/x^2, so u's rounding never enters, and the exponent -x^2/2 + P is summed in double and
/// passed to exp as hi + lo: erfc is steep, and the float rounding of that sum alone would cost up to |A| 2^-24
/// relative.
METAGRAD_HD METAGRAD_INLINE float gelu_erf(float x) {
#if defined(__CUDA_ARCH__)
  return x < -15.0f ? -0.0f : x * ::normcdff(x);
#else
  const float ax = detail::select(std::fabs(x) > 14.8f, 14.8f, std::fabs(x));  // erfc(u) < 2^-158 beyond
  const double x2 = static_cast<double>(ax) * static_cast<double>(ax);
  const float s = 1.0f / static_cast<float>(x2);
  const bool near = ax < 2.82842712f;  // u < 2
  // Near: the fit is in |x| - 1.75, centred, so Horner's terms shrink instead of cancelling.
  const float w = detail::select(near, ax - 1.75f, s);
  // P = c0 + w T(w), summed with -x^2/2 in double, so that only the small w T carries float rounding.
  const float c0 = detail::select(near, -0.993000816214f, -0.57236500523f);
  constexpr float kNear[] = {-0.403747765591f,    0.065214632643f,   -0.0116957345371f,  0.00197320143179f,
                             -0.000287979286478f, 3.12581865938e-5f, -1.20552731664e-7f, -9.25993840522e-7f};
  constexpr float kFar[] = {-0.999974827679f, 2.49631142527f, -12.0625342756f, 76.5830496055f,
                            -487.104972521f,  2455.94362082f, -7920.1809166f,  11722.8210555f};
  float t = detail::select(near, kNear[7], kFar[7]);
  for (int k = 6; k >= 0; --k) t = t * w + detail::select(near, kNear[k], kFar[k]);
  const double a = (static_cast<double>(c0) - 0.5 * x2) + static_cast<double>(w * t);
  const auto ah = static_cast<float>(a);
  const detail::ExpParts ep = detail::exp_parts(ah, static_cast<float>(a - static_cast<double>(ah)));
  const float e = detail::ldexp2(ep.p, ep.n);
  const float uf = ax * 0.70710678118654752f;
  const float es = detail::erf_small(uf);
  // x >= 0: x/2 (2 - erfc u), where erfc's far form e^A/u = e^A sqrt2 |x| / x^2. x < 0: x/2 erfc u, which far
  // out is x/2 e^A / u = -e^A / sqrt2.
  const float pos =
      0.5f * x * detail::select(uf < 0.875f, 1.0f + es, 2.0f - detail::select(near, e, e * 1.41421356237f * ax * s));
  const float neg =
      detail::select(uf < 0.45f, 0.5f * x * (1.0f - es), detail::select(near, 0.5f * x * e, -0.70710678118654752f * e));
  return detail::select(x >= 0.0f, pos, neg);
#endif
}

/// GELU with the tanh approximation, x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Max error 3.52 ulp (3.21
/// where the compiler contracts to FMA, e.g. -march=native). Computed as x sigmoid(2v), the same function without the
/// cancellation of 1 + tanh for negative x, with 2v formed in double (sigmoid's relative error grows like |2v|
/// times the relative error of 2v). gelu_tanh(inf) = inf, gelu_tanh(-inf) = -0 (the limit); results for x < -12,
/// below 1e-60, are returned as -0.
METAGRAD_HD METAGRAD_INLINE float gelu_tanh(float x) {
#if defined(__CUDA_ARCH__)
  return x < -12.0f ? -0.0f : x / (1.0f + ::expf(-1.5957691216057308f * (x + 0.044715f * x * x * x)));
#else
  const double xd = detail::select(std::fabs(x) > 12.0f, std::copysign(12.0f, x), x);
  const double v2 = 1.5957691216057308 * (xd + 0.044715 * xd * xd * xd);
  const double na = -std::fabs(v2);
  const float hi = static_cast<float>(na);
  // e^-|2v| scaled by 2^64, so that it stays normal wherever the result does.
  const float es = detail::exp_kernel(hi, static_cast<float>(na - static_cast<double>(hi)), 64);
  const bool neg = x < 0.0f;  // the sign of v
  const float q = detail::select(neg, es, 1.0f) / (1.0f + es * 0x1p-64f);
  const float res = x * q * detail::select(neg, 0x1p-64f, 1.0f);
  return detail::select(x < -12.0f, -0.0f, res);
#endif
}

// ---------------------------------------------------------------------------------------------------------------
// Double precision: libm (or CUDA's double functions on the device), accuracy first. The composite functions use
// the same stable formulations as the float versions.

#if defined(__CUDA_ARCH__)
#define METAGRAD_MATH_DOUBLE_(name) \
  METAGRAD_HD METAGRAD_INLINE double name(double x) { return ::name(x); }
#else
#define METAGRAD_MATH_DOUBLE_(name) \
  METAGRAD_HD METAGRAD_INLINE double name(double x) { return std::name(x); }
#endif
METAGRAD_MATH_DOUBLE_(exp)
METAGRAD_MATH_DOUBLE_(exp2)
METAGRAD_MATH_DOUBLE_(expm1)
METAGRAD_MATH_DOUBLE_(log)
METAGRAD_MATH_DOUBLE_(log2)
METAGRAD_MATH_DOUBLE_(log1p)
METAGRAD_MATH_DOUBLE_(sin)
METAGRAD_MATH_DOUBLE_(cos)
METAGRAD_MATH_DOUBLE_(tan)
METAGRAD_MATH_DOUBLE_(asin)
METAGRAD_MATH_DOUBLE_(acos)
METAGRAD_MATH_DOUBLE_(atan)
METAGRAD_MATH_DOUBLE_(sinh)
METAGRAD_MATH_DOUBLE_(cosh)
METAGRAD_MATH_DOUBLE_(tanh)
METAGRAD_MATH_DOUBLE_(erf)
#undef METAGRAD_MATH_DOUBLE_

/// Angle of (x, y): std::atan2.
METAGRAD_HD METAGRAD_INLINE double atan2(double y, double x) {
#if defined(__CUDA_ARCH__)
  return ::atan2(y, x);
#else
  return std::atan2(y, x);
#endif
}

/// x^y: std::pow.
METAGRAD_HD METAGRAD_INLINE double pow(double x, double y) {
#if defined(__CUDA_ARCH__)
  return ::pow(x, y);
#else
  return std::pow(x, y);
#endif
}

/// 1 / (1 + e^-x), as e/(1 + e) with e = e^x for x < 0 so the negative side neither overflows nor loses precision.
METAGRAD_HD METAGRAD_INLINE double sigmoid(double x) {
  const double e = math::exp(-(x < 0.0 ? -x : x));
  const double s = 1.0 / (1.0 + e);
  return x >= 0.0 ? s : e * s;
}

/// log(1 + e^x) as max(x, 0) + log1p(e^-|x|).
METAGRAD_HD METAGRAD_INLINE double softplus(double x) {
  return (x > 0.0 ? x : 0.0) + math::log1p(math::exp(-(x < 0.0 ? -x : x)));
}

/// x/2 erfc(-x / sqrt 2), which equals x/2 (1 + erf(x / sqrt 2)) without its cancellation for negative x.
/// gelu_erf(-inf) = -0. Far in the negative tail the relative error grows like x^2 ulp: erfc's condition
/// number there amplifies the rounding of its argument (the float version avoids it with extra precision).
METAGRAD_HD METAGRAD_INLINE double gelu_erf(double x) {
#if defined(__CUDA_ARCH__)
  const double res = 0.5 * x * ::erfc(-0.7071067811865476 * x);
#else
  const double res = 0.5 * x * std::erfc(-0.7071067811865476 * x);
#endif
  return x < -DBL_MAX ? -0.0 : res;  // x = -inf (DBL_MAX, unlike numeric_limits, is usable in device code)
}

/// x sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)), which equals the tanh form without its cancellation for negative x.
/// gelu_tanh(-inf) = -0. In the negative tail the relative error grows like |2v| ulp (v the sigmoid's
/// argument), for the same reason as gelu_erf.
METAGRAD_HD METAGRAD_INLINE double gelu_tanh(double x) {
  const double res = x * math::sigmoid(1.5957691216057308 * (x + 0.044715 * x * x * x));
  return x < -DBL_MAX ? -0.0 : res;  // x = -inf (DBL_MAX, unlike numeric_limits, is usable in device code)
}

}  // namespace math

METAGRAD_NAMESPACE_END
