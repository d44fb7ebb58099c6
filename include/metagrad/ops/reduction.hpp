// metagrad/ops/reduction.hpp — the reducers behind sum, mean, prod, max, min, argmax, argmin, all, any,
// var, std, logsumexp and norm. A reducer says how to start (init), take one element (add, with the
// element's position in the reduced range), combine two partial results (merge; `a` always covers
// earlier positions than `b`), and finish. The CPU and CUDA drivers only call these four, so a new
// reduction is one struct. Include <metagrad/expr.hpp> instead.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/math.hpp"
#include "../core/shape.hpp"
#include "traits.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace ops {

/// Accumulator of sums: double for floating inputs (a 2^24-element float sum keeps ~1e-9 relative
/// error), int64 for integers and bool (NumPy's rule).
template <class T>
using sum_acc_t = std::conditional_t<std::is_floating_point_v<T>, double, std::int64_t>;
/// Result of sum and prod: the input's floating type, or int64.
template <class T>
using sum_out_t = std::conditional_t<std::is_floating_point_v<T>, T, std::int64_t>;

template <class T>
METAGRAD_HD METAGRAD_INLINE bool is_nan(T v) {
  return v != v;
}

struct SumReducer {
  static constexpr const char* name = "sum";
  template <class T>
  using acc_t = sum_acc_t<T>;
  template <class T>
  using out_t = sum_out_t<T>;
  template <class T>
  METAGRAD_HD acc_t<T> init() const {
    return acc_t<T>(0);
  }
  template <class T>
  METAGRAD_HD METAGRAD_INLINE void add(acc_t<T>& a, T v, index_t) const {
    a += static_cast<acc_t<T>>(v);
  }
  template <class T>
  METAGRAD_HD acc_t<T> merge(acc_t<T> a, acc_t<T> b) const {
    return a + b;
  }
  template <class T>
  METAGRAD_HD out_t<T> finish(acc_t<T> a, index_t) const {
    return static_cast<out_t<T>>(a);
  }
};

struct MeanReducer {
  static constexpr const char* name = "mean";
  template <class T>
  using acc_t = double;
  template <class T>
  using out_t = float_of_t<T>;
  template <class T>
  METAGRAD_HD acc_t<T> init() const {
    return 0.0;
  }
  template <class T>
  METAGRAD_HD METAGRAD_INLINE void add(acc_t<T>& a, T v, index_t) const {
    a += static_cast<double>(v);
  }
  template <class T>
  METAGRAD_HD acc_t<T> merge(acc_t<T> a, acc_t<T> b) const {
    return a + b;
  }
  /// The mean of no elements is NaN (NumPy).
  template <class T>
  METAGRAD_HD out_t<T> finish(acc_t<T> a, index_t n) const {
    return static_cast<out_t<T>>(n ? a / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN());
  }
};

struct ProdReducer {
  static constexpr const char* name = "prod";
  template <class T>
  using acc_t = sum_acc_t<T>;
  template <class T>
  using out_t = sum_out_t<T>;
  template <class T>
  METAGRAD_HD acc_t<T> init() const {
    return acc_t<T>(1);
  }
  template <class T>
  METAGRAD_HD METAGRAD_INLINE void add(acc_t<T>& a, T v, index_t) const {
    if constexpr (std::is_integral_v<acc_t<T>>)  // wrap-around instead of signed-overflow UB
      a = static_cast<acc_t<T>>(static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(static_cast<acc_t<T>>(v)));
    else
      a *= static_cast<acc_t<T>>(v);
  }
  template <class T>
  METAGRAD_HD acc_t<T> merge(acc_t<T> a, acc_t<T> b) const {
    acc_t<T> r = a;
    add<acc_t<T>>(r, b, 0);
    return r;
  }
  template <class T>
  METAGRAD_HD out_t<T> finish(acc_t<T> a, index_t) const {
    return static_cast<out_t<T>>(a);
  }
};

