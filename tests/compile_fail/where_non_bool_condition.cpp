// expect: where.c, a, b. needs a bool condition
// where() with a float condition (where's static_assert).
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  const auto x = mg::ones<float>({3});
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  mg::Tensor<float, 1> y = mg::where(x, x, 0.0f);
#else
  mg::Tensor<float, 1> y = mg::where(x != 0.0f, x, 0.0f);
#endif
  return static_cast<int>(y.numel());
}
