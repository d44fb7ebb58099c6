// metagrad/backend/cuda/pool_index.hpp — the window arithmetic of metagrad's own CUDA pooling kernels (the
// cases cuDNN cannot compute exactly, and every backward pass), as METAGRAD_HD plain code so a CPU test runs
// exactly what the kernels run. One thread computes one output element (forward) or one input element
// (backward, a gather: it visits the windows that contain its element, in the order the CPU's scatter loop
// adds them, so the sums round identically and no atomics are needed). The rules are the CPU's
// (backend/cpu/pool.hpp, PyTorch's): a max window takes the first maximum in row-major order or the last
// NaN, and never a padded element; an average divides by the window clipped to the padded input
// (count_include_pad) or to the input. Include <metagrad/metagrad.hpp> (in a .cu file) instead.
#pragma once

#include <limits>

#include "../../core/config.hpp"
#include "../../core/shape.hpp"
#include "../../expr/pool.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cuda {

/// One spatial axis of a pooling: input and output extents and the window parameters.
struct PoolAxis {
  index_t in, out, k, stride, pad, dil;
};

/// Input positions begin, begin + step, ... < end of one window along one axis, and the count that
/// divides an average's sum along it.
struct PoolWindow {
  index_t begin, end, step, count;
};

/// The pooling a kernel runs: the kind, the two axes and the average's divisor rule.
struct PoolShape {
  PoolKind kind;
  PoolAxis y, x;
  bool include_pad;
};

/// The PoolShape of geometry g.
inline PoolShape pool_shape(const Pool2dGeometry& g) {
  const Pool2dParams& p = g.p;
  return PoolShape{p.kind,
                   {g.h, g.oh, p.kernel.h, p.stride.h, p.padding.h, p.dilation.h},
                   {g.w, g.ow, p.kernel.w, p.stride.w, p.padding.w, p.dilation.w},
                   p.count_include_pad};
}

/// The window of output position o along axis a.
METAGRAD_HD METAGRAD_INLINE PoolWindow pool_window(PoolKind kind, const PoolAxis& a, index_t o, bool include_pad) {
  if (kind == PoolKind::adaptive_avg) {
    const index_t b = (o * a.in) / a.out, e = ((o + 1) * a.in + a.out - 1) / a.out;
    return {b, e, 1, e - b};
  }
  if (kind == PoolKind::max) {
    index_t b = o * a.stride - a.pad;
    const index_t last = b + (a.k - 1) * a.dil + 1;
    const index_t e = last < a.in ? last : a.in;
    while (b < 0) b += a.dil;
    return {b, e, a.dil, 0};
  }
  const index_t b = o * a.stride - a.pad;
  const index_t e = b + a.k < a.in + a.pad ? b + a.k : a.in + a.pad;
  const index_t cb = b > 0 ? b : 0, ce = e < a.in ? e : a.in;
  return {cb, ce, 1, include_pad ? e - b : ce - cb};
}

/// Whether window w contains input position i.
METAGRAD_HD METAGRAD_INLINE bool window_contains(const PoolWindow& w, index_t i) {
  return i >= w.begin && i < w.end && (i - w.begin) % w.step == 0;
}

/// The output positions whose windows may contain input position i along axis a, as [lo, hi) (a superset
/// for adaptive windows, which window_contains then filters).
METAGRAD_HD METAGRAD_INLINE void covering_outputs(PoolKind kind, const PoolAxis& a, index_t i, index_t& lo,
                                                  index_t& hi) {
  if (kind == PoolKind::adaptive_avg) {
    lo = (i * a.out) / a.in;
    hi = ((i + 1) * a.out + a.in - 1) / a.in + 1;
  } else {
    // The window of o starts at o s - pad and spans (k - 1) dil + 1 positions (k for the average pools).
    const index_t span = kind == PoolKind::max ? (a.k - 1) * a.dil + 1 : a.k;
    const index_t first = i + a.pad - span + 1;  // the lowest window start that still reaches i
    lo = first <= 0 ? 0 : (first + a.stride - 1) / a.stride;
    hi = (i + a.pad) / a.stride + 1;
  }
  if (lo < 0) lo = 0;
  if (hi > a.out) hi = a.out;
}

