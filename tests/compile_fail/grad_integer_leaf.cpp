// expect: every leaf must have a floating-point dtype
// The gradient with respect to an integer Input (grad()'s static_assert): integers have no derivative.
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  mg::Input<struct k_tag, std::int32_t, 1> k("k");
  mg::Input<struct x_tag, double, 1> x("x");
  const auto loss = mg::sum(mg::cast<double>(k) * x);
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  auto [g] = mg::grad(loss, k);
#else
  auto [g] = mg::grad(loss, x);
#endif
  return static_cast<int>(g.rank);
}
