// Shared helpers of the elementwise tests (tests/expr/test_elementwise*.cpp): ulp distance with NaN matching
// NaN, the edge values and random inputs of each dtype, and tensors whose values sit in a non-contiguous
// layout so that the strided loop runs beside the flat one. Nothing here calls metagrad to compute a
// reference value: the references are std:: functions in double (long double for double tensors).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <metagrad/metagrad.hpp>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace mg = metagrad;

namespace elementwise_test {

using mg::index_t;

/// Distance in units in the last place between a and b: 0 when both are NaN or equal (+0 and -0 included),
/// "infinitely far" when only one is NaN or when they differ and one is infinite.
template <class T>
std::uint64_t ulp_distance(T a, T b) {
  static_assert(std::is_floating_point_v<T>);
  constexpr auto far = std::numeric_limits<std::uint64_t>::max();
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b) ? 0 : far;
  if (a == b) return 0;
  if (std::isinf(a) || std::isinf(b)) return far;
  using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  // In sign-magnitude form the magnitude bits count ulps from zero: the distance is their difference for equal
  // signs and their sum across zero (-0 and +0 both have magnitude 0).
  constexpr Bits sign = Bits{1} << (sizeof(T) * 8 - 1);
  const Bits ba = std::bit_cast<Bits>(a), bb = std::bit_cast<Bits>(b);
  const std::uint64_t ma = ba & ~sign, mb = bb & ~sign;
  if ((ba & sign) != (bb & sign)) return ma + mb;
  return ma > mb ? ma - mb : mb - ma;
}

/// Bitwise identity, with every NaN equal to every NaN: the flat and the strided loop run the same functor,
/// so they must agree exactly.
template <class T>
bool same_value(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return std::bit_cast<std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>(a) ==
           std::bit_cast<std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>(b);
  } else {
    return a == b;
  }
}

template <class T>
std::string show(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g (%a)", static_cast<double>(v), static_cast<double>(v));
    return buf;
  } else {
    return std::to_string(v);
  }
}

/// Special and boundary values of a floating dtype: zeros of both signs, ones, infinities, NaN, the largest,
/// smallest normal and smallest subnormal magnitudes, and a few large and tiny decades.
template <class T>
std::vector<T> edge_values() {
  using L = std::numeric_limits<T>;
  std::vector<T> base = {T(0),     T(0.5),          T(1),          T(1.5),   T(2),     T(2.5),  T(3),
                         T(10),    T(100),          T(1e-3),       T(1e-10), T(1e-30), T(1e30), L::max(),
                         L::min(), L::denorm_min(), L::infinity(), T(0.875), T(4),     T(20),   T(30)};
  std::vector<T> out;
  for (T v : base) {
    out.push_back(v);
    out.push_back(-v);
  }
  out.push_back(L::quiet_NaN());
  out.push_back(-L::quiet_NaN());
  return out;
}

/// Random values of a floating dtype at several magnitudes: [-1, 1], [-10, 10], log-uniform magnitudes over
/// 1e-8..1e8 and over (nearly) the whole range of the dtype, each with a random sign. `max_magnitude` caps the
/// wide decades (the trigonometric functions are specified only below ~3.37e9).
template <class T>
std::vector<T> random_values(std::mt19937& rng, std::size_t n, double max_magnitude = 1e300) {
  const double wide = std::min<double>(std::log10(max_magnitude), sizeof(T) == 4 ? 37.5 : 300.0);
  std::uniform_real_distribution<double> unit(-1.0, 1.0), ten(-10.0, 10.0), mid(-8.0, std::min(8.0, wide)),
      all(sizeof(T) == 4 ? -37.5 : -300.0, wide);
  std::bernoulli_distribution neg(0.5);
  std::vector<T> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    double v;
    switch (i % 4) {
      case 0:
        v = unit(rng);
        break;
      case 1:
        v = ten(rng);
        break;
      case 2:
        v = std::pow(10.0, mid(rng));
        break;
      default:
        v = std::pow(10.0, all(rng));
        break;
    }
    out[i] = static_cast<T>(i % 4 >= 2 && neg(rng) ? -v : v);
  }
  return out;
}

