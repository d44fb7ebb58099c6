// The single header in a .cu file: single_include/metagrad/metagrad.hpp alone carries the CUDA backend under
// nvcc. Built wherever nvcc is; the GPU part reports "skipped: no CUDA device" on a machine without a GPU.
#include <cmath>
#include <cstdio>
#include <metagrad/metagrad.hpp>
#include <vector>

namespace mg = metagrad;

int main() {
  // Present in every nvcc build of the single header, GPU or not.
  static_assert(sizeof(mg::cuda::DeviceMemoryStats) > 0);
  if (mg::cuda::device_count() == 0) {
    std::printf("skipped: no CUDA device\n");
    return 0;
  }
  const auto gpu = mg::Device::cuda(0);
  const auto a = mg::from_vector<float>({1, 2, 3, 4}, mg::Shape<2>{2, 2});
  const auto g = a.to(gpu);
  const mg::Tensor<float, 2> y = mg::exp(g) * 2.0f + mg::matmul(g, g);
  const float s = mg::eval(mg::sum(y)).item();
  const mg::Tensor<float, 2> yc = mg::exp(a) * 2.0f + mg::matmul(a, a);
  const float want = mg::eval(mg::sum(yc)).item();
  if (std::fabs(s - want) > 1e-5f * std::fabs(want)) {
    std::printf("single header on CUDA: got %g, want %g\n", s, want);
    return 1;
  }
  std::printf("single header on CUDA: ok (%g)\n", s);
  return 0;
}
