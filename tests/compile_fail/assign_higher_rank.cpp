// expect: the expression has a higher rank than the tensor it is assigned to
// Assigning a rank-3 expression to a rank-2 tensor (Tensor::check_assignable).
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  const auto x = mg::zeros<float>({2, 3, 4});
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  mg::Tensor<float, 2> y = x + 1.0f;
#else
  mg::Tensor<float, 3> y = x + 1.0f;
#endif
  return static_cast<int>(y.numel());
}
