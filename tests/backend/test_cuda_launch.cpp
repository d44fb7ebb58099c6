// The device-independent half of the CUDA elementwise driver (backend/cuda/launch.hpp), run on the CPU: the
// N-lane reads of lowered plans against element-by-element reads, the unravelling of flat indices, the launch
// geometry, and a CPU replay of the vector kernel's grid-stride loop that must write every element exactly
// once for any length. The kernels run this same code on a GPU.
#include <doctest/doctest.h>

#include <cstdint>
#include <metagrad/backend/cuda/launch.hpp>
#include <metagrad/metagrad.hpp>
#include <vector>

namespace mg = metagrad;
using mg::index_t;

namespace {

// Every lane of load_lanes<N>(plan, i) equals plan.flat(i + k), for every multiple i of N.
template <int N, class Plan>
void check_lanes(const Plan& plan, index_t n) {
  using V = typename Plan::value_type;
  for (index_t i = 0; i + N <= n; i += N) {
    const auto lanes = mg::cuda::load_lanes<N>(plan, i);
    for (int k = 0; k < N; ++k) {
      const V want = plan.flat(i + k);
      REQUIRE(lanes.v[k] == want);
    }
  }
}

}  // namespace

TEST_CASE("cuda launch: lanes of leaf, scalar and op plans equal element reads") {
  const index_t n = 64;
  mg::Tensor<float, 1> a = mg::randn<float>({n}), b = mg::randn<float>({n}), c = mg::randn<float>({n});
  mg::Tensor<double, 1> d = mg::randn<double>({n});
  mg::Tensor<std::int32_t, 1> k = mg::randint<std::int32_t>(-50, 50, {n});
  const mg::Shape<1> s{n};
  check_lanes<4>(mg::lower_expr(a, s), n);
  check_lanes<4>(mg::lower_expr(a * b + 2.0f, s), n);
  check_lanes<4>(mg::lower_expr(mg::tanh(a) - mg::exp(b) * c, s), n);
  check_lanes<4>(mg::lower_expr(mg::where(a > b, a, c), s), n);
  check_lanes<4>(mg::lower_expr(mg::cast<float>(d) * a, s), n);  // a double leaf read in float lanes
  check_lanes<2>(mg::lower_expr(d * 3.0 + 1.0, s), n);
  check_lanes<4>(mg::lower_expr(k * 3 + 1, s), n);
  check_lanes<16>(mg::lower_expr(a > 0.0f, s), n);  // bool output: 16 lanes
  // Plans without a lane form (random draws) are read element by element.
  mg::Generator gen(7);
  check_lanes<4>(mg::lower_expr(mg::uniform<float>({n}, 0.0, 1.0, gen) + a, s), n);
  // Reshapes and unsqueezes of a flat operand pass flat reads through.
  mg::Tensor<float, 2> m = mg::randn<float>({8, 8});
  check_lanes<4>(mg::lower_expr(mg::reshape(m * 2.0f, mg::Shape<1>{64}), s), n);
}

TEST_CASE("cuda launch: vector_lanes fills 16 bytes") {
  CHECK(mg::cuda::vector_lanes<float, int>() == 4);
  CHECK(mg::cuda::vector_lanes<double, int>() == 2);
  CHECK(mg::cuda::vector_lanes<std::int64_t, int>() == 2);
  CHECK(mg::cuda::vector_lanes<bool, int>() == 16);
  CHECK(alignof(mg::cuda::Lanes<float, 4>) == 16);
  CHECK(alignof(mg::cuda::Lanes<double, 4>) == 16);  // 32 bytes: two 16-byte loads
  CHECK(alignof(mg::cuda::Lanes<float, 2>) == 8);
}

TEST_CASE("cuda launch: unravel_index gives the multi-index and the strided offset") {
  const mg::Shape<3> shape{3, 4, 5};
  const mg::Strides<3> strides{1, 3, 12};  // a permuted layout
  index_t i = 0;
  for (index_t x = 0; x < 3; ++x)
    for (index_t y = 0; y < 4; ++y)
      for (index_t z = 0; z < 5; ++z, ++i) {
        std::int32_t off32 = 0;
        const auto idx32 =
            mg::cuda::unravel_index<std::int32_t, 3>(static_cast<std::int32_t>(i), shape, strides, off32);
        CHECK(idx32[0] == x);
        CHECK(idx32[1] == y);
        CHECK(idx32[2] == z);
        CHECK(off32 == x * 1 + y * 3 + z * 12);
        std::int64_t off64 = 0;
        (void)mg::cuda::unravel_index<std::int64_t, 3>(i, shape, strides, off64);
        CHECK(off64 == off32);
      }
  // Beyond 2^31 elements the 64-bit form is exact.
  const mg::Shape<2> big{std::int64_t(1) << 20, std::int64_t(1) << 12};
  const mg::Strides<2> bs{std::int64_t(1) << 12, 1};
  std::int64_t off = 0;
  const std::int64_t last = (std::int64_t(1) << 32) - 1;
  const auto idx = mg::cuda::unravel_index<std::int64_t, 2>(last, big, bs, off);
  CHECK(idx[0] == (std::int64_t(1) << 20) - 1);
  CHECK(idx[1] == (std::int64_t(1) << 12) - 1);
  CHECK(off == last);
}

TEST_CASE("cuda launch: geometry covers the work and fills the machine") {
  const auto tiny = mg::cuda::launch_shape(1, 132);
  CHECK(tiny.grid == 1);
  CHECK(tiny.block == 256);
  const auto mid = mg::cuda::launch_shape(256 * 100 + 1, 132);
  CHECK(mid.grid == 101);
  const auto big = mg::cuda::launch_shape(index_t(1) << 26, 132);
  CHECK(big.grid == 132 * 16);
  CHECK(mg::cuda::launch_shape(0, 132).grid == 1);
  CHECK(mg::cuda::launch_shape(1000, 0).grid >= 1);
}

TEST_CASE("cuda launch: the vector kernel's grid-stride loop writes every element exactly once") {
  // A CPU replay of kernels::elementwise_vector's index arithmetic for every thread of the launch.
  for (index_t n : {index_t(0), index_t(1), index_t(3), index_t(4), index_t(5), index_t(255), index_t(1023),
                    index_t(4096 + 7), index_t(256 * 16 * 4 * 3 + 5)}) {
    constexpr int N = 4;
    const auto g = mg::cuda::launch_shape(n / N > 0 ? n / N : 1, 2);
    std::vector<int> writes(static_cast<std::size_t>(n), 0);
    const index_t nvec = n / N, stride = index_t(g.grid) * g.block;
    for (index_t t = 0; t < stride; ++t) {
      for (index_t v = t; v < nvec; v += stride)
        for (int k = 0; k < N; ++k) ++writes[static_cast<std::size_t>(v * N + k)];
      for (index_t i = nvec * N + t; i < n; i += stride) ++writes[static_cast<std::size_t>(i)];
    }
    for (index_t i = 0; i < n; ++i) REQUIRE(writes[static_cast<std::size_t>(i)] == 1);
  }
}
