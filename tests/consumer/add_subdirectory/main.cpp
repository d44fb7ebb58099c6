// Consumer check for add_subdirectory(metagrad): metagrad::metagrad from a vendored source tree supplies the
// include path, C++20 and the optional dependencies it was configured with, and the headers compile in
// a project that knows nothing else about metagrad.
#include <cstdio>
#include <metagrad/metagrad.hpp>

int main() {
  std::printf("metagrad %d.%d.%d via add_subdirectory\n", METAGRAD_VERSION_MAJOR, METAGRAD_VERSION_MINOR,
              METAGRAD_VERSION_PATCH);
  return METAGRAD_VERSION_MAJOR >= 0 ? 0 : 1;
}
