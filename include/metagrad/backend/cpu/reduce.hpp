// metagrad/backend/cpu/reduce.hpp — the CPU driver of reductions over any set of axes, with the
// elementwise input fused in (the input is a plan; nothing is materialised). Three loop shapes:
// reduced axes trailing (contiguous runs, vector lanes), reduced axes leading (rows accumulated into a
// vector of partial results), and a general multi-index walk. Include <metagrad/metagrad.hpp> instead.
#pragma once

#include <vector>

#include "../../core/config.hpp"
#include "../../core/shape.hpp"
#include "parallel.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cpu {

namespace detail {
// Independent accumulators per run, so a sum is not one serial chain of dependent adds and the compiler
// can keep them in one vector register.
inline constexpr int reduce_lanes = 8;

// One accumulator in a vector: a std::vector<bool> of the all/any accumulators would pack them into bits,
// which cannot bind to Acc& and which two threads cannot write side by side.
template <class Acc>
struct AccCell {
  Acc a;
};

template <class T, class Red, class Get>
auto reduce_run(const Red& red, index_t n, Get&& get) {
  using Acc = typename Red::template acc_t<T>;
  Acc lanes[reduce_lanes];
  for (int k = 0; k < reduce_lanes; ++k) lanes[k] = red.template init<T>();
  index_t r = 0;
  // The fused input is first evaluated a chunk at a time into an L1-resident buffer: that loop is the
  // plain elementwise loop, which vectorises however heavy the math, where interleaving it with the
  // accumulator updates does not. Summing the buffer is then cheap.
  constexpr index_t chunk = 512;
  T buf[chunk];
  for (; r + chunk <= n; r += chunk) {
    METAGRAD_SIMD_LOOP
    for (index_t j = 0; j < chunk; ++j) buf[j] = get(r + j);
    for (index_t j = 0; j < chunk; j += reduce_lanes)
      for (int k = 0; k < reduce_lanes; ++k) red.template add<T>(lanes[k], buf[j + k], r + j + k);
  }
  for (; r + reduce_lanes <= n; r += reduce_lanes)
    for (int k = 0; k < reduce_lanes; ++k) red.template add<T>(lanes[k], get(r + k), r + k);
  for (; r < n; ++r) red.template add<T>(lanes[r % reduce_lanes], get(r), r);
  Acc acc = lanes[0];
  for (int k = 1; k < reduce_lanes; ++k) acc = red.template merge<T>(acc, lanes[k]);
  return acc;
}
}  // namespace detail