/// Uniform random integers in [lo, hi].
template <class T>
std::vector<T> random_ints(std::mt19937& rng, std::size_t n, std::int64_t lo, std::int64_t hi) {
  std::uniform_int_distribution<std::int64_t> d(lo, hi);
  std::vector<T> out(n);
  for (auto& v : out) v = static_cast<T>(d(rng));
  return out;
}

/// A rank-1 contiguous tensor of `vals`: its expressions take the flat, vectorised loop.
template <class T>
mg::Tensor<T, 1> flat_tensor(const std::vector<T>& vals) {
  mg::Tensor<T, 1> t;
  t.allocate(mg::Shape<1>{static_cast<index_t>(vals.size())});
  for (std::size_t i = 0; i < vals.size(); ++i) t.data()[i] = vals[i];
  return t;
}

/// `vals` repeated cyclically up to a multiple of 7 elements (at least 14), so that it can be laid out as a
/// matrix with more than one row and more than one column.
template <class T>
std::vector<T> padded_to_matrix(const std::vector<T>& vals) {
  std::vector<T> out = vals;
  for (std::size_t i = 0; out.size() < 14 || out.size() % 7 != 0; ++i) out.push_back(vals[i % vals.size()]);
  return out;
}

/// A [7, n/7] tensor holding `vals` column-major, so that its transpose t() is a [n/7, 7] view whose row-major
/// order is `vals`: a non-contiguous leaf, which takes the strided loop. @pre vals.size() is a multiple of 7.
template <class T>
mg::Tensor<T, 2> transposed_storage(const std::vector<T>& vals) {
  constexpr index_t cols = 7;
  const index_t rows = static_cast<index_t>(vals.size()) / cols;
  REQUIRE(rows * cols == static_cast<index_t>(vals.size()));
  mg::Tensor<T, 2> s;
  s.allocate(mg::Shape<2>{cols, rows});
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) s.data()[j * rows + i] = vals[static_cast<std::size_t>(i * cols + j)];
  return s;
}

/// Evaluates op(x) for x holding `vals` twice: contiguous (the flat, vectorised loop) and as a transposed view
/// (the strided loop). CHECKs that the two paths really were taken and gave identical bits (NaN equal to NaN),
/// and returns the values in the order of `vals`.
template <class T, class Op>
auto evaluate_flat_and_strided(const std::vector<T>& vals, Op&& op) {
  const auto padded = padded_to_matrix(vals);
  const auto x = flat_tensor(padded);
  const auto s = transposed_storage(padded);
  using R = mg::expr_value_t<decltype(op(x))>;
  CHECK(mg::lower_expr(op(x), x.shape()).is_flat());
  CHECK_FALSE(mg::lower_expr(op(s.t()), mg::Shape<2>{s.shape()[1], s.shape()[0]}).is_flat());
  const mg::Tensor<R, 1> flat = op(x);
  const mg::Tensor<R, 2> strided = op(s.t());
  auto vf = flat.to_vector();
  const auto vs = strided.to_vector();
  REQUIRE(vf.size() == padded.size());
  REQUIRE(vs.size() == padded.size());
  std::size_t differ = 0, first = 0;
  for (std::size_t i = 0; i < vf.size(); ++i)
    if (!same_value<R>(vf[i], vs[i]) && differ++ == 0) first = i;
  CHECK_MESSAGE(differ == 0, "flat and strided loops differ at ", differ, " elements; first at input ",
                show<T>(padded[first]), ": ", show<R>(vf[first]), " vs ", show<R>(vs[first]));
  vf.resize(vals.size());
  return vf;
}

