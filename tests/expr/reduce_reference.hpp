// Shared helpers of the reduction tests (tests/expr/test_reduce*.cpp): random shapes and tensors, the values
// each output element of a reduction reduces (found by walking the input with explicit index arithmetic), naive
// references in double for every reduction, and a driver that checks every calling form (all axes, one axis,
// lists of adjacent and non-adjacent axes, keepdims) of a reduction against its reference. Nothing here calls
// metagrad to compute a reference value.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <metagrad/metagrad.hpp>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace mg = metagrad;

namespace reduce_test {

using mg::index_t;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

inline std::mt19937& rng() {
  static std::mt19937 g(777);
  return g;
}

template <int R>
mg::Shape<R> random_shape(index_t lo, index_t hi) {
  std::uniform_int_distribution<index_t> d(lo, hi);
  mg::Shape<R> s;
  for (int i = 0; i < R; ++i) s[i] = d(rng());
  return s;
}

// Random values: floats uniform in [lo, hi), integers uniform in [lo, hi], bools fair.
template <class T, int R>
mg::Tensor<T, R> random_tensor(const mg::Shape<R>& s, double lo, double hi) {
  mg::Tensor<T, R> t(s);
  for (index_t i = 0; i < s.numel(); ++i) {
    if constexpr (std::is_same_v<T, bool>) {
      t.data()[i] = std::bernoulli_distribution(0.5)(rng());
    } else if constexpr (std::is_integral_v<T>) {
      t.data()[i] = static_cast<T>(
          std::uniform_int_distribution<long long>(static_cast<long long>(lo), static_cast<long long>(hi))(rng()));
    } else {
      t.data()[i] = static_cast<T>(std::uniform_real_distribution<double>(lo, hi)(rng()));
    }
  }
  return t;
}

// The values each output element reduces, in row-major order within the reduced axes; outputs in row-major
// order of the kept axes (which is also the row-major order of the result, with or without keepdims).
template <class T, int R>
std::vector<std::vector<double>> groups(const mg::Tensor<T, R>& x, const mg::Array<bool, R>& red) {
  const auto s = x.shape();
  index_t M = 1;
  for (int d = 0; d < R; ++d)
    if (!red[d]) M *= s[d];
  std::vector<std::vector<double>> g(static_cast<std::size_t>(M));
  if (s.numel() == 0) return g;
  mg::Array<index_t, R> i{};
  for (;;) {
    index_t m = 0, off = 0;
    for (int d = 0; d < R; ++d) {
      if (!red[d]) m = m * s[d] + i[d];
      off += i[d] * x.strides()[d];
    }
    g[static_cast<std::size_t>(m)].push_back(static_cast<double>(x.data()[off]));
    int d = R - 1;
    for (; d >= 0; --d) {
      if (++i[d] < s[d]) break;
      i[d] = 0;
    }
    if (d < 0) break;
  }
  return g;
}

// --- naive references ----------------------------------------------------------------------------
inline bool has_nan(const std::vector<double>& v) {
  return std::any_of(v.begin(), v.end(), [](double x) { return std::isnan(x); });
}
inline double ref_sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}
inline double ref_prod(const std::vector<double>& v) {
  double p = 1;
  for (double x : v) p *= x;
  return p;
}
inline double ref_extremum(const std::vector<double>& v, bool is_max) {
  if (has_nan(v)) return kNaN;
  double m = is_max ? -kInf : kInf;
  for (double x : v) m = is_max ? std::max(m, x) : std::min(m, x);
  return m;
}
inline double ref_arg(const std::vector<double>& v, bool is_max) {
  for (std::size_t k = 0; k < v.size(); ++k)
    if (std::isnan(v[k])) return static_cast<double>(k);
  std::size_t best = 0;
  for (std::size_t k = 1; k < v.size(); ++k)
    if (is_max ? v[k] > v[best] : v[k] < v[best]) best = k;
  return static_cast<double>(best);
}
inline double ref_var(const std::vector<double>& v, int ddof) {  // two-pass
  const double n = static_cast<double>(v.size());
  if (n - ddof <= 0) return kNaN;
  const double mean = ref_sum(v) / n;
  double s2 = 0;
  for (double x : v) s2 += (x - mean) * (x - mean);
  return s2 / (n - ddof);
}
inline double ref_logsumexp(const std::vector<double>& v) {
  if (has_nan(v)) return kNaN;
  const double m = ref_extremum(v, true);
  if (std::isinf(m)) return m;
  double s = 0;
  for (double x : v) s += std::exp(x - m);
  return m + std::log(s);
}
inline double ref_norm(const std::vector<double>& v, double p) {
  double a = 0;
  for (double x : v) {
    const double ax = std::fabs(x);
    if (std::isinf(p))
      a = std::max(a, ax);
    else if (p == 0)
      a += ax != 0;
    else
      a += std::pow(ax, p);
  }
  return std::isinf(p) || p == 0 ? a : std::pow(a, 1 / p);
}

