// expect: . is not defined on bool expressions
// Adding two bool tensors (ops::Add's static_assert): use logical_or, or cast to an integer first.
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  const auto b = mg::zeros<bool>({3});
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  mg::Tensor<bool, 1> y = b + b;
#else
  mg::Tensor<bool, 1> y = b || b;
#endif
  return static_cast<int>(y.numel());
}
