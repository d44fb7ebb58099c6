// metagrad/core/print.hpp — NumPy-like text form of a tensor: nested brackets aligned in columns, one
// number format for the whole tensor, long dimensions elided with "...", then shape and dtype.
// Include <metagrad/core.hpp> instead.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

#include "tensor.hpp"

METAGRAD_NAMESPACE_BEGIN

/// Print options (NumPy's names): elide dimensions longer than 2 * edgeitems once the tensor has more
/// than `threshold` elements; `precision` digits after the point.
struct PrintOptions {
  index_t threshold = 1000;
  index_t edgeitems = 3;
  int precision = 4;
};

inline PrintOptions& print_options() {
  static PrintOptions o;
  return o;
}

namespace detail {

template <class T>
struct ElementFormatter {
  enum class Mode { integral, fixed, scientific } mode = Mode::fixed;
  int precision = 4;
  std::size_t width = 1;

  std::string raw(T v) const {
    if constexpr (std::is_same_v<T, bool>) {
      return v ? "true" : "false";
    } else if constexpr (std::is_integral_v<T>) {
      return std::to_string(v);
    } else {
      if (std::isnan(v)) return "nan";
      if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
      char buf[64];
      if (mode == Mode::integral)
        std::snprintf(buf, sizeof buf, "%.0f.", static_cast<double>(v));
      else if (mode == Mode::fixed)
        std::snprintf(buf, sizeof buf, "%.*f", precision, static_cast<double>(v));
      else
        std::snprintf(buf, sizeof buf, "%.*e", precision, static_cast<double>(v));
      return buf;
    }
  }
  std::string operator()(T v) const {
    std::string s = raw(v);
    return s.size() < width ? std::string(width - s.size(), ' ') + s : s;
  }
};

template <class T, int R>
struct Printer {
  const Tensor<T, R>& t;
  bool elide;
  index_t edge;
  ElementFormatter<T> fmt;

  // Indices shown along an axis of extent n (-1 marks the "..." gap).
  std::vector<index_t> shown(index_t n) const {
    std::vector<index_t> v;
    if (elide && n > 2 * edge) {
      for (index_t i = 0; i < edge; ++i) v.push_back(i);
      v.push_back(-1);
      for (index_t i = n - edge; i < n; ++i) v.push_back(i);
    } else {
      for (index_t i = 0; i < n; ++i) v.push_back(i);
    }
    return v;
  }
  template <class F>
  void for_shown(Array<index_t, R>& idx, int d, F&& f) const {
    if (d == R) {
      f(idx);
      return;
    }
    for (index_t i : shown(t.shape()[d]))
      if (i >= 0) {
        idx[d] = i;
        for_shown(idx, d + 1, f);
      }
  }
  T at(const Array<index_t, R>& idx) const {
    index_t off = 0;
    for (int d = 0; d < R; ++d) off += idx[d] * t.strides()[d];
    return t.data()[off];
  }
  void choose_format() {
    if constexpr (std::is_floating_point_v<T>) {
      bool integral = true;
      double maxabs = 0, minabs = INFINITY;
      Array<index_t, R> idx{};
      for_shown(idx, 0, [&](const Array<index_t, R>& i) {
        const double v = static_cast<double>(at(i));
        if (!std::isfinite(v)) return;
        integral &= v == std::floor(v);
        maxabs = std::max(maxabs, std::fabs(v));
        if (v != 0) minabs = std::min(minabs, std::fabs(v));
      });
      // torch's rule (_tensor_str._Formatter; NumPy's is the same up to precision): scientific when the
      // non-zero magnitudes span more than three decades or exceed 1e8 (or, for non-integral values, go
      // below 1e-4), so that no shown value loses its leading digits to a fixed point.
      using M = typename ElementFormatter<T>::Mode;
      const bool wide = minabs != INFINITY && (maxabs / minabs > 1000 || maxabs > 1e8);
      fmt.mode = wide ? M::scientific : integral ? M::integral : minabs < 1e-4 ? M::scientific : M::fixed;
    }
    fmt.precision = print_options().precision;
    Array<index_t, R> idx{};
    for_shown(idx, 0, [&](const Array<index_t, R>& i) { fmt.width = std::max(fmt.width, fmt.raw(at(i)).size()); });
  }
  void print(std::string& out, Array<index_t, R>& idx, int d, std::size_t indent) const {
    if (d == R) {
      out += fmt(at(idx));
      return;
    }
    out += '[';
    const auto s = shown(t.shape()[d]);
    for (std::size_t k = 0; k < s.size(); ++k) {
      if (k) {
        out += ',';
        if (d == R - 1)
          out += ' ';
        else
          out += std::string(static_cast<std::size_t>(R - 1 - d), '\n') + std::string(indent + 1, ' ');
      }
      if (s[k] < 0) {
        out += "...";
        continue;
      }
      idx[d] = s[k];
      print(out, idx, d + 1, indent + 1);
    }
    out += ']';
  }
};

}  // namespace detail

/// The tensor as text:
///   tensor([[1.5000, 2.0000],
///           [3.0000, 4.2500]], shape=[2, 2], dtype=float32)
template <class T, int R>
std::string to_string(const Tensor<T, R>& t) {
  const std::string tail = "shape=" + to_string(t.shape()) + ", dtype=" + dtype_name<T>() +
                           (t.device().is_cpu() ? std::string() : ", device=" + t.device().str()) + ")";
  if (!t.defined()) return "tensor(<empty>, " + tail;
  if (!t.device().is_cpu()) {  // printed from a host copy
    const std::string body = to_string(t.to(Device::cpu()));
    return body.substr(0, body.rfind("shape=")) + tail;
  }
  const auto& opt = print_options();
  detail::Printer<T, R> p{t, t.numel() > opt.threshold, opt.edgeitems, {}};
  p.choose_format();
  std::string out = "tensor(";
  Array<index_t, R> idx{};
  if (t.numel() == 0)
    out += "[]";  // any shape with no elements, as torch and NumPy print it
  else
    p.print(out, idx, 0, 7);
  return out + ", " + tail;
}

template <class T, int R>
std::ostream& operator<<(std::ostream& os, const Tensor<T, R>& t) {
  return os << to_string(t);
}

METAGRAD_NAMESPACE_END
