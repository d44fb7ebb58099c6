// Shared helpers of the gradient tests (tests/autodiff/test_grad_*.cpp): seeded random shapes and inputs in
// the range each op is defined and smooth on, and a finite-difference checker in double. check_grad(what, loss,
// leaves...) evaluates grad(loss, leaves...) and compares every element of each gradient with the central
// difference (f(x + h) - f(x - h)) / 2h of the scalar loss, where f is the loss evaluated through metagrad
// itself while one element of the leaf's tensor is perturbed in place (h = 1e-6 relative). The only values
// metagrad computes for a check are the analytic gradient under test and the forward pass; every other
// expected value in these tests is written out by hand.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <metagrad/metagrad.hpp>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace mg = metagrad;

namespace grad_test {

using mg::index_t;

// --- random inputs --------------------------------------------------------------------------------

inline std::mt19937& rng() {
  static std::mt19937 g(20240611u);
  return g;
}
/// Restarts the generator, so that each SUBCASE and each seed of a loop draws a reproducible sequence.
inline void reseed(unsigned seed) { rng().seed(seed); }

inline double uniform01() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng()); }

template <int R>
mg::Shape<R> random_shape(index_t lo = 1, index_t hi = 4) {
  std::uniform_int_distribution<index_t> d(lo, hi);
  mg::Shape<R> s;
  for (int i = 0; i < R; ++i) s[i] = d(rng());
  return s;
}

/// Values uniform in [lo, hi), each at least `margin` away from every point of `avoid` (the kinks and jumps
/// of piecewise ops, so that x +- h never crosses one).
template <int R>
mg::Tensor<double, R> uniform(const mg::Shape<R>& s, double lo, double hi, const std::vector<double>& avoid,
                              double margin = 0.05) {
  mg::Tensor<double, R> t(s);
  for (index_t i = 0; i < s.numel(); ++i) {
    double v = 0;
    for (;;) {
      v = lo + (hi - lo) * uniform01();
      const bool near = std::any_of(avoid.begin(), avoid.end(), [&](double k) { return std::abs(v - k) < margin; });
      if (!near) break;
    }
    t.data()[i] = v;
  }
  return t;
}
template <int R>
mg::Tensor<double, R> uniform(const mg::Shape<R>& s, double lo, double hi, std::initializer_list<double> avoid = {}) {
  return uniform(s, lo, hi, std::vector<double>(avoid));
}

/// A generator of inputs for the checks: s -> uniform(s, lo, hi, avoid).
inline auto in(double lo, double hi, std::initializer_list<double> avoid = {}) {
  return [lo, hi, kinks = std::vector<double>(avoid)](const auto& s) { return uniform(s, lo, hi, kinks); };
}

/// Values with |x| uniform in [lo, hi) and a random sign (away from 0 when lo > 0).
template <int R>
mg::Tensor<double, R> signed_uniform(const mg::Shape<R>& s, double lo, double hi) {
  mg::Tensor<double, R> t = uniform(s, lo, hi);
  for (index_t i = 0; i < s.numel(); ++i)
    if (uniform01() < 0.5) t.data()[i] = -t.data()[i];
  return t;
}

/// Values away from every integer and half-integer (the jumps of floor, ceil, round, trunc and fmod by 1).
template <int R>
mg::Tensor<double, R> away_from_halves(const mg::Shape<R>& s, double lo, double hi) {
  mg::Tensor<double, R> t(s);
  for (index_t i = 0; i < s.numel(); ++i) {
    double v = 0;
    do {
      v = lo + (hi - lo) * uniform01();
    } while (std::abs(v * 2 - std::round(v * 2)) < 0.1);
    t.data()[i] = v;
  }
  return t;
}

/// A generator of inputs for the checks: s -> signed_uniform(s, lo, hi).
inline auto away_from_zero(double lo, double hi) {
  return [lo, hi](const auto& s) { return signed_uniform(s, lo, hi); };
}

// --- index formatting -----------------------------------------------------------------------------

template <int R>
std::string index_string(const mg::Shape<R>& s, index_t flat) {
  index_t idx[R > 0 ? R : 1] = {};
  for (int d = R - 1; d >= 0; --d) {
    idx[d] = s[d] ? flat % s[d] : 0;
    flat = s[d] ? flat / s[d] : 0;
  }
  std::string out = "[";
  for (int d = 0; d < R; ++d) out += (d ? ", " : "") + std::to_string(idx[d]);
  return out + "]";
}

template <int R>
std::string shape_string(const mg::Shape<R>& s) {
  std::string out = "[";
  for (int d = 0; d < R; ++d) out += (d ? ", " : "") + std::to_string(s[d]);
  return out + "]";
}

inline std::string num(double v) {
  std::ostringstream os;
  os.precision(12);
  os << v;
  return os.str();
}

// --- comparison -----------------------------------------------------------------------------------

/// How close an analytic gradient must be to its reference: |a - r| <= rtol * max(|a|, |r|) + atol.
/// `step` is the relative finite-difference step; `allow_zero` accepts a reference that is zero everywhere
/// (otherwise such a check could not fail, and is refused).
struct Tol {
  double rtol = 1e-6;
  double atol = 1e-8;
  double step = 1e-6;
  bool allow_zero = false;
};

/// The outcome of comparing one gradient with its reference, element by element.
struct Comparison {
  index_t count = 0;
  index_t bad = 0;
  double max_abs_reference = 0;
  std::vector<std::string> failures;  // the first few, each naming the element
  std::string summary() const {
    std::string s = std::to_string(bad) + " of " + std::to_string(count) + " elements differ";
    for (const auto& f : failures) s += "\n  " + f;
    if (bad > static_cast<index_t>(failures.size())) s += "\n  ...";
    return s;
  }
};