/// The same for a binary op(x, y) over two value lists of equal length.
template <class A, class B, class Op>
auto evaluate_flat_and_strided(const std::vector<A>& a, const std::vector<B>& b, Op&& op) {
  REQUIRE(a.size() == b.size());
  const auto pa = padded_to_matrix(a);
  const auto pb = padded_to_matrix(b);
  const auto xa = flat_tensor(pa), xb = flat_tensor(pb);
  const auto sa = transposed_storage(pa), sb = transposed_storage(pb);
  using R = mg::expr_value_t<decltype(op(xa, xb))>;
  CHECK(mg::lower_expr(op(xa, xb), xa.shape()).is_flat());
  CHECK_FALSE(mg::lower_expr(op(sa.t(), sb.t()), mg::Shape<2>{sa.shape()[1], sa.shape()[0]}).is_flat());
  const mg::Tensor<R, 1> flat = op(xa, xb);
  const mg::Tensor<R, 2> strided = op(sa.t(), sb.t());
  auto vf = flat.to_vector();
  const auto vs = strided.to_vector();
  REQUIRE(vf.size() == pa.size());
  REQUIRE(vs.size() == pa.size());
  std::size_t differ = 0, first = 0;
  for (std::size_t i = 0; i < vf.size(); ++i)
    if (!same_value<R>(vf[i], vs[i]) && differ++ == 0) first = i;
  CHECK_MESSAGE(differ == 0, "flat and strided loops differ at ", differ, " elements; first at inputs ",
                show<A>(pa[first]), ", ", show<B>(pb[first]), ": ", show<R>(vf[first]), " vs ", show<R>(vs[first]));
  vf.resize(a.size());
  return vf;
}

/// Concatenation of value lists.
template <class T>
std::vector<T> concat(std::vector<T> a, const std::vector<T>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

/// What a math function of T computes in and returns: double for double, float for everything else.
template <class T>
using result_t = std::conditional_t<std::is_same_v<T, double>, double, float>;
/// The precision of the reference: double for float results, long double (64-bit significand) for double.
template <class T>
using ref_t = std::conditional_t<std::is_same_v<T, double>, long double, double>;

/// Edge values and random values at several magnitudes (floating T), or small and extreme integers.
template <class T>
std::vector<T> math_inputs(std::mt19937& rng, double max_magnitude = 1e300) {
  if constexpr (std::is_floating_point_v<T>) {
    auto edges = edge_values<T>();
    std::erase_if(edges, [&](T v) { return std::fabs(static_cast<double>(v)) > max_magnitude && !std::isinf(v); });
    return concat(edges, random_values<T>(rng, 4000, max_magnitude));
  } else {
    using L = std::numeric_limits<T>;
    const bool capped = max_magnitude < static_cast<double>(L::max());
    const T cap = capped ? static_cast<T>(max_magnitude) : L::max();
    std::vector<T> edges = {0, 1, -1, 2, -2, 3, 7, -7, cap, static_cast<T>(-cap)};
    if (!capped) edges.push_back(L::min());
    return concat(edges, random_ints<T>(rng, 700, -60, 60));
  }
}

/// The error of `got` against the exact value `want` (computed in a wider type), in units in the last place of
/// the R nearest `want` (the subnormal spacing below the smallest normal): the metric of the bounds documented in
/// core/math.hpp. A correctly rounded result is within 0.5. 0 when both are NaN, or when want rounds to an
/// infinity that got equals; infinite when only one is NaN or an infinity is missed.
template <class R, class W>
double ulp_error(R got, W want) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  if (std::isnan(want) || std::isnan(got)) return std::isnan(want) && std::isnan(got) ? 0.0 : inf;
  const R rounded = static_cast<R>(want);
  if (std::isinf(rounded) || std::isinf(got)) return got == rounded ? 0.0 : inf;
  using L = std::numeric_limits<R>;
  const int tiny = L::min_exponent - L::digits;  // exponent of the smallest subnormal: -149, -1074
  const int exponent = want == 0 ? tiny : std::max(static_cast<int>(std::ilogb(want)) - (L::digits - 1), tiny);
  return static_cast<double>(std::fabs(static_cast<W>(got) - want) / std::ldexp(W(1), exponent));
}

