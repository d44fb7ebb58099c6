// expect: needs one Slice per axis
// slice({...}) of a rank-2 tensor with one Slice (slice's static_assert): use slice(axis, start, stop) for one.
// Built with -DMETAGRAD_COMPILE_FAIL_CONTROL, the corrected line below compiles: the failure is the check's.
#include <cstdint>
#include <metagrad/metagrad.hpp>

namespace mg = metagrad;

int main() {
  const auto x = mg::zeros<float>({4, 4});
#ifndef METAGRAD_COMPILE_FAIL_CONTROL
  auto y = x.slice({mg::Slice{0, 2}});
#else
  auto y = x.slice({mg::Slice{0, 2}, mg::Slice{}});
#endif
  return static_cast<int>(y.shape()[0]);
}
