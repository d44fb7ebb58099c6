// metagrad/backend/cuda/reduce.hpp — placeholder being written (CUB reductions).
#pragma once
#if defined(__CUDACC__)
#include "../../core/error.hpp"
#include "../../core/shape.hpp"
#include "runtime.hpp"
METAGRAD_NAMESPACE_BEGIN
namespace cuda {
template <class Red, class Plan, class Out, int R>
void run_reduction(const Red&, const Plan&, const Shape<R>&, const Array<bool, R>&, Out*, const Strides<R>&, int) {
  throw device_error("cuda reductions: not written yet");
}
}  // namespace cuda
METAGRAD_NAMESPACE_END
#endif
