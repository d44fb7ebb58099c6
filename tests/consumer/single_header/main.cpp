// Consumer check for the vendored single header: single_include/metagrad/metagrad.hpp alone, with only the
// standard library and no build-system support, compiles as C++20 and reports its version.
#include <cstdio>
#include <metagrad/metagrad.hpp>

int main() {
  std::printf("metagrad %d.%d.%d via the single header\n", METAGRAD_VERSION_MAJOR, METAGRAD_VERSION_MINOR,
              METAGRAD_VERSION_PATCH);
  // Broadcasting and a comparison through the single header: 3 of the 4 elements of [0, 1, 2, 3] + 1 exceed 1.
  const auto x = metagrad::arange<float>(4) + 1.0f;
  const auto n = metagrad::sum(metagrad::cast<int>(x > 1.0f)).item();
  return n == 3 ? 0 : 1;
}
