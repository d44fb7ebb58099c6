// metagrad/backend/cpu/parallel.hpp — the CPU thread pool interface: OpenMP when the build has it, one
// thread otherwise. Work is split into contiguous static chunks so results do not depend on timing.
// Include <metagrad/metagrad.hpp> instead.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../../core/config.hpp"
#include "../../core/shape.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

METAGRAD_NAMESPACE_BEGIN

namespace detail {
inline int& thread_setting() {
  static int n = 0;  // 0: the OpenMP default (OMP_NUM_THREADS or the core count)
  return n;
}
}  // namespace detail

#if defined(_OPENMP)
namespace detail {
// OpenMP's own default (OMP_NUM_THREADS or the core count), read before set_num_threads first changes it.
inline int omp_default_threads() {
  static const int n = omp_get_max_threads();
  return n;
}
}  // namespace detail
#endif

/// Sets the number of CPU threads fused loops and reductions use (n <= 0 restores the default).
inline void set_num_threads(int n) {
  detail::thread_setting() = n > 0 ? n : 0;
#if defined(_OPENMP)
  const int fallback = detail::omp_default_threads();  // read before the first change
  omp_set_num_threads(n > 0 ? n : fallback);
#endif
}

/// Number of CPU threads a large loop will use (1 in a build without OpenMP).
inline int num_threads() {
#if defined(_OPENMP)
  return detail::thread_setting() > 0 ? detail::thread_setting() : omp_get_max_threads();
#else
  return 1;
#endif
}

/// Below this many elements a loop runs on the calling thread: waking a team costs a few microseconds,
/// more than a small elementwise pass.
inline constexpr index_t parallel_grain = 1 << 15;

namespace cpu {

/// Calls f(begin, end) over [0, n) split into at most num_threads() contiguous chunks (one chunk when n is
/// small or `weight` work units per element say the pass is cheap). Chunk boundaries are multiples of
/// `align` elements so vector loops keep aligned bodies.
template <class F>
void parallel_for(index_t n, F&& f, index_t weight = 1, index_t align = 16) {
  const int threads = num_threads();
  if (threads <= 1 || n * weight < parallel_grain) {
    if (n > 0) f(index_t{0}, n);
    return;
  }
  const index_t chunks = std::min<index_t>(threads, (n * weight + parallel_grain - 1) / parallel_grain);
#if defined(_OPENMP)
#pragma omp parallel for num_threads(static_cast<int>(chunks)) schedule(static, 1)
#endif
  for (index_t c = 0; c < chunks; ++c) {
    index_t b = n * c / chunks, e = n * (c + 1) / chunks;
    b = c == 0 ? 0 : b / align * align;
    e = c == chunks - 1 ? n : e / align * align;
    if (b < e) f(b, e);
  }
}

}  // namespace cpu
METAGRAD_NAMESPACE_END
