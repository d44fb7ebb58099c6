// expect: needs a scalar y .rank 0.
// The gradient of a rank-1 expression (grad()'s static_assert): reduce it to a scalar first.
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  mg::Input<struct x_tag, double, 1> x("x");
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  const auto y = mg::exp(x) * 2.0;
#else
  const auto y = mg::sum(mg::exp(x) * 2.0);
#endif
  auto [g] = mg::grad(y, x);
  return static_cast<int>(g.rank);
}
