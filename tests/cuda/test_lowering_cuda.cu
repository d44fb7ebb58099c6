// CUDA tests of the lowered kernel form: a fused expression over device memory runs as one kernel and
// matches the CPU. They compile and link wherever nvcc is (so the device path cannot rot) and report
// "skipped: no CUDA device" when no GPU is present.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <metagrad/metagrad.hpp>
#include <vector>

#include "cuda_test_support.hpp"

using namespace metagrad;

namespace {

using cuda_test::have_device;

// Device buffer holding a copy of a host tensor's values, wrapped as a (non-owning) device Tensor.
template <class T, int R>
struct DeviceCopy {
  T* ptr = nullptr;
  Tensor<T, R> tensor;
  explicit DeviceCopy(const Tensor<T, R>& host) {
    const auto v = host.to_vector();
    metagrad::cuda::check(cudaMalloc(&ptr, v.size() * sizeof(T)), "cudaMalloc");
    metagrad::cuda::check(cudaMemcpy(ptr, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
    tensor = Tensor<T, R>::from_blob(ptr, host.shape(), Device::cuda(0));
  }
  ~DeviceCopy() { cudaFree(ptr); }
  std::vector<T> download() const {
    std::vector<T> v(static_cast<std::size_t>(tensor.numel()));
    metagrad::cuda::check(cudaMemcpy(v.data(), ptr, v.size() * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
    return v;
  }
};

}  // namespace

TEST_CASE("cuda: plans of fused expressions are trivially copyable kernel arguments") {
  Tensor<float, 2> a = rand<float>({4, 5}), x = rand<float>({4, 5});
  Tensor<float, 1> b = rand<float>({5});
  const auto plan = lower_expr(tanh(a * x + b) * 2.0f, a.shape());
  static_assert(std::is_trivially_copyable_v<decltype(plan)>);
  CHECK(!plan.is_flat());  // b is broadcast
  CHECK(lower_expr(a * x, a.shape()).is_flat());
}

TEST_CASE("cuda: a fused elementwise expression runs as one kernel and matches the CPU") {
  if (!have_device()) return;
  const index_t n = (1 << 20) + 3;
  Tensor<float, 1> ha = randn<float>({n}), hx = randn<float>({n}), hb = randn<float>({n}), hc = randn<float>({n}),
                   hd = randn<float>({n});
  DeviceCopy<float, 1> a(ha), x(hx), b(hb), c(hc), d(hd), y(zeros<float>({n}));
  const auto expr = tanh(a.tensor * x.tensor + b.tensor) * c.tensor + d.tensor * d.tensor;
  metagrad::cuda::run_elementwise(y.tensor.data(), y.tensor.strides(), y.tensor.shape(),
                                  lower_expr(expr, y.tensor.shape()));
  metagrad::cuda::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  const auto got = y.download();
  const Tensor<float, 1> want = tanh(ha * hx + hb) * hc + hd * hd;
  for (index_t i = 0; i < n; ++i) REQUIRE(got[static_cast<std::size_t>(i)] == doctest::Approx(want(i)).epsilon(1e-5));
}

TEST_CASE("cuda: the strided path handles broadcasts and transposed views") {
  if (!have_device()) return;
  Tensor<float, 2> hm = randn<float>({37, 53});
  Tensor<float, 1> hr = randn<float>({37});
  DeviceCopy<float, 2> m(hm), out(zeros<float>({53, 37}));
  DeviceCopy<float, 1> r(hr);
  const auto expr = exp(m.tensor.t()) - r.tensor;
  metagrad::cuda::run_elementwise(out.tensor.data(), out.tensor.strides(), out.tensor.shape(),
                                  lower_expr(expr, out.tensor.shape()));
  metagrad::cuda::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  const auto got = out.download();
  const Tensor<float, 2> want = exp(hm.t()) - hr;
  for (index_t i = 0; i < 53; ++i)
    for (index_t j = 0; j < 37; ++j)
      REQUIRE(got[static_cast<std::size_t>(i * 37 + j)] == doctest::Approx(want(i, j)).epsilon(1e-5));
}
