// expect: uniform draws need a floating dtype
// uniform() of an integer dtype (uniform's static_assert): use randint.
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  auto y = mg::uniform<std::int32_t>({3});
#else
  auto y = mg::uniform<float>({3});
#endif
  return static_cast<int>(y.shape()[0]);
}
