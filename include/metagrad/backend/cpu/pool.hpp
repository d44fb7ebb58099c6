// metagrad/backend/cpu/pool.hpp — the CPU answers to the pooling hooks of expr/pool.hpp: run_pool2d
// (forward), run_max_pool2d_backward and run_avg_pool2d_backward. Each (image, channel) plane is one unit of
// work, and the planes are spread over the CPU threads (cpu::parallel_for); the operand is read through its
// plan, so the elementwise expression feeding a pool is computed inside these loops. The window rules are
// PyTorch's (aten/src/ATen/native/cpu/{MaxPoolKernel,AvgPoolKernel,AdaptiveAvgPoolKernel}.cpp), including
// which element a max-pool window picks: the first maximum in row-major order, or the last NaN.
// Include <metagrad/metagrad.hpp> instead.
#pragma once

#include <algorithm>
#include <cstddef>
#include <limits>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/shape.hpp"
#include "../../expr/plan.hpp"
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

/// The rows of one (n, c) plane of the plan p ([n, c, h, w]) in memory: a leaf's own memory when its rows are
/// unit-stride, else `buf` (h x w) filled from the plan once, so the window loops below read plain memory.
/// Sets ld to the row stride.
template <class T, class Plan>
const T* plane_rows(const Plan& p, bool flat, index_t n, index_t c, index_t plane, index_t h, index_t w, T* buf,
                    index_t& ld) {
  if constexpr (is_leaf_plan_v<Plan>) {
    if (p.strides[3] == 1 || w == 1) {
      ld = p.strides[2];
      return p.ptr + n * p.strides[0] + c * p.strides[1];
    }
  }
  ld = w;
  if (flat) {
    const index_t base = plane * h * w;
    METAGRAD_SIMD_LOOP
    for (index_t i = 0; i < h * w; ++i) buf[i] = p.flat(base + i);
  } else {
    for (index_t y = 0; y < h; ++y) {
      if constexpr (row_plan<Plan, index_t>) {
        const auto rp = p.shifted(Array<index_t, 4>{{n, c, y, 0}});
        for (index_t x = 0; x < w; ++x) buf[y * w + x] = rp.row(x);
      } else {
        for (index_t x = 0; x < w; ++x) buf[y * w + x] = p.at(Array<index_t, 4>{{n, c, y, x}});
      }
    }
  }
  return buf;
}

template <class T>
T* plane_buffer(std::size_t n, int which) {
  thread_local std::vector<T> bufs[2];
  auto& b = bufs[which];
  if (b.size() < n) b.resize(n);
  return b.data();
}

/// PyTorch's max rule, `v > best || isnan(v)` from -inf: ties keep the first, a NaN wins.
template <class T>
METAGRAD_INLINE bool takes_max(T v, T best) {
  return (v > best) | (v != v);  // no short circuit: a branch per element mispredicts on real data
}

/// The window's maximum in src (rows ld apart) and its position y w + x in a contiguous plane of width w; the
/// window's first element when all are -inf.
template <class T>
METAGRAD_INLINE index_t window_argmax(const T* src, index_t ld, const PoolSpan& ys, const PoolSpan& xs, index_t w,
                                      T& best) {
  best = -std::numeric_limits<T>::infinity();
  index_t arg = ys.begin * w + xs.begin;
  for (index_t y = ys.begin; y < ys.end; y += ys.step)
    for (index_t x = xs.begin; x < xs.end; x += xs.step)
      if (takes_max(src[y * ld + x], best)) {
        best = src[y * ld + x];
        arg = y * w + x;
      }
  return arg;
}

/// Whether a max pool is the common 2 x 2, stride 2 one whose windows all lie inside the input.
inline bool is_pool_2x2(const Pool2dGeometry& g) {
  return g.p.kind == PoolKind::max && g.p.kernel == Size2(2) && g.p.stride == Size2(2) && g.p.padding == Size2(0) &&
         g.p.dilation == Size2(1) && 2 * g.oh <= g.h && 2 * g.ow <= g.w;
}

/// Index 0..3 of the maximum of a, b, c, d (row-major window order) by the rule of takes_max, without
/// branches so that the loops over a row of windows vectorise.
template <class T>
METAGRAD_INLINE int argmax4(T a, T b, T c, T d, T& best) {
  int k = 0;
  best = a;  // a beats the starting -inf, or equals it
  const bool tb = takes_max(b, best);
  best = tb ? b : best;
  k = tb ? 1 : k;
  const bool tc = takes_max(c, best);
  best = tc ? c : best;
  k = tc ? 2 : k;
  const bool td = takes_max(d, best);
  best = td ? d : best;
  k = td ? 3 : k;
  return k;
}

}  // namespace cpu::detail