/// The error bound of one function in ulps (the metric of ulp_error): `f` for float results, `d` for double
/// results. `d_per_x2` and `d_per_x3` add that many ulps per unit of x^2 and |x|^3 to the double bound (formulas
/// whose rounded intermediate the result is that sensitive to). `per_x_if_tiny` adds that many ulps per unit of
/// |x| when |result| < FLT_MIN |x| (DBL_MIN for double), i.e. when a result x * s had a subnormal factor s, whose
/// few-ulp error is absolute and gets multiplied by x.
struct Bound {
  double f, d;
  double d_per_x2 = 0;
  double d_per_x3 = 0;
  double per_x_if_tiny = 0;
};

template <class R, class W>
double bound_at(const Bound& b, R x, W want) {
  const double base = std::is_same_v<R, float> ? b.f : b.d;
  const double ax = std::fabs(static_cast<double>(x));
  if (!std::isfinite(ax)) return base;  // NaN and infinite inputs have exact special results
  double extra = std::fabs(static_cast<double>(want)) < std::numeric_limits<R>::min() * ax ? b.per_x_if_tiny * ax : 0.0;
  if constexpr (std::is_same_v<R, double>) extra += b.d_per_x2 * ax * ax + b.d_per_x3 * ax * ax * ax;
  return base + extra;
}

/// op(x) for every input, flat and strided, against ref(x): the exact value computed in ref_t<T> from x converted
/// to the function's compute type (integers compute in float).
template <class T, class Op, class Ref>
void check_unary(const std::vector<T>& in, Op&& op, Ref&& ref, Bound bound) {
  using R = result_t<T>;
  using RefT = ref_t<T>;
  const auto got = evaluate_flat_and_strided(in, op);
  static_assert(std::is_same_v<typename decltype(got)::value_type, R>, "math functions of T return result_t<T>");
  std::size_t bad = 0, worst_i = 0;
  double worst = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const R x = static_cast<R>(in[i]);
    const RefT want = ref(static_cast<RefT>(x));
    const double e = ulp_error(got[i], want);
    if (!(e <= bound_at(bound, x, want))) {
      ++bad;
      if (!(e < worst)) worst = e, worst_i = i;
    }
  }
  const R wx = static_cast<R>(in[worst_i]);
  CHECK_MESSAGE(bad == 0, bad, " of ", in.size(), " results beyond the bound; worst (", worst,
                " ulp) at x = ", show(in[worst_i]), ": got ", show(got[worst_i]), ", want ",
                show(static_cast<double>(ref(static_cast<RefT>(wx)))));
}

/// The same for op(a, b) against ref(a, b), with a fixed bound in ulps.
template <class T, class Op, class Ref>
void check_binary(const std::vector<T>& a, const std::vector<T>& b, Op&& op, Ref&& ref, double ulps) {
  using R = result_t<T>;
  using RefT = ref_t<T>;
  const auto got = evaluate_flat_and_strided(a, b, op);
  static_assert(std::is_same_v<typename decltype(got)::value_type, R>);
  std::size_t bad = 0, worst_i = 0;
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const RefT want = ref(static_cast<RefT>(static_cast<R>(a[i])), static_cast<RefT>(static_cast<R>(b[i])));
    const double e = ulp_error(got[i], want);
    if (!(e <= ulps)) {
      ++bad;
      if (!(e < worst)) worst = e, worst_i = i;
    }
  }
  const RefT wa = static_cast<RefT>(static_cast<R>(a[worst_i])), wb = static_cast<RefT>(static_cast<R>(b[worst_i]));
  CHECK_MESSAGE(bad == 0, bad, " of ", a.size(), " results beyond ", ulps, " ulp; worst (", worst, " ulp) at (",
                show(a[worst_i]), ", ", show(b[worst_i]), "): got ", show(got[worst_i]), ", want ",
                show(static_cast<double>(ref(wa, wb))));
}

