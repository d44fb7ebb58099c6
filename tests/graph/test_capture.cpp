// The device-independent half of CUDA-graph replay: the capture key a Program compares between runs (it must
// change exactly when a recording would compute something else) and the record/replay policy. The recording
// itself is tested on a GPU in tests/cuda/test_graph_cuda.cu.
#include <doctest/doctest.h>

#include <metagrad/metagrad.hpp>

namespace mg = metagrad;
using mg::graph::detail::capture_key;
using mg::graph::detail::CapturePolicy;

namespace {
struct cx;
struct cw;
template <class... E>
std::vector<std::uint64_t> key_of(const E&... e) {
  return capture_key(std::forward_as_tuple(e...));
}
}  // namespace

TEST_CASE("capture key: follows the addresses, shapes and strides of what the outputs read") {
  mg::Input<cx, float, 2> x;
  mg::Param<cw, float, 2> w("w", mg::ones<float>({3, 4}));
  auto y = mg::sum(mg::tanh(mg::matmul(x, w)) * 2.0f);

  mg::Tensor<float, 2> a = mg::ones<float>({5, 3});
  mg::Tensor<float, 2> b = mg::ones<float>({5, 3});
  x.bind(a);
  const auto k1 = key_of(y);
  CHECK(k1 == key_of(y));

  SUBCASE("new values in the same tensor keep the key (a replay reads them)") {
    a.assign(a * 3.0f);
    CHECK(key_of(y) == k1);
  }
  SUBCASE("another tensor of the same shape changes it") {
    x.bind(b);
    CHECK(key_of(y) != k1);
    x.bind(a);
    CHECK(key_of(y) == k1);
  }
  SUBCASE("another shape changes it") {
    mg::Tensor<float, 2> c = mg::ones<float>({6, 3});
    x.bind(c);
    CHECK(key_of(y) != k1);
  }
  SUBCASE("other strides over the same memory and shape change it") {
    mg::Tensor<float, 2> sq = mg::ones<float>({5, 5});
    const auto rows = mg::Tensor<float, 2>::from_storage(sq.storage(), 0, mg::Shape<2>{{5, 3}}, mg::Strides<2>{{5, 1}});
    const auto cols = mg::Tensor<float, 2>::from_storage(sq.storage(), 0, mg::Shape<2>{{5, 3}}, mg::Strides<2>{{1, 5}});
    x.bind(rows);
    const auto kr = key_of(y);
    x.bind(cols);
    CHECK(kr != key_of(y));
  }
  SUBCASE("a parameter given a new tensor changes it") {
    w.set(mg::zeros<float>({3, 4}));
    CHECK(key_of(y) != k1);
  }
  SUBCASE("an unbound input is an unbound_error, not a key") {
    mg::Input<struct cu, float, 1> u;
    CHECK_THROWS_AS(key_of(mg::sum(u)), mg::unbound_error);
  }
}

TEST_CASE("capture key: a dropout site's step is part of it") {
  mg::Tensor<double, 1> t = mg::ones<double>({8});
  mg::DropoutKey site(7, 1);
  auto d = mg::sum(mg::dropout(t, 0.5, site));
  const auto k0 = key_of(d);
  site.advance();
  const auto k1 = key_of(d);
  CHECK(k0 != k1);
  site.set_step(0);
  CHECK(key_of(d) == k0);
}

TEST_CASE("capture policy: record on the second run of a key, replay while it holds, never on the CPU") {
  using A = CapturePolicy::Action;
  CHECK(CapturePolicy::decide(true, true, false, false) == A::run);    // first run of these bindings
  CHECK(CapturePolicy::decide(true, true, true, false) == A::record);  // same bindings again
  CHECK(CapturePolicy::decide(true, true, true, true) == A::replay);   // recorded and unchanged
  CHECK(CapturePolicy::decide(false, true, true, true) == A::run);     // switched off
  CHECK(CapturePolicy::decide(true, false, true, false) == A::run);    // CPU programs never record
}

TEST_CASE("capture: a CPU Program never records and says so") {
  mg::Input<struct cz, double, 1> z;
  auto p = mg::compile(mg::sum(mg::exp(z)));
  mg::Tensor<double, 1> v = mg::ones<double>({4});
  for (int i = 0; i < 3; ++i) CHECK(std::get<0>(p.run(z.bind(v))).item() == doctest::Approx(4 * std::exp(1.0)));
  CHECK_FALSE(p.graph_captured());
  CHECK(p.graph_replays() == 0);
  CHECK(p.graph_capture_error().empty());
}
