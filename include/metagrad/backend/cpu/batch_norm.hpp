// metagrad/backend/cpu/batch_norm.hpp — the CPU answers to the batch-norm hooks of expr/batch_norm.hpp:
// run_batch_norm (y and the batch statistics of contiguous [n, c, inner] input) and run_batch_norm_backward
// (dx, dgamma, dbeta). Each channel is one work unit: its mean, then the sum of squared deviations (two sweeps,
// no cancellation), then y in a third sweep; the backward pass sums dy and dy * xhat in one sweep and writes dx
// in a second. Sums are kept in double. Channels are spread over the CPU threads (cpu::parallel_for) and each
// is summed in one fixed order, so results never depend on the thread count. Include <metagrad/metagrad.hpp>
// instead.
#pragma once

#include <cmath>
#include <limits>

#include "../../core/config.hpp"
#include "../../core/shape.hpp"
#include "../../expr/batch_norm.hpp"
#include "parallel.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cpu {

/// call.out = [y, mean, invstd, unbiased var, mean] (see BatchNormCall). A channel with no values has NaN
/// statistics; one value gives an unbiased variance of NaN (0 / 0), as in NumPy and the composition it replaces.
template <class T>
void run_batch_norm(const BatchNormCall<T>& call) {
  const BatchNormGeometry g = call.geom;
  const index_t cnt = g.count();
  T* y = call.out;
  T* mean_out = call.out + g.numel();
  T* invstd_out = mean_out + g.c;
  T* var_out = invstd_out + g.c;
  parallel_for(
      g.c,
      [&](index_t c0, index_t c1) {
        for (index_t c = c0; c < c1; ++c) {
          double s = 0;
          for (index_t i = 0; i < g.n; ++i) {
            const T* xr = call.x + (i * g.c + c) * g.inner;
            double r = 0;
            METAGRAD_SIMD_SUM(r)
            for (index_t j = 0; j < g.inner; ++j) r += static_cast<double>(xr[j]);
            s += r;
          }
          const double mean = s / static_cast<double>(cnt);
          double ss = 0;
          for (index_t i = 0; i < g.n; ++i) {
            const T* xr = call.x + (i * g.c + c) * g.inner;
            double r = 0;
            METAGRAD_SIMD_SUM(r)
            for (index_t j = 0; j < g.inner; ++j) {
              const double d = static_cast<double>(xr[j]) - mean;
              r += d * d;
            }
            ss += r;
          }
          const double var = ss / static_cast<double>(cnt);
          const double invstd = 1.0 / std::sqrt(var + call.eps);
          mean_out[c] = static_cast<T>(mean);
          mean_out[3 * g.c + c] = static_cast<T>(mean);
          invstd_out[c] = static_cast<T>(invstd);
          var_out[c] =
              static_cast<T>(cnt > 1 ? ss / static_cast<double>(cnt - 1) : std::numeric_limits<double>::quiet_NaN());
          // y = (x - mean) * a + beta with a = gamma * invstd.
          const T a = static_cast<T>(static_cast<double>(call.gamma[c]) * invstd);
          const T m = static_cast<T>(mean), b = call.beta[c];
          for (index_t i = 0; i < g.n; ++i) {
            const T* xr = call.x + (i * g.c + c) * g.inner;
            T* yr = y + (i * g.c + c) * g.inner;
            METAGRAD_SIMD_LOOP
            for (index_t j = 0; j < g.inner; ++j) yr[j] = (xr[j] - m) * a + b;
          }
        }
      },
      3 * cnt, 1);
}

/// call.out = [dx, dgamma, dbeta] (see BatchNormCall), from the saved call.mean and call.invstd.
template <class T>
void run_batch_norm_backward(const BatchNormCall<T>& call) {
  const BatchNormGeometry g = call.geom;
  const index_t cnt = g.count();
  T* dx = call.out;
  T* dgamma = call.out + g.numel();
  T* dbeta = dgamma + g.c;
  parallel_for(
      g.c,
      [&](index_t c0, index_t c1) {
        for (index_t c = c0; c < c1; ++c) {
          const double mean = static_cast<double>(call.mean[c]);
          const double invstd = static_cast<double>(call.invstd[c]);
          double sdy = 0, sdyx = 0;
          for (index_t i = 0; i < g.n; ++i) {
            const index_t base = (i * g.c + c) * g.inner;
            const T* xr = call.x + base;
            const T* dr = call.dy + base;
            double r = 0, rx = 0;
            METAGRAD_SIMD_SUM2(r, rx)
            for (index_t j = 0; j < g.inner; ++j) {
              const double d = static_cast<double>(dr[j]);
              r += d;
              rx += d * (static_cast<double>(xr[j]) - mean);
            }
            sdy += r;
            sdyx += rx;
          }
          const double dgam = sdyx * invstd;  // sum(dy * xhat)
          dgamma[c] = static_cast<T>(dgam);
          dbeta[c] = static_cast<T>(sdy);
          // dx = gamma * invstd * (dy - sdy / cnt - xhat * dgam / cnt) = dy * k + (x - mean) * kx + k0.
          const double n = static_cast<double>(cnt);
          const double k = static_cast<double>(call.gamma[c]) * invstd;
          const T tk = static_cast<T>(k), tkx = static_cast<T>(-k * invstd * dgam / n),
                  tk0 = static_cast<T>(-k * sdy / n);
          const T m = call.mean[c];
          for (index_t i = 0; i < g.n; ++i) {
            const index_t base = (i * g.c + c) * g.inner;
            const T* xr = call.x + base;
            const T* dr = call.dy + base;
            T* o = dx + base;
            METAGRAD_SIMD_LOOP
            for (index_t j = 0; j < g.inner; ++j) o[j] = dr[j] * tk + (xr[j] - m) * tkx + tk0;
          }
        }
      },
      2 * cnt, 1);
}

}  // namespace cpu
METAGRAD_NAMESPACE_END