/// The type a reference computes + - * / in: double for float (exact once rounded back), the type itself
/// otherwise (double arithmetic is IEEE, integer arithmetic exact in the ranges used).
template <class T>
using wide_t = std::conditional_t<std::is_same_v<T, float>, double, T>;

/// Values for the binary tests: edge values and random values of several magnitudes (floating T), or small
/// integers, random integers up to 10^4 and, when `extremes`, the limits of T.
template <class T>
std::vector<T> values_of(std::mt19937& rng, bool extremes) {
  if constexpr (std::is_floating_point_v<T>) {
    return concat(edge_values<T>(), random_values<T>(rng, 300));
  } else if constexpr (std::is_same_v<T, bool>) {
    return {false, true};
  } else {
    std::vector<T> v = {0, 1, -1, 2, -2, 3, -3, 7, -7, 10, -10, 100, -100};
    if (extremes) {
      using L = std::numeric_limits<T>;
      v.insert(v.end(), {L::max(), L::min(), static_cast<T>(L::max() - 1), static_cast<T>(L::min() + 1)});
    }
    return concat(v, random_ints<T>(rng, 200, -10000, 10000));
  }
}

/// Every pair of the given values, plus `extra` random pairs of them.
template <class T>
void all_pairs(const std::vector<T>& v, std::vector<T>& a, std::vector<T>& b, std::mt19937& rng, int extra = 2000) {
  for (T x : v)
    for (T y : v) a.push_back(x), b.push_back(y);
  std::uniform_int_distribution<std::size_t> pick(0, v.size() - 1);
  for (int i = 0; i < extra; ++i) a.push_back(v[pick(rng)]), b.push_back(v[pick(rng)]);
}

/// op(a, b) must give exactly ref(a, b) (bit for bit, NaN matching any NaN; with `ignore_zero_sign`, +0 and -0
/// match too), and have the dtype of ref's result.
template <class T, class Op, class Ref>
void check_exact(const std::vector<T>& a, const std::vector<T>& b, Op&& op, Ref&& ref, bool ignore_zero_sign = false) {
  const auto got = evaluate_flat_and_strided(a, b, op);
  using R = typename decltype(got)::value_type;
  static_assert(std::is_same_v<R, decltype(ref(a[0], b[0]))>, "the result has the dtype of the reference");
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const R want = ref(a[i], b[i]);
    bool ok = same_value(got[i], want);
    if constexpr (std::is_floating_point_v<R>)
      if (ignore_zero_sign) ok = ulp_distance(got[i], want) == 0;
    if (!ok && bad++ == 0) first = i;
  }
  CHECK_MESSAGE(bad == 0, bad, " of ", a.size(), " results differ; first at (", show(a[first]), ", ", show(b[first]),
                "): got ", show(got[first]), ", expected ", show(ref(a[first], b[first])));
}

/// The same for a unary op(a) against ref(a).
template <class T, class Op, class Ref>
void check_exact(const std::vector<T>& a, Op&& op, Ref&& ref) {
  const auto got = evaluate_flat_and_strided(a, op);
  using R = typename decltype(got)::value_type;
  static_assert(std::is_same_v<R, decltype(ref(a[0]))>, "the result has the dtype of the reference");
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!same_value(got[i], ref(a[i])) && bad++ == 0) first = i;
  CHECK_MESSAGE(bad == 0, bad, " of ", a.size(), " results differ; first at ", show(a[first]), ": got ",
                show(got[first]), ", expected ", show(ref(a[first])));
}

}  // namespace elementwise_test