/// Compares `analytic` with `reference` (same shape, contiguous or not) element by element in row-major order.
/// `what` names the op and the leaf in each failure message.
template <class T, int R>
Comparison compare(const std::string& what, const mg::Tensor<T, R>& analytic, const mg::Tensor<double, R>& reference,
                   const Tol& tol, const char* ref_name = "numeric") {
  Comparison c;
  if (!(analytic.shape() == reference.shape())) {
    c.bad = c.count = 1;
    c.failures.push_back(what + ": the gradient has shape " + shape_string(analytic.shape()) + ", expected " +
                         shape_string(reference.shape()));
    return c;
  }
  const auto a = analytic.to_vector();
  const auto r = reference.to_vector();
  c.count = static_cast<index_t>(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double av = static_cast<double>(a[i]), rv = r[i];
    c.max_abs_reference = std::max(c.max_abs_reference, std::abs(rv));
    const double bound = tol.rtol * std::max(std::abs(av), std::abs(rv)) + tol.atol;
    if (!(std::abs(av - rv) <= bound)) {  // NaN fails
      ++c.bad;
      if (c.failures.size() < 6)
        c.failures.push_back(what + ": element " + index_string(reference.shape(), static_cast<index_t>(i)) +
                             ": analytic " + num(av) + " vs " + ref_name + " " + num(rv) + " (|diff| " +
                             num(std::abs(av - rv)) + ", allowed " + num(bound) + ")");
    }
  }
  return c;
}

/// Reports a comparison as one doctest check (with the first failing elements in its message), and refuses a
/// reference that is zero everywhere unless tol.allow_zero.
inline void report(const std::string& what, const Comparison& c, const Tol& tol) {
  CHECK_MESSAGE(c.bad == 0, what << ": " << c.summary());
  if (!tol.allow_zero)
    CHECK_MESSAGE(c.max_abs_reference > 1e-6,
                  what << ": the reference gradient is zero everywhere, so this check could not fail");
}

// --- finite differences ---------------------------------------------------------------------------

/// The value of a scalar expression, evaluated through metagrad.
template <class Loss>
double value_of(const Loss& loss) {
  return static_cast<double>(loss.item());
}

/// Central differences of the scalar `loss` with respect to every element of `t`, which is perturbed in place
/// (it shares storage with the tensor a leaf of `loss` is bound to) and restored exactly afterwards.
template <class Loss, int R>
mg::Tensor<double, R> numeric_gradient(const Loss& loss, mg::Tensor<double, R> t, double rel_step = 1e-6) {
  REQUIRE_MESSAGE(t.is_contiguous(), "numeric_gradient perturbs contiguous tensors only");
  mg::Tensor<double, R> out(t.shape());
  double* p = t.data();
  for (index_t i = 0; i < t.numel(); ++i) {
    const double v = p[i];
    const double h = rel_step * std::max(1.0, std::abs(v));
    const double up = v + h, down = v - h;
    p[i] = up;
    const double fp = value_of(loss);
    p[i] = down;
    const double fm = value_of(loss);
    p[i] = v;
    out.data()[i] = (fp - fm) / (up - down);  // the step actually taken, not the rounded 2h
  }
  return out;
}

/// The tensor behind an Input (bound) or a Param, sharing its storage.
template <class Leaf>
auto leaf_tensor(const Leaf& leaf) {
  using LE = std::remove_cvref_t<Leaf>;
  return mg::Tensor<typename LE::value_type, LE::rank>(leaf.value());
}

/// grad(loss, leaves...) against central differences of loss, for every element of every leaf.
template <class Loss, class... Leaves>
void check_grad(const std::string& what, const Tol& tol, const Loss& loss, const Leaves&... leaves) {
  static_assert((std::is_same_v<typename Leaves::value_type, double> && ...),
                "finite differences are taken in double only");
  auto grads = mg::grad(loss, leaves...);
  // Every gradient is evaluated before any leaf is perturbed.
  auto analytic = std::apply([](const auto&... g) { return std::make_tuple(mg::eval(g)...); }, grads);
  auto one = [&](const auto& a, const auto& leaf) {
    const std::string name = what + " (d/d" + leaf.name() + ")";
    const auto numeric = numeric_gradient(loss, leaf_tensor(leaf), tol.step);
    report(name, compare(name, a, numeric, tol), tol);
  };
  [&]<std::size_t... I>(std::index_sequence<I...>) { (one(std::get<I>(analytic), leaves), ...); }
  (std::index_sequence_for<Leaves...>{});
}
template <class Loss, class... Leaves>
void check_grad(const std::string& what, const Loss& loss, const Leaves&... leaves) {
  check_grad(what, Tol{}, loss, leaves...);
}

/// An evaluated gradient against values written out by the test (exact comparison unless tol says otherwise).
template <class T, int R>
void check_values(const std::string& what, const mg::Tensor<T, R>& analytic, const mg::Tensor<double, R>& expected,
                  Tol tol = {0, 0, 0, true}) {
  report(what, compare(what, analytic, expected, tol, "expected"), tol);
}

/// A tensor of the given shape filled by f(flat index).
template <int R, class F>
mg::Tensor<double, R> tabulate(const mg::Shape<R>& s, F&& f) {
  mg::Tensor<double, R> t(s);
  for (index_t i = 0; i < s.numel(); ++i) t.data()[i] = f(i);
  return t;
}

/// Elementwise f of the values of x (the closed forms the tests compare with).
template <int R, class F>
mg::Tensor<double, R> map(const mg::Tensor<double, R>& x, F&& f) {
  const auto v = x.to_vector();
  return tabulate(x.shape(), [&](index_t i) { return f(v[static_cast<std::size_t>(i)]); });
}

}  // namespace grad_test
