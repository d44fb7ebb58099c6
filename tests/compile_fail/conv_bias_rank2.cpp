// expect: conv2d needs a bias of rank 1
// conv2d(x, w, b) with a bias shaped [1, C_out] (Conv2dBiasExpr's static_assert): the bias is one value per
// output channel, a vector. Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles.
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  const auto x = mg::ones<float>({1, 2, 5, 5});
  const auto w = mg::ones<float>({3, 2, 3, 3});
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  const auto b = mg::ones<float>({1, 3});
#else
  const auto b = mg::ones<float>({3});
#endif
  auto y = mg::conv2d(x, w, b);
  return static_cast<int>(y.rank);
}
