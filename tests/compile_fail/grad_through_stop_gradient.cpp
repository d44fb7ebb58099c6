// expect: y does not depend on one of the leaves
// The only path from the loss to w runs through stop_gradient, so there is nothing to differentiate.
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  mg::Input<struct x_tag, double, 1> x("x");
  mg::Param<struct w_tag, double, 1> w("w", mg::ones<double>({3}));
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  const auto loss = mg::sum(x * mg::stop_gradient(w));
#else
  const auto loss = mg::sum(x * w);
#endif
  auto [g] = mg::grad(loss, w);
  return static_cast<int>(g.rank);
}
