// CUDA-graph recording and replay of a compiled Program (graph/program.hpp, graph/capture.hpp,
// backend/cuda/runtime.hpp): a replay computes what a run computes, new values in the bound tensors are read,
// other bindings are run (not replayed) and recorded again, memory a recording uses is never handed to
// anyone else while it can be replayed, and the switch turns it all off. Every comparison is against the
// same Program with recording off, on the same data: the kernels are the same, so results are bit-identical.
#include <doctest/doctest.h>

#include <algorithm>
#include <metagrad/metagrad.hpp>
#include <vector>

#include "cuda_test_support.hpp"

namespace mg = metagrad;
using cuda_test::have_device;

namespace {
const mg::Device gpu = mg::Device::cuda(0);

// An MLP's loss and its gradients: GEMMs (cuBLAS), reductions, fused elementwise kernels and sum_to nodes.
struct Mlp {
  mg::Input<struct gx, float, 2> x;
  mg::Input<struct gy, float, 2> y;
  mg::Param<struct gw1, float, 2> w1{"w1", mg::randn<float>({32, 64}).to(gpu)};
  mg::Param<struct gb1, float, 1> b1{"b1", mg::randn<float>({64}).to(gpu)};
  mg::Param<struct gw2, float, 2> w2{"w2", mg::randn<float>({64, 8}).to(gpu)};
  auto loss() const { return mg::mean(mg::square(mg::matmul(mg::tanh(mg::matmul(x, w1) + b1), w2) - y)); }
  auto program() const {
    const auto l = loss();
    auto [d1, db, d2] = mg::grad(l, w1, b1, w2);
    return mg::compile(l, d1, db, d2);
  }
};

template <class Result>
std::vector<std::vector<float>> host_values(const Result& r) {
  std::vector<std::vector<float>> out;
  std::apply([&](const auto&... t) { (out.push_back(t.to_vector()), ...); }, r);
  return out;
}
}  // namespace

TEST_CASE("cuda graph: a recorded step replays the same results as running it") {
  if (!have_device()) return;
  Mlp m;
  auto rec = m.program();
  auto plain = m.program();
  plain.set_graph_capture(false);
  auto xs = mg::randn<float>({128, 32}).to(gpu);
  auto ys = mg::randn<float>({128, 8}).to(gpu);
  m.x.bind(xs);
  m.y.bind(ys);

  const auto want = host_values(plain.run());
  for (int i = 0; i < 5; ++i) CHECK(host_values(rec.run()) == want);
  CHECK(rec.graph_captured());
  CHECK(rec.graph_replays() == 3);  // run, record (+ first replay), then three replays
  CHECK(rec.graph_capture_error().empty());
  CHECK_FALSE(plain.graph_captured());

  SUBCASE("new values written into the bound tensors are read by the replay") {
    xs.assign(xs * 0.5f + 1.0f);
    ys.assign(mg::sin(ys));
    const auto want2 = host_values(plain.run());
    CHECK(want2 != want);
    CHECK(host_values(rec.run()) == want2);
    CHECK(rec.graph_replays() == 4);
  }
  SUBCASE("a parameter updated in place is read by the replay") {
    m.w1.value().assign(m.w1.value() * 0.9f);
    CHECK(host_values(rec.run()) == host_values(plain.run()));
    CHECK(rec.graph_replays() == 4);
  }
  SUBCASE("other tensors are run, not replayed, then recorded again") {
    auto xs2 = mg::randn<float>({128, 32}).to(gpu);
    m.x.bind(xs2);
    const auto want2 = host_values(plain.run());
    CHECK(host_values(rec.run()) == want2);
    CHECK_FALSE(rec.graph_captured());
    CHECK(rec.graph_replays() == 3);
    CHECK(host_values(rec.run()) == want2);  // recorded
    CHECK(host_values(rec.run()) == want2);  // replayed
    CHECK(rec.graph_replays() == 4);
    m.x.bind(xs);
    CHECK(host_values(rec.run()) == want);
  }
  SUBCASE("another batch size is run, not replayed") {
    auto small = mg::randn<float>({16, 32}).to(gpu);
    auto small_y = mg::randn<float>({16, 8}).to(gpu);
    m.x.bind(small);
    m.y.bind(small_y);
    const auto want2 = host_values(plain.run());
    CHECK(host_values(rec.run()) == want2);
    CHECK(rec.graph_replays() == 3);
  }
  SUBCASE("switched off, it drops the recording and runs") {
    rec.set_graph_capture(false);
    CHECK_FALSE(rec.graph_captured());
    CHECK(host_values(rec.run()) == want);
    CHECK(rec.graph_replays() == 3);
  }
}

TEST_CASE("cuda graph: memory a recording uses is not handed out while it can be replayed") {
  if (!have_device()) return;
  Mlp m;
  auto rec = m.program();
  auto plain = m.program();
  plain.set_graph_capture(false);
  auto xs = mg::randn<float>({256, 32}).to(gpu);
  auto ys = mg::randn<float>({256, 8}).to(gpu);
  m.x.bind(xs);
  m.y.bind(ys);
  const auto want = host_values(plain.run());
  for (int i = 0; i < 3; ++i) (void)rec.run();
  REQUIRE(rec.graph_captured());
  // Allocate and fill many blocks of the sizes the step uses between replays: were any of them the
  // recording's temporaries, the replays would write into them (and read these values back).
  std::vector<mg::Tensor<float, 2>> others;
  for (int i = 0; i < 32; ++i) others.push_back(mg::full<float>({256, 64}, 7.0f + static_cast<float>(i), gpu));
  for (int i = 0; i < 4; ++i) CHECK(host_values(rec.run()) == want);
  for (int i = 0; i < 32; ++i) {
    const auto v = others[static_cast<std::size_t>(i)].to_vector();
    CHECK(std::all_of(v.begin(), v.end(), [&](float e) { return e == 7.0f + static_cast<float>(i); }));
  }
  mg::cuda::synchronize(0);
  const auto before = mg::cuda::memory_stats(0);
  for (int i = 0; i < 20; ++i) (void)rec.run();
  mg::cuda::synchronize(0);
  const auto after = mg::cuda::memory_stats(0);
  CHECK(after.device_mallocs == before.device_mallocs);
  CHECK(after.current_bytes == before.current_bytes);
}

TEST_CASE("cuda graph: dropout draws a new mask every step, so a step with dropout is never replayed stale") {
  if (!have_device()) return;
  mg::Input<struct dx, float, 2> x;
  mg::DropoutKey site(11, 0);
  auto prog = mg::compile(mg::sum(mg::dropout(x * 2.0f, 0.5, site)));
  auto plain = mg::compile(mg::sum(mg::dropout(x * 2.0f, 0.5, site)));
  plain.set_graph_capture(false);
  auto xs = mg::ones<float>({64, 64}, gpu);
  x.bind(xs);
  for (int step = 0; step < 6; ++step) {
    const float want = std::get<0>(plain.run()).item();
    CHECK(std::get<0>(prog.run()).item() == want);
    site.advance();
  }
  CHECK(prog.graph_replays() == 0);
}
