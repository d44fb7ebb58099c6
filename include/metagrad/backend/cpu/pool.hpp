// metagrad/backend/cpu/pool.hpp — the CPU answers to the pooling hooks of expr/pool.hpp: run_pool2d
// (forward), run_max_pool2d_backward and run_avg_pool2d_backward. Each (image, channel) plane is one unit of
// work, and the planes are spread over the CPU threads (cpu::parallel_for); the operand is read through its
// plan, so the elementwise expression feeding a pool is computed inside these loops. The window rules are
// PyTorch's (aten/src/ATen/native/cpu/{MaxPoolKernel,AvgPoolKernel,AdaptiveAvgPoolKernel}.cpp), including
// which element a max-pool window picks: the first maximum in row-major order, or the last NaN.
// Include <metagrad/metagrad.hpp> instead.
#pragma once

#include <algorithm>
#include <limits>

#include "../../core/config.hpp"
#include "../../core/shape.hpp"
#include "../../expr/pool.hpp"
#include "parallel.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace cpu::detail {

/// A window along one axis: input positions begin, begin + step, ... < end, and (average pools) the count
/// that divides its sum.
struct PoolSpan {
  index_t begin, end, step, count;
};

/// The window of output position o along an axis of input extent `in` (the kernel, stride, padding and
/// dilation of that axis given).
inline PoolSpan pool_span(PoolKind kind, index_t o, index_t out, index_t in, index_t k, index_t s, index_t pad,
                          index_t dil, bool include_pad) {
  if (kind == PoolKind::adaptive_avg) {
    const index_t b = (o * in) / out, e = ((o + 1) * in + out - 1) / out;
    return {b, e, 1, e - b};
  }
  if (kind == PoolKind::max) {
    index_t b = o * s - pad;
    const index_t e = std::min(b + (k - 1) * dil + 1, in);
    while (b < 0) b += dil;
    return {b, e, dil, 0};
  }
  const index_t b = o * s - pad, e = std::min(b + k, in + pad);
  const index_t cb = std::max<index_t>(b, 0), ce = std::min(e, in);
  return {cb, ce, 1, include_pad ? e - b : ce - cb};
}

template <class F>
void for_each_plane(const Pool2dGeometry& g, index_t weight, F&& f) {
  parallel_for(
      g.n * g.c,
      [&](index_t p0, index_t p1) {
        for (index_t p = p0; p < p1; ++p) f(p / g.c, p % g.c, p);
      },
      std::max<index_t>(1, weight), 1);
}

inline index_t pool_window_work(const Pool2dGeometry& g) {
  if (g.p.kind == PoolKind::adaptive_avg) return g.h * g.w + g.oh * g.ow;
  return g.oh * g.ow * g.p.kernel.h * g.p.kernel.w;
}

inline PoolSpan row_span(const Pool2dGeometry& g, index_t oy) {
  return pool_span(g.p.kind, oy, g.oh, g.h, g.p.kernel.h, g.p.stride.h, g.p.padding.h, g.p.dilation.h,
                   g.p.count_include_pad);
}
inline PoolSpan col_span(const Pool2dGeometry& g, index_t ox) {
  return pool_span(g.p.kind, ox, g.ow, g.w, g.p.kernel.w, g.p.stride.w, g.p.padding.w, g.p.dilation.w,
                   g.p.count_include_pad);
}

/// The flat index (y w + x within the plane) of the window's maximum: PyTorch's rule, `v > best || isnan(v)`,
/// starting from -inf at the window's first element (so ties keep the first, and a NaN wins).
template <class T, class Plan>
METAGRAD_INLINE index_t window_argmax(const Plan& x, index_t n, index_t c, const PoolSpan& ys, const PoolSpan& xs,
                                      index_t w, T& best) {
  best = -std::numeric_limits<T>::infinity();
  index_t arg = ys.begin * w + xs.begin;
  for (index_t y = ys.begin; y < ys.end; y += ys.step)
    for (index_t xi = xs.begin; xi < xs.end; xi += xs.step) {
      const T v = x.at(Array<index_t, 4>{{n, c, y, xi}});
      if (v > best || v != v) {
        best = v;
        arg = y * w + xi;
      }
    }
  return arg;
}

}  // namespace cpu::detail

