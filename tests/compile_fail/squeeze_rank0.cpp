// expect: squeeze needs an expression of rank 1 or more
// squeeze() of a rank-0 tensor (squeeze's static_assert).
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  const auto x = mg::full<float>(mg::Shape<0>{}, 1.0f);
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  auto y = x.squeeze(0);
#else
  auto y = x.unsqueeze(0);
#endif
  return static_cast<int>(y.shape()[0]);
}
