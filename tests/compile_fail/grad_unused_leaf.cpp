// expect: y does not depend on one of the leaves
// The gradient with respect to a leaf the loss never reads (grad()'s static_assert): ask for the leaves it uses.
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  mg::Input<struct x_tag, double, 1> x("x");
  mg::Param<struct w_tag, double, 1> w("w", mg::ones<double>({3}));
  const auto loss = mg::sum(mg::sin(x) * 2.0);
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  auto [g] = mg::grad(loss, w);
#else
  auto [g] = mg::grad(loss, x);
#endif
  return static_cast<int>(g.rank);
}
