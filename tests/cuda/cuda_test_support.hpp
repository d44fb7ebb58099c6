// What every CUDA test file shares: have_device() is false (and says "skipped: no CUDA device" once) on a
// machine without a GPU, so that the CUDA test program builds and passes in CI, where there is none.
#pragma once

#include <cstdio>
#include <metagrad/metagrad.hpp>

namespace cuda_test {
inline bool have_device() {
  if (metagrad::cuda::device_count() > 0) return true;
  static bool said = false;
  if (!said) std::printf("skipped: no CUDA device\n");
  said = true;
  return false;
}
}  // namespace cuda_test
