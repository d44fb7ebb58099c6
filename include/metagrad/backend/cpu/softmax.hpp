// metagrad/backend/cpu/softmax.hpp — the CPU answers to the softmax hooks of expr/softmax.hpp: run_softmax
// (softmax or log_softmax of contiguous x) and run_softmax_backward (dx from y and its adjoint g). A softmax over
// the last axis (inner == 1) takes one row at a time: its maximum, then exp(x - max) written out while it is
// summed, then one scaling pass, all while the row is in cache. Over an inner axis the same three sweeps run
// across a tile of up to 256 neighbouring columns, vectorised along the columns. Work units (rows, or tiles of
// columns) are spread over the CPU threads (cpu::parallel_for), so results never depend on the thread count.
// Include <metagrad/metagrad.hpp> instead.
#pragma once

#include <algorithm>
#include <limits>

#include "../../core/config.hpp"
#include "../../core/math.hpp"
#include "../../core/shape.hpp"
#include "../../expr/softmax.hpp"
#include "parallel.hpp"

// Vector reductions: a sum or maximum across the iterations of a loop is a dependence the plain SIMD pragma
// must not be promised away; OpenMP's reduction clause lets it vectorise with per-lane partial results.
#if defined(_OPENMP)
#define METAGRAD_SIMD_SUM_(v) METAGRAD_PRAGMA_(omp simd reduction(+ : v))
#define METAGRAD_SIMD_MAX_(v) METAGRAD_PRAGMA_(omp simd reduction(max : v))
#else
#define METAGRAD_SIMD_SUM_(v)
#define METAGRAD_SIMD_MAX_(v)
#endif

METAGRAD_NAMESPACE_BEGIN