/// Forward pooling of the plan x (lowered at the input's shape) into call.out ([n, c, oh, ow], contiguous).
template <class T, class Plan>
void run_pool2d(const Pool2dCall<T>& call, const Plan& x) {
  const Pool2dGeometry& g = call.geom;
  cpu::detail::for_each_plane(g, cpu::detail::pool_window_work(g), [&](index_t n, index_t c, index_t plane) {
    T* out = call.out + plane * g.oh * g.ow;
    for (index_t oy = 0; oy < g.oh; ++oy) {
      const auto ys = cpu::detail::row_span(g, oy);
      for (index_t ox = 0; ox < g.ow; ++ox) {
        const auto xs = cpu::detail::col_span(g, ox);
        T v;
        if (g.p.kind == PoolKind::max) {
          cpu::detail::window_argmax<T>(x, n, c, ys, xs, g.w, v);
        } else {
          T s = 0;
          for (index_t y = ys.begin; y < ys.end; ++y)
            for (index_t xi = xs.begin; xi < xs.end; ++xi) s += x.at(Array<index_t, 4>{{n, c, y, xi}});
          // PyTorch writes 0 for a window that lies entirely in the padding (possible with ceil_mode).
          v = ys.begin < ys.end && xs.begin < xs.end ? s / static_cast<T>(ys.count * xs.count) : T(0);
        }
        out[oy * g.ow + ox] = v;
      }
    }
  });
}

/// dx (call.out, shaped like x, overwritten) of a max pooling: the adjoint g of each output added at its
/// window's maximum in x.
template <class T, class GPlan, class XPlan>
void run_max_pool2d_backward(const Pool2dCall<T>& call, const GPlan& gp, const XPlan& x) {
  const Pool2dGeometry& g = call.geom;
  cpu::detail::for_each_plane(g, cpu::detail::pool_window_work(g), [&](index_t n, index_t c, index_t plane) {
    T* dx = call.out + plane * g.h * g.w;
    std::fill(dx, dx + g.h * g.w, T(0));
    for (index_t oy = 0; oy < g.oh; ++oy) {
      const auto ys = cpu::detail::row_span(g, oy);
      for (index_t ox = 0; ox < g.ow; ++ox) {
        const auto xs = cpu::detail::col_span(g, ox);
        T best;
        const index_t arg = cpu::detail::window_argmax<T>(x, n, c, ys, xs, g.w, best);
        dx[arg] += gp.at(Array<index_t, 4>{{n, c, oy, ox}});
      }
    }
  });
}

/// dx (call.out, shaped like x, overwritten) of an average pooling: the adjoint g of each output divided by its
/// window's count and added over the window.
template <class T, class GPlan>
void run_avg_pool2d_backward(const Pool2dCall<T>& call, const GPlan& gp) {
  const Pool2dGeometry& g = call.geom;
  cpu::detail::for_each_plane(g, cpu::detail::pool_window_work(g), [&](index_t n, index_t c, index_t plane) {
    T* dx = call.out + plane * g.h * g.w;
    std::fill(dx, dx + g.h * g.w, T(0));
    for (index_t oy = 0; oy < g.oh; ++oy) {
      const auto ys = cpu::detail::row_span(g, oy);
      for (index_t ox = 0; ox < g.ow; ++ox) {
        const auto xs = cpu::detail::col_span(g, ox);
        if (ys.begin >= ys.end || xs.begin >= xs.end) continue;
        const T v = gp.at(Array<index_t, 4>{{n, c, oy, ox}}) / static_cast<T>(ys.count * xs.count);
        for (index_t y = ys.begin; y < ys.end; ++y)
          for (index_t xi = xs.begin; xi < xs.end; ++xi) dx[y * g.w + xi] += v;
      }
    }
  });
}

METAGRAD_NAMESPACE_END
