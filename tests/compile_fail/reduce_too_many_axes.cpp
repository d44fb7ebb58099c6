// expect: more reduction axes than the expression has dimensions
// A reduction over three axes of a rank-2 tensor (ReduceExpr's static_assert).
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  const auto x = mg::ones<float>({2, 3});
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  auto y = mg::sum(x, {0, 1, 0});
#else
  auto y = mg::sum(x, {0, 1});
#endif
  return static_cast<int>(y.shape().numel());
}
