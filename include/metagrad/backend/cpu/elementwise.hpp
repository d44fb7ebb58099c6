// metagrad/backend/cpu/elementwise.hpp — the CPU driver of a fused elementwise plan: one flat,
// vectorisable loop when every operand is contiguous and of the output's shape, a row-wise strided loop
// otherwise; threads above a size threshold; 32-bit index math when the sizes allow.
// Include <metagrad/metagrad.hpp> instead.
#pragma once

#include <cstdint>
#include <limits>

#include "../../core/config.hpp"
#include "../../core/shape.hpp"
#include "parallel.hpp"

// A loop over a plan that cannot vectorise (bool outputs, integer division, libm calls in double) is still
// correct; clang would otherwise warn at every such instantiation of an `omp simd` loop.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

METAGRAD_NAMESPACE_BEGIN
namespace cpu {

/// True when every offset the plan and the output can form fits in int32 (the loops then index with
/// 32-bit integers, which halves index registers and lets the vectoriser use 32-bit lanes).
template <class Plan, class T, int R>
bool fits_int32(const Plan& plan, const Shape<R>& shape, const Strides<R>& out_strides) {
  constexpr index_t lim = std::numeric_limits<std::int32_t>::max();
  if (shape.numel() >= lim) return false;
  bool ok = true;
  index_t span = 0;
  for (int d = 0; d < R; ++d)
    span += (shape[d] > 0 ? shape[d] - 1 : 0) * (out_strides[d] < 0 ? -out_strides[d] : out_strides[d]);
  ok &= span < lim;
  plan.visit_leaves([&](const void*, const void* lo, const void* hi, const auto&,
                        bool) { ok &= static_cast<const char*>(hi) - static_cast<const char*>(lo) < lim; },
                    false, shape);
  return ok;
}

namespace detail {
template <class I, class T, int R, class Plan>
void run_plan(T* out, const Strides<R>& ostr, const Shape<R>& shape, const Plan& plan, bool flat) {
  const index_t n = shape.numel();
  if constexpr (R == 0) {
    out[0] = static_cast<T>(plan.at(Array<I, 0>{}));
  } else if (flat) {
    parallel_for(n, [&](index_t b, index_t e) {
      const I lo = static_cast<I>(b), hi = static_cast<I>(e);
      METAGRAD_SIMD_LOOP
      for (I i = lo; i < hi; ++i) out[i] = static_cast<T>(plan.flat(i));
    });
  } else {
    const index_t inner = shape[R - 1];
    const index_t rows = n / inner;
    const I ostep = static_cast<I>(ostr[R - 1]);
    parallel_for(
        rows,
        [&](index_t rb, index_t re) {
          for (index_t r = rb; r < re; ++r) {
            Array<I, R> idx{};
            index_t rem = r;
            for (int d = R - 2; d >= 0; --d) {
              idx[d] = static_cast<I>(rem % shape[d]);
              rem /= shape[d];
            }
            T* row = out;
            for (int d = 0; d < R - 1; ++d) row += static_cast<index_t>(idx[d]) * ostr[d];
            const I m = static_cast<I>(inner);
            if constexpr (row_plan<Plan, I>) {
              // Broadcasts along outer axes (a bias over NCHW): one base offset per row and leaf.
              const auto rp = plan.shifted(idx);
              for (I j = 0; j < m; ++j) row[j * ostep] = static_cast<T>(rp.row(j));
            } else {
              for (I j = 0; j < m; ++j) {
                idx[R - 1] = j;
                row[j * ostep] = static_cast<T>(plan.at(idx));
              }
            }
          }
        },
        inner, 1);
  }
}
}  // namespace detail

/// Writes every element of `plan` (lowered at `shape`) to out (strides in elements).
/// @pre the plan does not read `out` except element-for-element at the same index.
template <class T, int R, class Plan>
void run_elementwise(T* out, const Strides<R>& ostr, const Shape<R>& shape, const Plan& plan_in) {
  if (shape.numel() == 0) return;
  with_static_plan(plan_in, [&](const auto& plan) {
    using P = std::remove_cvref_t<decltype(plan)>;
    const bool flat = plan.is_flat() && is_contiguous(shape, ostr);
    if (fits_int32<P, T, R>(plan, shape, ostr))
      detail::run_plan<std::int32_t>(out, ostr, shape, plan, flat);
    else
      detail::run_plan<std::int64_t>(out, ostr, shape, plan, flat);
  });
}

}  // namespace cpu
METAGRAD_NAMESPACE_END

#if defined(__clang__)
#pragma clang diagnostic pop
#endif
