// Consumer check for add_subdirectory(metagrad): metagrad::metagrad from a vendored source tree supplies the
// include path, C++20 and the optional dependencies it was configured with, and the headers compile in
// a project that knows nothing else about metagrad.
#include <cstdio>
#include <metagrad/metagrad.hpp>

int main() {
  std::printf("metagrad %d.%d.%d via add_subdirectory\n", METAGRAD_VERSION_MAJOR, METAGRAD_VERSION_MINOR,
              METAGRAD_VERSION_PATCH);
  // Views and a reduction through the vendored tree: the column sums of [[1, 2], [3, 4]] are 4 and 6.
  metagrad::Tensor<double, 2> m = {{1, 2}, {3, 4}};
  const metagrad::Tensor<double, 1> cols = metagrad::sum(m.t(), 1);
  return cols(0) == 4.0 && cols(1) == 6.0 ? 0 : 1;
}
