// Consumer check for find_package(metagrad): the installed headers (or the installed single header, for
// consumer_single) are found through the imported target alone, compile as C++20 in a project that knows
// nothing else about metagrad, and carry the version that the package's version file declared.
#include <cstdio>
#include <metagrad/metagrad.hpp>

int main() {
  std::printf("metagrad %d.%d.%d via find_package\n", METAGRAD_VERSION_MAJOR, METAGRAD_VERSION_MINOR,
              METAGRAD_VERSION_PATCH);
  return METAGRAD_VERSION_MAJOR == EXPECT_MAJOR && METAGRAD_VERSION_MINOR == EXPECT_MINOR ? 0 : 1;
}
