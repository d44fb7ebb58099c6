// expect: dtype mismatch between the expression and the tensor it is assigned to
// Assigning a double expression to a float tensor without cast<float> (Tensor::check_assignable).
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  const auto x = mg::zeros<double>({3});
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  mg::Tensor<float, 1> y = x * 2.0;
#else
  mg::Tensor<float, 1> y = mg::cast<float>(x * 2.0);
#endif
  return static_cast<int>(y.numel());
}