// --- the reductions under test, each with its calling forms, its reference and its tolerance -------------
#define REDUCTION_FORMS_(fn)                                \
  template <class E>                                        \
  auto over_all(const E& e) const {                         \
    return mg::fn(e);                                       \
  }                                                         \
  template <class E>                                        \
  auto over_axis(const E& e, int a) const {                 \
    return mg::fn(e, a);                                    \
  }                                                         \
  template <class E, int K>                                 \
  auto over_axes(const E& e, const int(&a)[K]) const {      \
    return mg::fn(e, a);                                    \
  }                                                         \
  template <class E, int K>                                 \
  auto over_axes_keep(const E& e, const int(&a)[K]) const { \
    return mg::fn(e, a, mg::keepdims);                      \
  }                                                         \
  static constexpr bool has_axis_form = true;

struct Sum {
  REDUCTION_FORMS_(sum)
  double ref(const std::vector<double>& v) const { return ref_sum(v); }
  double atol = 1e-6;
};
struct Mean {
  REDUCTION_FORMS_(mean)
  double ref(const std::vector<double>& v) const {
    return v.empty() ? kNaN : ref_sum(v) / static_cast<double>(v.size());
  }
  double atol = 1e-6;
};
struct Prod {
  REDUCTION_FORMS_(prod)
  double ref(const std::vector<double>& v) const { return ref_prod(v); }
  double atol = 1e-30;
};
struct Max {
  REDUCTION_FORMS_(max)
  double ref(const std::vector<double>& v) const { return ref_extremum(v, true); }
  double atol = 0;
};
struct Min {
  REDUCTION_FORMS_(min)
  double ref(const std::vector<double>& v) const { return ref_extremum(v, false); }
  double atol = 0;
};
struct ArgMax {
  REDUCTION_FORMS_(argmax)
  double ref(const std::vector<double>& v) const { return ref_arg(v, true); }
  double atol = 0;
};
struct ArgMin {
  REDUCTION_FORMS_(argmin)
  double ref(const std::vector<double>& v) const { return ref_arg(v, false); }
  double atol = 0;
};
struct All {
  REDUCTION_FORMS_(all)
  double ref(const std::vector<double>& v) const {
    return std::all_of(v.begin(), v.end(), [](double x) { return x != 0; });
  }
  double atol = 0;
};
struct Any {
  REDUCTION_FORMS_(any)
  double ref(const std::vector<double>& v) const {
    return std::any_of(v.begin(), v.end(), [](double x) { return x != 0; });
  }
  double atol = 0;
};
struct LogSumExp {
  REDUCTION_FORMS_(logsumexp)
  double ref(const std::vector<double>& v) const { return ref_logsumexp(v); }
  double atol = 2e-5;  // float accumulates in float
};
#undef REDUCTION_FORMS_

// var / stddev / norm take a parameter and have no single-int axis form.
#define PARAM_REDUCTION_FORMS_(fn, param)                   \
  template <class E>                                        \
  auto over_all(const E& e) const {                         \
    return mg::fn(e, param);                                \
  }                                                         \
  template <class E>                                        \
  auto over_axis(const E& e, int) const {                   \
    return mg::fn(e, param);                                \
  }                                                         \
  template <class E, int K>                                 \
  auto over_axes(const E& e, const int(&a)[K]) const {      \
    return mg::fn(e, a, param);                             \
  }                                                         \
  template <class E, int K>                                 \
  auto over_axes_keep(const E& e, const int(&a)[K]) const { \
    return mg::fn(e, a, mg::keepdims, param);               \
  }                                                         \
  static constexpr bool has_axis_form = false;

struct Var {
  int ddof;
  PARAM_REDUCTION_FORMS_(var, ddof)
  double ref(const std::vector<double>& v) const { return ref_var(v, ddof); }
  double atol = 1e-6;
};
struct StdDev {
  int ddof;
  PARAM_REDUCTION_FORMS_(stddev, ddof)
  double ref(const std::vector<double>& v) const { return std::sqrt(ref_var(v, ddof)); }
  double atol = 1e-6;
};
struct Norm {
  double p;
  PARAM_REDUCTION_FORMS_(norm, p)
  double ref(const std::vector<double>& v) const { return ref_norm(v, p); }
  double atol = 1e-6;
};
#undef PARAM_REDUCTION_FORMS_

// Relative tolerance of a result of type U computed from T inputs (the references are exact in double up to
// rounding; the library accumulates sums in double and rounds once).
template <class U>
inline double rtol_of() {
  if constexpr (std::is_same_v<U, float>) return 2e-6;
  if constexpr (std::is_same_v<U, double>) return 1e-12;
  return 0;
}

