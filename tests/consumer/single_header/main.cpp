// Consumer check for the vendored single header: single_include/metagrad/metagrad.hpp alone, with only the
// standard library and no build-system support, compiles as C++20 and reports its version.
#include <cstdio>
#include <metagrad/metagrad.hpp>

int main() {
  std::printf("metagrad %d.%d.%d via the single header\n", METAGRAD_VERSION_MAJOR, METAGRAD_VERSION_MINOR,
              METAGRAD_VERSION_PATCH);
  return METAGRAD_VERSION_MAJOR >= 0 ? 0 : 1;
}
