// expect: randint makes int32 or int64 tensors
// randint() of a floating dtype (randint's static_assert).
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  auto y = mg::randint<float>(0, 10, {3});
#else
  auto y = mg::randint<std::int32_t>(0, 10, {3});
#endif
  return static_cast<int>(y.numel());
}
