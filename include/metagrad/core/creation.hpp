// metagrad/core/creation.hpp — functions that make filled tensors: zeros, ones, full, arange, linspace,
// from_vector, and *_like variants. Random tensors are in <metagrad/expr/random.hpp>. Include
// <metagrad/core.hpp> instead.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "dtype.hpp"
#include "error.hpp"
#include "shape.hpp"
#include "tensor.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace detail {
template <int N>
Shape<N> shape_from(const index_t (&dims)[N]) {
  Shape<N> s;
  for (int i = 0; i < N; ++i) {
    if (dims[i] < 0) throw shape_error("metagrad: negative extent " + std::to_string(dims[i]) + " in a shape");
    s[i] = dims[i];
  }
  return s;
}
}  // namespace detail

/// A tensor of `shape` with every element `value`.
template <dtype T, int N>
Tensor<T, N> full(const Shape<N>& shape, T value, Device device = Device::cpu()) {
  Tensor<T, N> t;
  if (!device.is_cpu()) {
    if (value == T(0)) {
      t.allocate(shape, device, true);
      return t;
    }
    return full<T, N>(shape, value).to(device);  // filled on the host, then one copy
  }
  t.allocate(shape, device);
  std::fill(t.data(), t.data() + shape.numel(), value);
  return t;
}
template <dtype T = float, int N>
Tensor<T, N> full(const index_t (&dims)[N], T value, Device device = Device::cpu()) {
  return full<T, N>(detail::shape_from(dims), value, device);
}

/// zeros<float>({2, 3}).
template <dtype T = float, int N>
Tensor<T, N> zeros(const index_t (&dims)[N], Device device = Device::cpu()) {
  return full<T, N>(detail::shape_from(dims), T(0), device);
}
template <dtype T = float, int N>
Tensor<T, N> zeros(const Shape<N>& shape, Device device = Device::cpu()) {
  return full<T, N>(shape, T(0), device);
}

/// ones<float>({2, 3}).
template <dtype T = float, int N>
Tensor<T, N> ones(const index_t (&dims)[N], Device device = Device::cpu()) {
  return full<T, N>(detail::shape_from(dims), T(1), device);
}
template <dtype T = float, int N>
Tensor<T, N> ones(const Shape<N>& shape, Device device = Device::cpu()) {
  return full<T, N>(shape, T(1), device);
}

/// A tensor of the same shape, dtype and device as `like`, filled with zeros / ones / value.
template <dtype T, int N>
Tensor<T, N> zeros_like(const Tensor<T, N>& like) {
  return zeros<T>(like.shape(), like.device());
}
template <dtype T, int N>
Tensor<T, N> ones_like(const Tensor<T, N>& like) {
  return ones<T>(like.shape(), like.device());
}
template <dtype T, int N>
Tensor<T, N> full_like(const Tensor<T, N>& like, T value) {
  return full<T>(like.shape(), value, like.device());
}

/// start, start + step, ... below stop (above it for a negative step), as numpy.arange.
/// @throws shape_error for step == 0.
template <dtype T = float>
Tensor<T, 1> arange(double start, double stop, double step = 1.0) {
  if (step == 0 || !std::isfinite(start) || !std::isfinite(stop) || !std::isfinite(step))
    throw shape_error("arange: step must be non-zero and all bounds finite");
  const double n = std::ceil((stop - start) / step);
  const index_t count = n > 0 ? static_cast<index_t>(n) : 0;
  Tensor<T, 1> t;
  t.allocate(Shape<1>{count});
  for (index_t i = 0; i < count; ++i) t.data()[i] = static_cast<T>(start + static_cast<double>(i) * step);
  return t;
}
/// 0, 1, ..., stop - 1.
template <dtype T = float>
Tensor<T, 1> arange(double stop) {
  return arange<T>(0.0, stop, 1.0);
}

/// `num` evenly spaced values from start to stop inclusive (exclusive of stop when endpoint == false).
template <dtype T = float>
Tensor<T, 1> linspace(double start, double stop, index_t num, bool endpoint = true) {
  if (num < 0) throw shape_error("linspace: num must be >= 0, got " + std::to_string(num));
  Tensor<T, 1> t;
  t.allocate(Shape<1>{num});
  const index_t div = endpoint ? num - 1 : num;
  const double step = div > 0 ? (stop - start) / static_cast<double>(div) : 0.0;
  for (index_t i = 0; i < num; ++i) t.data()[i] = static_cast<T>(start + static_cast<double>(i) * step);
  if (endpoint && num > 1) t.data()[num - 1] = static_cast<T>(stop);  // exact end point, as numpy
  return t;
}

/// A tensor of `shape` holding `values` in row-major order. @throws shape_error when the sizes differ.
template <dtype T, int N>
Tensor<T, N> from_vector(const std::vector<T>& values, const Shape<N>& shape) {
  if (static_cast<index_t>(values.size()) != shape.numel())
    throw shape_error("from_vector: " + std::to_string(values.size()) + " values cannot fill shape " +
                      to_string(shape));
  Tensor<T, N> t;
  t.allocate(shape);
  std::copy(values.begin(), values.end(), t.data());
  return t;
}
template <dtype T, int N>
Tensor<T, N> from_vector(const std::vector<T>& values, const index_t (&dims)[N]) {
  return from_vector(values, detail::shape_from(dims));
}
/// A rank-1 tensor holding `values`.
template <dtype T>
Tensor<T, 1> from_vector(const std::vector<T>& values) {
  return from_vector(values, Shape<1>{static_cast<index_t>(values.size())});
}

METAGRAD_NAMESPACE_END
