// expect: square is not defined on bool expressions
// square() of a bool tensor (ops::Square's static_assert).
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  const auto b = mg::zeros<bool>({3});
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  mg::Tensor<bool, 1> y = mg::square(b);
#else
  mg::Tensor<std::int32_t, 1> y = mg::square(mg::cast<std::int32_t>(b));
#endif
  return static_cast<int>(y.numel());
}