namespace cpu::detail {

/// Columns per tile of a softmax over an inner axis: enough for full vectors, few enough that the tile's
/// running maxima and sums stay in L1.
inline constexpr index_t softmax_tile = 256;

// A row of n contiguous elements. A NaN is skipped by the maximum but turns its exponential, hence the sum and
// every output, into NaN, so NaN propagates as in PyTorch; +inf makes x - max NaN (inf - inf), and a row of only
// -inf likewise.
template <class T>
void softmax_row(const T* x, T* y, index_t n, bool log) {
  T m = -std::numeric_limits<T>::infinity();
  METAGRAD_SIMD_MAX_(m)
  for (index_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  T s = 0;
  if (log) {
    METAGRAD_SIMD_SUM_(s)
    for (index_t i = 0; i < n; ++i) s += math::exp(x[i] - m);
    const T ls = math::log(s);
    METAGRAD_SIMD_LOOP
    for (index_t i = 0; i < n; ++i) y[i] = (x[i] - m) - ls;
  } else {
    METAGRAD_SIMD_SUM_(s)
    for (index_t i = 0; i < n; ++i) {
      const T e = math::exp(x[i] - m);
      y[i] = e;
      s += e;
    }
    METAGRAD_SIMD_LOOP
    for (index_t i = 0; i < n; ++i) y[i] = y[i] / s;
  }
}

// Columns [c0, c0 + w) of one [n, inner] block (element (i, j) at i * inner + j); m and s hold w values.
template <class T>
void softmax_tile_cols(const T* x, T* y, index_t n, index_t inner, index_t w, bool log, T* m, T* s) {
  for (index_t j = 0; j < w; ++j) {
    m[j] = -std::numeric_limits<T>::infinity();
    s[j] = 0;
  }
  for (index_t i = 0; i < n; ++i) {
    const T* xr = x + i * inner;
    METAGRAD_SIMD_LOOP
    for (index_t j = 0; j < w; ++j) m[j] = xr[j] > m[j] ? xr[j] : m[j];
  }
  for (index_t i = 0; i < n; ++i) {
    const T* xr = x + i * inner;
    T* yr = y + i * inner;
    if (log) {
      METAGRAD_SIMD_LOOP
      for (index_t j = 0; j < w; ++j) s[j] += math::exp(xr[j] - m[j]);
    } else {
      METAGRAD_SIMD_LOOP
      for (index_t j = 0; j < w; ++j) {
        const T e = math::exp(xr[j] - m[j]);
        yr[j] = e;
        s[j] += e;
      }
    }
  }
  if (log)
    for (index_t j = 0; j < w; ++j) s[j] = math::log(s[j]);
  for (index_t i = 0; i < n; ++i) {
    const T* xr = x + i * inner;
    T* yr = y + i * inner;
    if (log) {
      METAGRAD_SIMD_LOOP
      for (index_t j = 0; j < w; ++j) yr[j] = (xr[j] - m[j]) - s[j];
    } else {
      METAGRAD_SIMD_LOOP
      for (index_t j = 0; j < w; ++j) yr[j] = yr[j] / s[j];
    }
  }
}

// dx of a row: softmax dx = y (g - sum(g y)); log_softmax dx = g - exp(y) sum(g).
template <class T>
void softmax_backward_row(const T* y, const T* g, T* dx, index_t n, bool log) {
  T s = 0;
  if (log) {
    METAGRAD_SIMD_SUM_(s)
    for (index_t i = 0; i < n; ++i) s += g[i];
    METAGRAD_SIMD_LOOP
    for (index_t i = 0; i < n; ++i) dx[i] = g[i] - math::exp(y[i]) * s;
  } else {
    METAGRAD_SIMD_SUM_(s)
    for (index_t i = 0; i < n; ++i) s += g[i] * y[i];
    METAGRAD_SIMD_LOOP
    for (index_t i = 0; i < n; ++i) dx[i] = y[i] * (g[i] - s);
  }
}

template <class T>
void softmax_backward_tile_cols(const T* y, const T* g, T* dx, index_t n, index_t inner, index_t w, bool log, T* s) {
  for (index_t j = 0; j < w; ++j) s[j] = 0;
  for (index_t i = 0; i < n; ++i) {
    const T* yr = y + i * inner;
    const T* gr = g + i * inner;
    if (log) {
      METAGRAD_SIMD_LOOP
      for (index_t j = 0; j < w; ++j) s[j] += gr[j];
    } else {
      METAGRAD_SIMD_LOOP
      for (index_t j = 0; j < w; ++j) s[j] += gr[j] * yr[j];
    }
  }
  for (index_t i = 0; i < n; ++i) {
    const T* yr = y + i * inner;
    const T* gr = g + i * inner;
    T* dr = dx + i * inner;
    if (log) {
      METAGRAD_SIMD_LOOP
      for (index_t j = 0; j < w; ++j) dr[j] = gr[j] - math::exp(yr[j]) * s[j];
    } else {
      METAGRAD_SIMD_LOOP
      for (index_t j = 0; j < w; ++j) dr[j] = yr[j] * (gr[j] - s[j]);
    }
  }
}

// Calls row(offset) for every row (inner == 1), or tile(offset, width) for every tile of columns, over the
// threads; offset is the element offset of the row or of the tile's first column.
template <class Row, class Tile>
void for_each_softmax_unit(const SoftmaxGeometry& g, Row&& row, Tile&& tile) {
  if (g.inner == 1) {
    parallel_for(
        g.outer,
        [&](index_t b, index_t e) {
          for (index_t r = b; r < e; ++r) row(r * g.n);
        },
        std::max<index_t>(1, 4 * g.n), 1);
    return;
  }
  const index_t tiles = (g.inner + softmax_tile - 1) / softmax_tile;
  parallel_for(
      g.outer * tiles,
      [&](index_t b, index_t e) {
        for (index_t u = b; u < e; ++u) {
          const index_t o = u / tiles, c0 = (u % tiles) * softmax_tile;
          tile(o * g.n * g.inner + c0, std::min(softmax_tile, g.inner - c0));
        }
      },
      std::max<index_t>(1, 4 * g.n * std::min(softmax_tile, g.inner)), 1);
}

}  // namespace cpu::detail

namespace cpu {

/// call.out = softmax (or log_softmax) of call.x, both contiguous in call.geom's layout.
template <class T>
void run_softmax(const SoftmaxCall<T>& call) {
  const SoftmaxGeometry& g = call.geom;
  if (g.numel() == 0) return;
  detail::for_each_softmax_unit(
      g, [&](index_t off) { detail::softmax_row(call.x + off, call.out + off, g.n, call.log); },
      [&](index_t off, index_t w) {
        T m[detail::softmax_tile], s[detail::softmax_tile];
        detail::softmax_tile_cols(call.x + off, call.out + off, g.n, g.inner, w, call.log, m, s);
      });
}

/// call.out = dx of softmax (or log_softmax) given its result call.x and the adjoint call.g.
template <class T>
void run_softmax_backward(const SoftmaxCall<T>& call) {
  const SoftmaxGeometry& g = call.geom;
  if (g.numel() == 0) return;
  detail::for_each_softmax_unit(
      g, [&](index_t off) { detail::softmax_backward_row(call.x + off, call.g + off, call.out + off, g.n, call.log); },
      [&](index_t off, index_t w) {
        T s[detail::softmax_tile];
        detail::softmax_backward_tile_cols(call.x + off, call.g + off, call.out + off, g.n, g.inner, w, call.log, s);
      });
}

}  // namespace cpu

METAGRAD_NAMESPACE_END

#undef METAGRAD_SIMD_SUM_
#undef METAGRAD_SIMD_MAX_
