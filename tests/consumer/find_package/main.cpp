// Consumer check for find_package(metagrad): the installed headers (or the installed single header, for
// consumer_single) are found through the imported target alone, compile as C++20 in a project that knows
// nothing else about metagrad, and carry the version that the package's version file declared.
#include <cstdio>
#include <metagrad/metagrad.hpp>

int main() {
  std::printf("metagrad %d.%d.%d via find_package\n", METAGRAD_VERSION_MAJOR, METAGRAD_VERSION_MINOR,
              METAGRAD_VERSION_PATCH);
  // A fused expression and a reduction through the installed headers: 2 * (0 + 1 + ... + 9) = 90.
  const auto x = metagrad::arange<float>(10);
  const float total = metagrad::sum(x * 2.0f).item();
  const bool version_ok = METAGRAD_VERSION_MAJOR == EXPECT_MAJOR && METAGRAD_VERSION_MINOR == EXPECT_MINOR;
  return version_ok && total == 90.0f ? 0 : 1;
}
