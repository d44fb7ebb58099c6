// expect: permute needs exactly one axis per dimension of the expression
// permute() of a rank-3 tensor with two axes (permute's static_assert).
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  const auto x = mg::zeros<float>({2, 3, 4});
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  auto y = x.permute({1, 0});
#else
  auto y = x.permute({1, 0, 2});
#endif
  return static_cast<int>(y.shape()[0]);
}
