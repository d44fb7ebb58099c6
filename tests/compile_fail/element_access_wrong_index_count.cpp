// expect: the number of indices must equal the tensor.s rank
// Element access of a rank-2 tensor with one index (Tensor::offset_of's static_assert).
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  const auto x = mg::zeros<float>({2, 3});
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  const float v = x(1);
#else
  const float v = x(1, 2);
#endif
  return static_cast<int>(v);
}
