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

/// Calls f(begin, end) over [0, n) on up to num_threads() threads (on the calling thread alone when n is
/// small or `weight` work units per element say the pass is cheap). Large ranges go out in blocks of about
/// 2^18 work units dealt round-robin, so the threads stream through neighbouring memory at any moment
/// (with one contiguous half each, two threads of a bandwidth-bound pass ran slower than one). Block
/// boundaries are multiples of `align` elements so vector loops keep aligned bodies. The split depends
/// only on n, weight and the thread count, never on timing.
template <class F>
void parallel_for(index_t n, F&& f, index_t weight = 1, index_t align = 16) {
  const int threads = num_threads();
  if (threads <= 1 || n * weight < parallel_grain) {
    if (n > 0) f(index_t{0}, n);
    return;
  }
  const index_t team = std::min<index_t>(threads, (n * weight + parallel_grain - 1) / parallel_grain);
  constexpr index_t block_units = index_t{1} << 18;
  index_t block = std::max<index_t>(align, block_units / std::max<index_t>(weight, 1) / align * align);
  index_t blocks = (n + block - 1) / block;
  if (blocks < team) {  // fewer blocks than threads: one even, aligned share each
    block = ((n + team - 1) / team + align - 1) / align * align;
    blocks = (n + block - 1) / block;
  }
#if defined(_OPENMP)
#pragma omp parallel for num_threads(static_cast <int>(team)) schedule(static, 1)
#endif
  for (index_t c = 0; c < blocks; ++c) f(c * block, std::min(n, (c + 1) * block));
}

}  // namespace cpu
METAGRAD_NAMESPACE_END
