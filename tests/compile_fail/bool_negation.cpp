// expect: unary . is not defined on bool expressions
// Negating a bool tensor (ops::Neg's static_assert): use ! or logical_not.
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  const auto b = mg::zeros<bool>({3});
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  mg::Tensor<bool, 1> y = -b;
#else
  mg::Tensor<bool, 1> y = !b;
#endif
  return static_cast<int>(y.numel());
}