namespace cpu {

/// Forward pooling of the plan x (lowered at the input's shape) into call.out ([n, c, oh, ow], contiguous).
template <class T, class Plan>
void run_pool2d(const Pool2dCall<T>& call, const Plan& x) {
  using namespace detail;
  const Pool2dGeometry& g = call.geom;
  const bool flat = x.is_flat(), fast = is_pool_2x2(g);
  for_each_plane(g, pool_window_work(g), [&](index_t n, index_t c, index_t plane) {
    index_t ld = 0;
    const T* src = plane_rows(x, flat, n, c, plane, g.h, g.w, plane_buffer<T>(std::size_t(g.h * g.w), 0), ld);
    T* out = call.out + plane * g.oh * g.ow;
    if (fast) {
      for (index_t oy = 0; oy < g.oh; ++oy) {
        const T* r0 = src + 2 * oy * ld;
        const T* r1 = r0 + ld;
        METAGRAD_SIMD_LOOP
        for (index_t ox = 0; ox < g.ow; ++ox) {
          T best;
          argmax4(r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1], best);
          out[oy * g.ow + ox] = best;
        }
      }
      return;
    }
    for (index_t oy = 0; oy < g.oh; ++oy) {
      const auto ys = row_span(g, oy);
      for (index_t ox = 0; ox < g.ow; ++ox) {
        const auto xs = col_span(g, ox);
        T v;
        if (g.p.kind == PoolKind::max) {
          window_argmax(src, ld, ys, xs, g.w, v);
        } else {
          T s = 0;
          for (index_t y = ys.begin; y < ys.end; ++y)
            for (index_t xi = xs.begin; xi < xs.end; ++xi) s += src[y * ld + xi];
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
  using namespace detail;
  const Pool2dGeometry& g = call.geom;
  const bool xflat = x.is_flat(), gflat = gp.is_flat(), fast = is_pool_2x2(g);
  for_each_plane(g, pool_window_work(g), [&](index_t n, index_t c, index_t plane) {
    index_t ld = 0, gld = 0;
    const T* src = plane_rows(x, xflat, n, c, plane, g.h, g.w, plane_buffer<T>(std::size_t(g.h * g.w), 0), ld);
    const T* gr = plane_rows(gp, gflat, n, c, plane, g.oh, g.ow, plane_buffer<T>(std::size_t(g.oh * g.ow), 1), gld);
    T* dx = call.out + plane * g.h * g.w;
    if (fast) {
      // Disjoint windows covering rows and columns [0, 2 oh) x [0, 2 ow): every element there is written once.
      for (index_t oy = 0; oy < g.oh; ++oy) {
        const T* r0 = src + 2 * oy * ld;
        const T* r1 = r0 + ld;
        T* d0 = dx + 2 * oy * g.w;
        T* d1 = d0 + g.w;
        METAGRAD_SIMD_LOOP
        for (index_t ox = 0; ox < g.ow; ++ox) {
          T best;
          const int k = argmax4(r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1], best);
          const T v = gr[oy * gld + ox];
          d0[2 * ox] = k == 0 ? v : T(0);
          d0[2 * ox + 1] = k == 1 ? v : T(0);
          d1[2 * ox] = k == 2 ? v : T(0);
          d1[2 * ox + 1] = k == 3 ? v : T(0);
        }
        std::fill(d0 + 2 * g.ow, d0 + g.w, T(0));
        std::fill(d1 + 2 * g.ow, d1 + g.w, T(0));
      }
      std::fill(dx + 2 * g.oh * g.w, dx + g.h * g.w, T(0));
      return;
    }
    std::fill(dx, dx + g.h * g.w, T(0));
    for (index_t oy = 0; oy < g.oh; ++oy) {
      const auto ys = row_span(g, oy);
      for (index_t ox = 0; ox < g.ow; ++ox) {
        const auto xs = col_span(g, ox);
        T best;
        dx[window_argmax(src, ld, ys, xs, g.w, best)] += gr[oy * gld + ox];
      }
    }
  });
}

/// dx (call.out, shaped like x, overwritten) of an average pooling: the adjoint g of each output divided by its
/// window's count and added over the window.
template <class T, class GPlan>
void run_avg_pool2d_backward(const Pool2dCall<T>& call, const GPlan& gp) {
  using namespace detail;
  const Pool2dGeometry& g = call.geom;
  const bool gflat = gp.is_flat();
  for_each_plane(g, pool_window_work(g), [&](index_t n, index_t c, index_t plane) {
    index_t gld = 0;
    const T* gr = plane_rows(gp, gflat, n, c, plane, g.oh, g.ow, plane_buffer<T>(std::size_t(g.oh * g.ow), 1), gld);
    T* dx = call.out + plane * g.h * g.w;
    std::fill(dx, dx + g.h * g.w, T(0));
    for (index_t oy = 0; oy < g.oh; ++oy) {
      const auto ys = row_span(g, oy);
      for (index_t ox = 0; ox < g.ow; ++ox) {
        const auto xs = col_span(g, ox);
        if (ys.begin >= ys.end || xs.begin >= xs.end) continue;
        const T v = gr[oy * gld + ox] / static_cast<T>(ys.count * xs.count);
        for (index_t y = ys.begin; y < ys.end; ++y)
          for (index_t xi = xs.begin; xi < xs.end; ++xi) dx[y * g.w + xi] += v;
      }
    }
  });
}

}  // namespace cpu

METAGRAD_NAMESPACE_END
