// expect: t.. transposes a rank-2 expression
// t() on a rank-3 expression (t's static_assert): use permute or transpose(a, b).
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  const auto x = mg::zeros<float>({2, 3, 4});
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  auto y = (x * 2.0f).t();
#else
  auto y = (x * 2.0f).transpose(1, 2);
#endif
  return static_cast<int>(y.shape()[0]);
}
