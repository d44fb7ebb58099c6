// expect: dtype mismatch between the expression and the tensor it is assigned to
// y /= x on an integer tensor: true division gives float, which an int32 tensor cannot take without a cast.
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  auto y = mg::ones<std::int32_t>({3});
  const auto x = mg::ones<std::int32_t>({3});
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  y /= x;
#else
  y.assign(mg::cast<std::int32_t>(y / x));
#endif
  return static_cast<int>(y.numel());
}