/// max / min propagate NaN (torch.max, numpy.max). Reducing an empty range is an error the node reports.
template <bool IsMax>
struct ExtremumReducer {
  static constexpr const char* name = IsMax ? "max" : "min";
  template <class T>
  using acc_t = T;
  template <class T>
  using out_t = T;
  template <class T>
  METAGRAD_HD acc_t<T> init() const {
    if constexpr (std::is_floating_point_v<T>)
      return IsMax ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
    else
      return IsMax ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
  }
  template <class T>
  METAGRAD_HD METAGRAD_INLINE void add(acc_t<T>& a, T v, index_t) const {
    a = merge<T>(a, v);
  }
  template <class T>
  METAGRAD_HD METAGRAD_INLINE acc_t<T> merge(acc_t<T> a, acc_t<T> b) const {
    const bool take_b = IsMax ? (b > a) : (b < a);
    return is_nan(a) ? a : (take_b || is_nan(b) ? b : a);
  }
  template <class T>
  METAGRAD_HD out_t<T> finish(acc_t<T> a, index_t) const {
    return a;
  }
};
using MaxReducer = ExtremumReducer<true>;
using MinReducer = ExtremumReducer<false>;

template <class T>
struct ArgAcc {
  T value;
  index_t index;
};

/// argmax / argmin: the position (row-major within the reduced axes) of the first extreme element; the
/// first NaN wins, as in NumPy.
template <bool IsMax>
struct ArgExtremumReducer {
  static constexpr const char* name = IsMax ? "argmax" : "argmin";
  template <class T>
  using acc_t = ArgAcc<T>;
  template <class T>
  using out_t = std::int64_t;
  template <class T>
  METAGRAD_HD acc_t<T> init() const {
    return {ExtremumReducer<IsMax>{}.template init<T>(), -1};
  }
  template <class T>
  METAGRAD_HD METAGRAD_INLINE void add(acc_t<T>& a, T v, index_t i) const {
    a = merge<T>(a, {v, i});
  }
  // Partial results may interleave positions (vector lanes), so ties and NaNs compare indices.
  template <class T>
  METAGRAD_HD METAGRAD_INLINE acc_t<T> merge(acc_t<T> a, acc_t<T> b) const {
    if (b.index < 0) return a;
    if (a.index < 0) return b;
    const bool an = is_nan(a.value), bn = is_nan(b.value);
    if (an || bn) return an && bn ? (b.index < a.index ? b : a) : (an ? a : b);
    const bool better = IsMax ? (b.value > a.value) : (b.value < a.value);
    return better || (b.value == a.value && b.index < a.index) ? b : a;
  }
  template <class T>
  METAGRAD_HD out_t<T> finish(acc_t<T> a, index_t) const {
    return a.index;
  }
};
using ArgMaxReducer = ArgExtremumReducer<true>;
using ArgMinReducer = ArgExtremumReducer<false>;

/// all (IsAll) / any: non-zero is true; all of nothing is true, any of nothing false.
template <bool IsAll>
struct BoolReducer {
  static constexpr const char* name = IsAll ? "all" : "any";
  template <class T>
  using acc_t = bool;
  template <class T>
  using out_t = bool;
  template <class T>
  METAGRAD_HD acc_t<T> init() const {
    return IsAll;
  }
  template <class T>
  METAGRAD_HD METAGRAD_INLINE void add(acc_t<T>& a, T v, index_t) const {
    a = IsAll ? (a && v != T(0)) : (a || v != T(0));
  }
  template <class T>
  METAGRAD_HD acc_t<T> merge(acc_t<T> a, acc_t<T> b) const {
    return IsAll ? (a && b) : (a || b);
  }
  template <class T>
  METAGRAD_HD out_t<T> finish(acc_t<T> a, index_t) const {
    return a;
  }
};
using AllReducer = BoolReducer<true>;
using AnyReducer = BoolReducer<false>;

struct MomentAcc {
  double n, mean, m2;
};

/// Variance (or, with TakeSqrt, standard deviation) with `ddof` delta degrees of freedom, by Welford's
/// single-pass update and Chan et al.'s merge of partial moments: no catastrophic cancellation, one read
/// of the data.
template <bool TakeSqrt>
struct MomentReducer {
  static constexpr const char* name = TakeSqrt ? "stddev" : "var";
  int ddof = 0;
  template <class T>
  using acc_t = MomentAcc;
  template <class T>
  using out_t = float_of_t<T>;
  template <class T>
  METAGRAD_HD acc_t<T> init() const {
    return {0, 0, 0};
  }
  template <class T>
  METAGRAD_HD METAGRAD_INLINE void add(acc_t<T>& a, T v, index_t) const {
    const double x = static_cast<double>(v);
    a.n += 1;
    const double d = x - a.mean;
    a.mean += d / a.n;
    a.m2 += d * (x - a.mean);
  }
  template <class T>
  METAGRAD_HD acc_t<T> merge(acc_t<T> a, acc_t<T> b) const {
    if (b.n == 0) return a;
    if (a.n == 0) return b;
    const double n = a.n + b.n, d = b.mean - a.mean;
    return {n, a.mean + d * b.n / n, a.m2 + b.m2 + d * d * a.n * b.n / n};
  }
  /// NaN when n <= ddof (NumPy).
  template <class T>
  METAGRAD_HD out_t<T> finish(acc_t<T> a, index_t) const {
    const double den = a.n - ddof;
    const double v = den > 0 ? a.m2 / den : std::numeric_limits<double>::quiet_NaN();
    return static_cast<out_t<T>>(TakeSqrt ? std::sqrt(v) : v);
  }
};