inline bool close(double got, double want, double rtol, double atol) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::fabs(got - want) <= atol + rtol * std::fabs(want);
}

inline std::string mask_str(const bool* m, int r, bool keep) {
  std::string s = "axes {";
  for (int d = 0, k = 0; d < r; ++d)
    if (m[d]) s += (k++ ? ", " : "") + std::to_string(d);
  return s + (keep ? "}, keepdims" : "}");
}

// Evaluates `e` and compares it with op.ref over the groups of x that `red` defines. One CHECK per call.
template <class Op, class T, int R, class E>
void check_against_ref(const Op& op, const mg::Tensor<T, R>& x, const mg::Array<bool, R>& red, bool keep, const E& e) {
  using U = mg::expr_value_t<E>;
  const auto got = mg::eval(e);
  mg::Shape<R> full;
  for (int d = 0; d < R; ++d) full[d] = red[d] ? 1 : x.shape()[d];
  index_t want_rank = 0;
  for (int d = 0; d < R; ++d) want_rank += keep || !red[d];
  CHECK(std::remove_cvref_t<decltype(got)>::rank == want_rank);
  {
    // The kept extents, in order (and 1 for each reduced axis under keepdims).
    std::vector<index_t> ws, gs;
    for (int d = 0; d < R; ++d)
      if (keep || !red[d]) ws.push_back(full[d]);
    for (int d = 0; d < std::remove_cvref_t<decltype(got)>::rank; ++d) gs.push_back(got.shape()[d]);
    REQUIRE(gs == ws);
  }
  const auto g = groups(x, red);
  const auto vals = got.to_vector();
  REQUIRE(vals.size() == g.size());
  index_t bad = 0;
  std::string first;
  for (std::size_t m = 0; m < g.size(); ++m) {
    const double want = op.ref(g[m]);
    const double have = static_cast<double>(vals[m]);
    if (!close(have, want, rtol_of<U>(), std::is_floating_point_v<U> ? op.atol : 0)) {
      if (!bad)
        first = "output " + std::to_string(m) + ": got " + std::to_string(have) + ", want " + std::to_string(want);
      ++bad;
    }
  }
  CHECK_MESSAGE(bad == 0, bad << " of " << g.size() << " outputs wrong over " << mask_str(&red[0], R, keep)
                              << " of shape " << mg::to_string(x.shape()) << "; first " << first);
}

template <int R>
mg::Array<bool, R> mask_of(std::initializer_list<int> axes) {
  mg::Array<bool, R> m{};
  for (int d = 0; d < R; ++d) m[d] = false;
  for (int a : axes) m[a < 0 ? a + R : a] = true;
  return m;
}

// Every calling form on a rank-3 expression e whose values are those of the tensor x: all axes, each single
// axis (also negative), every pair (adjacent, non-adjacent, unordered, negative), all three, with and without
// keepdims. e may be x itself, a view of another tensor or a computed expression.
template <class Op, class T, class E>
void check_rank3_forms_of(const Op& op, const mg::Tensor<T, 3>& x, const E& e) {
  CAPTURE(mg::to_string(x.shape()));
  check_against_ref(op, x, mask_of<3>({0, 1, 2}), false, op.over_all(e));
  for (int a : {0, 1, 2, -1, -3}) {
    if constexpr (Op::has_axis_form) check_against_ref(op, x, mask_of<3>({a}), false, op.over_axis(e, a));
    const int ax[1] = {a};
    check_against_ref(op, x, mask_of<3>({a}), false, op.over_axes(e, ax));
    check_against_ref(op, x, mask_of<3>({a}), true, op.over_axes_keep(e, ax));
  }
  const int pairs[][2] = {{0, 1}, {1, 2}, {0, 2}, {2, 0}, {-1, 0}};
  for (const auto& p : pairs) {
    check_against_ref(op, x, mask_of<3>({p[0], p[1]}), false, op.over_axes(e, p));
    check_against_ref(op, x, mask_of<3>({p[0], p[1]}), true, op.over_axes_keep(e, p));
  }
  const int all3[3] = {2, 0, 1};
  check_against_ref(op, x, mask_of<3>({0, 1, 2}), false, op.over_axes(e, all3));
  check_against_ref(op, x, mask_of<3>({0, 1, 2}), true, op.over_axes_keep(e, all3));
}

template <class Op, class T>
void check_rank3_forms(const Op& op, const mg::Tensor<T, 3>& x) {
  check_rank3_forms_of(op, x, x);
}

template <class Op, class T>
void check_random_shapes(const Op& op, double lo, double hi, index_t max_extent = 6, int trials = 6) {
  for (int t = 0; t < trials; ++t) check_rank3_forms(op, random_tensor<T>(random_shape<3>(1, max_extent), lo, hi));
}

}  // namespace reduce_test
