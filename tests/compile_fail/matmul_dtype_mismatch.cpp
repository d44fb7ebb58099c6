// expect: matmul needs both operands of the same dtype
// matmul of a float and a double matrix (MatmulExpr's static_assert): convert one with cast<T>().
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  const auto a = mg::ones<float>({2, 3});
  const auto b = mg::ones<double>({3, 4});
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  auto c = mg::matmul(a, b);
#else
  auto c = mg::matmul(mg::cast<double>(a), b);
#endif
  return static_cast<int>(c.rank);
}
