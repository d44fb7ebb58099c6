// tests/single_header/test_single_header.cpp — checks that the generated single_include/metagrad/metagrad.hpp
// compiles and works on its own. This program is built against single_include/ only (target metagrad::single,
// no include/ on the path) and without doctest, so it is a plain main that returns nonzero on failure.
// It includes the header twice to check that the amalgamated file keeps its include guard.
// clang-format off
#include <metagrad/metagrad.hpp>
#include <metagrad/metagrad.hpp>
// clang-format on

#include <cstdio>

int main() {
  int failures = 0;
#if !defined(METAGRAD_VERSION_MAJOR)
  std::puts("single header does not define METAGRAD_VERSION_MAJOR");
  ++failures;
#endif
  return failures == 0 ? 0 : 1;
}