using VarReducer = MomentReducer<false>;
using StdReducer = MomentReducer<true>;

template <class F>
struct LseAcc {
  F max, sum;
};

/// log(sum(exp(x))) in one stable pass: keeps the running maximum m and sum(exp(x - m)), rescaling the
/// sum when the maximum grows, so no exp overflows. One exp per element.
struct LogSumExpReducer {
  static constexpr const char* name = "logsumexp";
  template <class T>
  using acc_t = LseAcc<float_of_t<T>>;
  template <class T>
  using out_t = float_of_t<T>;
  template <class T>
  METAGRAD_HD acc_t<T> init() const {
    using F = float_of_t<T>;
    return {-std::numeric_limits<F>::infinity(), F(0)};
  }
  template <class T>
  METAGRAD_HD METAGRAD_INLINE void add(acc_t<T>& a, T v, index_t) const {
    a = merge<T>(a, {static_cast<float_of_t<T>>(v), float_of_t<T>(1)});
  }
  template <class T>
  METAGRAD_HD METAGRAD_INLINE acc_t<T> merge(acc_t<T> a, acc_t<T> b) const {
    using F = float_of_t<T>;
    const F inf = std::numeric_limits<F>::infinity();
    if (is_nan(a.max) || is_nan(b.max)) return {a.max + b.max, F(1)};
    if (b.max == -inf) return a;
    if (a.max == -inf) return b;
    if (a.max == inf || b.max == inf) return {inf, F(1)};
    return a.max >= b.max ? acc_t<T>{a.max, a.sum + b.sum * math::exp(b.max - a.max)}
                          : acc_t<T>{b.max, b.sum + a.sum * math::exp(a.max - b.max)};
  }
  template <class T>
  METAGRAD_HD out_t<T> finish(acc_t<T> a, index_t) const {
    return a.sum > 0 ? a.max + math::log(a.sum) : a.max;  // empty or all -inf: -inf
  }
};

/// The p-norm (sum |x|^p)^(1/p); p = inf is max |x|, p = 0 counts non-zeros. Sums accumulate in double.
struct NormReducer {
  static constexpr const char* name = "norm";
  double p = 2.0;
  template <class T>
  using acc_t = double;
  template <class T>
  using out_t = float_of_t<T>;
  template <class T>
  METAGRAD_HD acc_t<T> init() const {
    return 0.0;
  }
  template <class T>
  METAGRAD_HD METAGRAD_INLINE void add(acc_t<T>& a, T v, index_t) const {
    const double x = std::fabs(static_cast<double>(v));
    if (p == 2.0)
      a += x * x;
    else if (p == 1.0)
      a += x;
    else if (p == 0.0)
      a += x != 0.0 ? 1.0 : 0.0;
    else if (std::isinf(p))
      a = merge<T>(a, x);
    else
      a += std::pow(x, p);
  }
  template <class T>
  METAGRAD_HD acc_t<T> merge(acc_t<T> a, acc_t<T> b) const {
    if (std::isinf(p)) return is_nan(a) || is_nan(b) ? a + b : (a > b ? a : b);
    return a + b;
  }
  template <class T>
  METAGRAD_HD out_t<T> finish(acc_t<T> a, index_t) const {
    if (p == 2.0) return static_cast<out_t<T>>(std::sqrt(a));
    if (p == 1.0 || p == 0.0 || std::isinf(p)) return static_cast<out_t<T>>(a);
    return static_cast<out_t<T>>(std::pow(a, 1.0 / p));
  }
};

}  // namespace ops
METAGRAD_NAMESPACE_END