/// Reduces `plan` (lowered at its own shape `in`) over the axes where reduce[d] is true, writing
/// red.finish(...) for each kept position to out, whose strides are given at the input's rank (the value
/// on reduced axes is ignored).
template <class Red, class Plan, class Out, int R>
void reduce(const Red& red, const Plan& plan, const Shape<R>& in, const Array<bool, R>& reduce, Out* out,
            const Strides<R>& out_strides) {
  using T = typename Plan::value_type;
  using Acc = typename Red::template acc_t<T>;
  index_t M = 1, N = 1;
  int first_red = R, last_kept = -1;
  for (int d = 0; d < R; ++d) {
    if (reduce[d]) {
      N *= in[d];
      if (first_red == R) first_red = d;
    } else {
      M *= in[d];
      last_kept = d;
    }
  }
  if (M == 0) return;
  // Offset in `out` of kept position m (row-major over the kept axes).
  auto out_offset = [&](index_t m) {
    index_t off = 0;
    for (int d = R - 1; d >= 0; --d)
      if (!reduce[d]) {
        off += (m % in[d]) * out_strides[d];
        m /= in[d];
      }
    return off;
  };
  const bool flat = plan.is_flat();
  const bool suffix = last_kept < first_red;  // every reduced axis after every kept one
  bool prefix = true;                         // every reduced axis before every kept one
  for (int d = 0, seen_kept = 0; d < R; ++d) {
    if (!reduce[d])
      seen_kept = 1;
    else if (seen_kept)
      prefix = false;
  }

  if (flat && suffix) {
    if (M == 1) {
      // One result: split the range over threads, merge the partials in order (deterministic).
      const int chunks = static_cast<int>(std::min<index_t>(num_threads(), (N + parallel_grain - 1) / parallel_grain));
      // Partials live on the stack for any sane thread count (steady-state runs must not allocate).
      const std::size_t nparts = static_cast<std::size_t>(chunks > 0 ? chunks : 1);
      detail::AccCell<Acc> small[64];
      std::vector<detail::AccCell<Acc>> big;
      if (nparts > 64) big.resize(nparts);
      detail::AccCell<Acc>* part = nparts > 64 ? big.data() : small;
      for (std::size_t c = 0; c < nparts; ++c) part[c].a = red.template init<T>();
      parallel_for(
          chunks,
          [&](index_t cb, index_t ce) {
            for (index_t c = cb; c < ce; ++c) {
              const index_t b = N * c / chunks, e = N * (c + 1) / chunks;
              Acc a = detail::reduce_run<T>(red, e - b, [&](index_t r) { return plan.flat(b + r); });
              // Positions inside a chunk are relative; shift them by re-merging with an offset-aware add.
              if constexpr (requires { a.index; }) a.index = a.index >= 0 ? a.index + b : a.index;
              part[static_cast<std::size_t>(c)].a = a;
            }
          },
          parallel_grain, 1);
      Acc acc = part[0].a;
      for (std::size_t c = 1; c < nparts; ++c) acc = red.template merge<T>(acc, part[c].a);
      out[0] = static_cast<Out>(red.template finish<T>(acc, N));
      return;
    }
    parallel_for(
        M,
        [&](index_t mb, index_t me) {
          for (index_t m = mb; m < me; ++m) {
            const index_t base = m * N;
            const Acc a = detail::reduce_run<T>(red, N, [&](index_t r) { return plan.flat(base + r); });
            out[out_offset(m)] = static_cast<Out>(red.template finish<T>(a, N));
          }
        },
        N, 1);
    return;
  }

  if (flat && prefix) {
    // Element (r, m) is flat(r * M + m): walk rows, accumulating a vector of M partial results.
    parallel_for(
        M,
        [&](index_t mb, index_t me) {
          // Per-thread scratch that only grows, so steady-state runs allocate nothing.
          thread_local std::vector<detail::AccCell<Acc>> acc;
          if (acc.size() < static_cast<std::size_t>(me - mb)) acc.resize(static_cast<std::size_t>(me - mb));
          for (index_t m = mb; m < me; ++m) acc[static_cast<std::size_t>(m - mb)].a = red.template init<T>();
          for (index_t r = 0; r < N; ++r) {
            const index_t base = r * M;
            for (index_t m = mb; m < me; ++m)
              red.template add<T>(acc[static_cast<std::size_t>(m - mb)].a, plan.flat(base + m), r);
          }
          for (index_t m = mb; m < me; ++m)
            out[out_offset(m)] = static_cast<Out>(red.template finish<T>(acc[static_cast<std::size_t>(m - mb)].a, N));
        },
        N);
    return;
  }

  if (prefix && N > 1) {
    // Reduced axes leading, input not flat (a broadcast or a view inside it): walk the input in row-major
    // order through multi-indices, rows of reduced positions outside, kept positions inside, so that the
    // reads stay sequential and each output keeps one accumulator (not a column walk per output).
    int nred = 0;
    for (int d = 0; d < R; ++d) nred += reduce[d] ? 1 : 0;
    parallel_for(
        M,
        [&](index_t mb, index_t me) {
          thread_local std::vector<detail::AccCell<Acc>> acc;
          if (acc.size() < static_cast<std::size_t>(me - mb)) acc.resize(static_cast<std::size_t>(me - mb));
          for (index_t m = mb; m < me; ++m) acc[static_cast<std::size_t>(m - mb)].a = red.template init<T>();
          Array<index_t, R> idx{};
          for (index_t r = 0; r < N; ++r) {
            index_t rem = r;
            for (int d = nred - 1; d >= 0; --d) {
              idx[d] = rem % in[d];
              rem /= in[d];
            }
            rem = mb;
            for (int d = R - 1; d >= nred; --d) {
              idx[d] = rem % in[d];
              rem /= in[d];
            }
            for (index_t m = mb; m < me; ++m) {
              red.template add<T>(acc[static_cast<std::size_t>(m - mb)].a, plan.at(idx), r);
              for (int d = R - 1; d >= nred; --d) {  // odometer over the kept axes
                if (++idx[d] < in[d]) break;
                idx[d] = 0;
              }
            }
          }
          for (index_t m = mb; m < me; ++m)
            out[out_offset(m)] = static_cast<Out>(red.template finish<T>(acc[static_cast<std::size_t>(m - mb)].a, N));
        },
        N);
    return;
  }

  // General case: for each kept position walk the reduced sub-space with a multi-index.
  parallel_for(
      M,
      [&](index_t mb, index_t me) {
        Array<index_t, R> idx{};
        for (index_t m = mb; m < me; ++m) {
          index_t rem = m;
          for (int d = R - 1; d >= 0; --d)
            if (!reduce[d]) {
              idx[d] = rem % in[d];
              rem /= in[d];
            } else {
              idx[d] = 0;
            }
          Acc a = red.template init<T>();
          if constexpr (R > 0 && row_plan<Plan, index_t>) {
            if (reduce[R - 1] && in[R - 1] > 0) {
              // The last axis is reduced: walk it as rows (one base offset per row and leaf).
              const index_t w = in[R - 1];
              for (index_t r = 0; r < N; r += w) {
                const auto rp = plan.shifted(idx);
                // reduce_run keeps several accumulators (vectorised); positions are relative to the row.
                Acc part = detail::reduce_run<T>(red, w, [&](index_t j) { return rp.row(j); });
                if constexpr (requires { part.index; }) part.index = part.index >= 0 ? part.index + r : part.index;
                a = red.template merge<T>(a, part);
                for (int d = R - 2; d >= 0; --d) {  // odometer over the other reduced axes
                  if (!reduce[d]) continue;
                  if (++idx[d] < in[d]) break;
                  idx[d] = 0;
                }
              }
              out[out_offset(m)] = static_cast<Out>(red.template finish<T>(a, N));
              continue;
            }
          }
          for (index_t r = 0; r < N; ++r) {
            red.template add<T>(a, plan.at(idx), r);
            for (int d = R - 1; d >= 0; --d) {  // odometer over the reduced axes
              if (!reduce[d]) continue;
              if (++idx[d] < in[d]) break;
              idx[d] = 0;
            }
          }
          out[out_offset(m)] = static_cast<Out>(red.template finish<T>(a, N));
        }
      },
      N);
}

}  // namespace cpu

METAGRAD_NAMESPACE_END
