// expect: matmul needs operands of rank 2 or more
// matmul of two vectors (MatmulExpr's static_assert): make them matrices with unsqueeze, or use sum(a * b).
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  const auto a = mg::ones<double>({3});
  const auto b = mg::ones<double>({3});
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  auto c = mg::matmul(a, b);
#else
  auto c = mg::matmul(a.unsqueeze(0), b.unsqueeze(1));
#endif
  return static_cast<int>(c.rank);
}
