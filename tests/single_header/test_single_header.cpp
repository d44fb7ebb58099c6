// tests/single_header/test_single_header.cpp — checks that the generated single_include/metagrad/metagrad.hpp
// compiles and works on its own. This program is built against single_include/ only (target metagrad::single,
// no include/ on the path) and without doctest, so it is a plain main that returns nonzero on failure.
// It includes the header twice to check that the amalgamated file keeps its include guard.
// clang-format off
#include <metagrad/metagrad.hpp>
#include <metagrad/metagrad.hpp>
// clang-format on

#include <cmath>
#include <cstdio>

using namespace metagrad;

int main() {
  int failures = 0;
  auto expect = [&](bool ok, const char* what) {
    if (!ok) {
      std::printf("single header: %s failed\n", what);
      ++failures;
    }
  };
#if !defined(METAGRAD_VERSION_MAJOR)
  expect(false, "METAGRAD_VERSION_MAJOR defined");
#endif
  // The whole stack through one header: creation, a fused broadcast expression, views, reductions, printing.
  Tensor<float, 2> a = {{1, 2, 3}, {4, 5, 6}};
  Tensor<float, 1> b = {0.5f, -1, 2};
  Tensor<float, 2> y = tanh(a * 0.25f + b) * 2.0f;
  for (index_t i = 0; i < 2; ++i)
    for (index_t j = 0; j < 3; ++j)
      expect(std::fabs(y(i, j) - 2.0f * std::tanh(a(i, j) * 0.25f + b(j))) < 1e-5f, "fused tanh expression");
  expect(sum(a).item() == 21.0f, "sum");
  expect(eval(argmax(a.t(), 1))(2) == 1, "argmax over a transposed view");
  expect(mean(a, {1}, keepdims).shape() == Shape<2>{2, 1}, "keepdims shape");
  expect(to_string(a.slice(1, 1, 3)).find("[[2., 3.],") != std::string::npos, "printing a slice");
  try {
    Tensor<float, 2> bad = a + ones<float>({4});
    expect(false, "shape_error on a broadcast mismatch");
  } catch (const shape_error&) {
  }
  if (failures == 0) std::printf("single header: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
