// expect: broadcast_to cannot lower the rank
// broadcast_to() a shape of lower rank (BroadcastExpr's static_assert): reduce or reshape instead.
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  const auto x = mg::zeros<float>({2, 3});
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  auto y = x.broadcast_to({3});
#else
  auto y = x.broadcast_to({4, 2, 3});
#endif
  return static_cast<int>(y.shape()[0]);
}