/// The element a max window takes (its position y * w + x in a plane of width `ld`) and its value: the CPU's
/// rule `v > best || isnan(v)` from -inf, so ties keep the first and the last NaN wins.
template <class T>
METAGRAD_HD METAGRAD_INLINE index_t window_argmax(const T* plane, index_t ld, const PoolWindow& wy,
                                                  const PoolWindow& wx, T& best) {
  best = -std::numeric_limits<T>::infinity();
  index_t arg = wy.begin * ld + wx.begin;
  for (index_t y = wy.begin; y < wy.end; y += wy.step)
    for (index_t x = wx.begin; x < wx.end; x += wx.step) {
      const T v = plane[y * ld + x];
      if (v > best || v != v) {
        best = v;
        arg = y * ld + x;
      }
    }
  return arg;
}

/// Output (oy, ox) of the pooling of one contiguous plane (s.y.in x s.x.in).
template <class T>
METAGRAD_HD METAGRAD_INLINE T pool_forward_at(const T* plane, const PoolShape& s, index_t oy, index_t ox) {
  const PoolWindow wy = pool_window(s.kind, s.y, oy, s.include_pad);
  const PoolWindow wx = pool_window(s.kind, s.x, ox, s.include_pad);
  if (s.kind == PoolKind::max) {
    T best;
    (void)window_argmax(plane, s.x.in, wy, wx, best);
    return best;
  }
  T sum = 0;
  for (index_t y = wy.begin; y < wy.end; ++y)
    for (index_t x = wx.begin; x < wx.end; ++x) sum += plane[y * s.x.in + x];
  // A window entirely in the padding (possible with ceil_mode) is 0, as PyTorch writes.
  return wy.begin < wy.end && wx.begin < wx.end ? sum / static_cast<T>(wy.count * wx.count) : T(0);
}

/// dx at input (y, x) of a max pooling of one plane: the sum, in row-major window order, of the adjoints g
/// (a contiguous s.y.out x s.x.out plane) of the windows whose maximum is that element.
template <class T>
METAGRAD_HD METAGRAD_INLINE T max_pool_backward_at(const T* xplane, const T* gplane, const PoolShape& s, index_t y,
                                                   index_t x) {
  index_t y0, y1, x0, x1;
  covering_outputs(s.kind, s.y, y, y0, y1);
  covering_outputs(s.kind, s.x, x, x0, x1);
  T acc = 0;
  const index_t self = y * s.x.in + x;
  for (index_t oy = y0; oy < y1; ++oy) {
    const PoolWindow wy = pool_window(s.kind, s.y, oy, s.include_pad);
    // The CPU's default argmax (a window's first element, when every value is -inf) is one of its positions,
    // so only windows that contain (y, x) can pick it.
    if (!window_contains(wy, y)) continue;
    for (index_t ox = x0; ox < x1; ++ox) {
      const PoolWindow wx = pool_window(s.kind, s.x, ox, s.include_pad);
      if (!window_contains(wx, x)) continue;
      T best;
      if (window_argmax(xplane, s.x.in, wy, wx, best) == self) acc += gplane[oy * s.x.out + ox];
    }
  }
  return acc;
}

/// dx at input (y, x) of an average pooling of one plane: the sum, in row-major window order, of g / count
/// over the windows that contain the element.
template <class T>
METAGRAD_HD METAGRAD_INLINE T avg_pool_backward_at(const T* gplane, const PoolShape& s, index_t y, index_t x) {
  index_t y0, y1, x0, x1;
  covering_outputs(s.kind, s.y, y, y0, y1);
  covering_outputs(s.kind, s.x, x, x0, x1);
  T acc = 0;
  for (index_t oy = y0; oy < y1; ++oy) {
    const PoolWindow wy = pool_window(s.kind, s.y, oy, s.include_pad);
    if (!window_contains(wy, y)) continue;
    for (index_t ox = x0; ox < x1; ++ox) {
      const PoolWindow wx = pool_window(s.kind, s.x, ox, s.include_pad);
      if (!window_contains(wx, x)) continue;
      acc += gplane[oy * s.x.out + ox] / static_cast<T>(wy.count * wx.count);
    }
  }
  return acc;
}

}  // namespace cuda
METAGRAD_NAMESPACE_END
