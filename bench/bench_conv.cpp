// bench_conv — the convolutions and pools of LeNet-5 on MNIST at batch 64, metagrad beside LibTorch in the
// same run. Benchmarks are named <case>/<impl>/threads:<n>; metagrad's thread count (set_num_threads, which
// oneDNN's OpenMP follows) and LibTorch's (torch::set_num_threads) are both set to n.
//
//   conv1_fwd, conv1_fwd_bwd   x [64, 1, 28, 28], w [6, 1, 5, 5], padding 2. The backward pass computes the
//                              weight gradient only, as in training (the input is the data).
//   conv2_fwd, conv2_fwd_bwd   x [64, 6, 14, 14], w [16, 6, 5, 5]. Backward: input and weight gradients.
//   pool1_fwd_bwd, pool2_fwd_bwd  max_pool2d 2x2, stride 2, of [64, 6, 28, 28] and [64, 16, 10, 10], with the
//                              input gradient.
//
// impls: metagrad (the automatic choice), metagrad_im2col and metagrad_onednn (cpu::set_conv_algorithm pins
// one), libtorch (torch::conv2d / max_pool2d and autograd's backward, when found). metagrad runs compiled
// Programs whose outputs are the forward result and the gradient nodes fed a fixed output adjoint, which is
// what LibTorch's y.backward(g) computes; LibTorch's gradients are reset to none after each step, as
// zero_grad(set_to_none) does, so it does not time an accumulation.
#include <benchmark/benchmark.h>

#include <metagrad/metagrad.hpp>
#include <type_traits>

#if defined(METAGRAD_BENCH_HAVE_TORCH)
#include <torch/torch.h>
#endif

namespace mg = metagrad;

namespace {

constexpr mg::index_t kBatch = 64;

struct ConvCase {
  mg::Shape<4> x, w;
  mg::index_t padding;
  bool input_grad;
};
const ConvCase kConv1{{kBatch, 1, 28, 28}, {6, 1, 5, 5}, 2, false};
const ConvCase kConv2{{kBatch, 6, 14, 14}, {16, 6, 5, 5}, 0, true};
const mg::Shape<4> kPool1{kBatch, 6, 28, 28};
const mg::Shape<4> kPool2{kBatch, 16, 10, 10};

mg::Tensor<float, 4> random(const mg::Shape<4>& s) { return mg::randn<float>({s[0], s[1], s[2], s[3]}); }

void threads_1_2(benchmark::internal::Benchmark* b) {
  b->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);
}

// Pins the convolution algorithm for one benchmark and restores the automatic choice after it.
struct Algorithm {
  explicit Algorithm(mg::cpu::ConvAlgorithm a) { mg::cpu::set_conv_algorithm(a); }
  ~Algorithm() { mg::cpu::set_conv_algorithm(mg::cpu::ConvAlgorithm::automatic); }
};

template <class Program>
void run_program(benchmark::State& state, Program& program) {
  program.run();  // the first run sizes the slots and creates the oneDNN primitives
  for (auto _ : state) {
    const auto& r = program.run();
    benchmark::DoNotOptimize(&r);
  }
}

// ==== convolutions ========================================================================================

void conv_metagrad(benchmark::State& state, const ConvCase& c, bool backward, mg::cpu::ConvAlgorithm a) {
  mg::set_num_threads(static_cast<int>(state.range(0)));
  if (a == mg::cpu::ConvAlgorithm::onednn && !mg::cpu::have_onednn()) {
    state.SkipWithError("this build has no oneDNN");
    return;
  }
  const Algorithm pin(a);
  const mg::Tensor<float, 4> x = random(c.x), w = random(c.w);
  const auto y = mg::conv2d(x, w, {.padding = c.padding});
  if (!backward) {
    auto program = mg::compile(y);
    run_program(state, program);
    return;
  }
  const mg::Tensor<float, 4> g = random(y.shape());
  const mg::TensorRef<float, 4> gr(g);
  auto dw = y.backward(std::integral_constant<int, 1>{}, gr);
  if (c.input_grad) {
    auto dx = y.backward(std::integral_constant<int, 0>{}, gr);
    auto program = mg::compile(y, dx, dw);
    run_program(state, program);
  } else {
    auto program = mg::compile(y, dw);
    run_program(state, program);
  }
}

void pool_metagrad(benchmark::State& state, const mg::Shape<4>& s) {
  mg::set_num_threads(static_cast<int>(state.range(0)));
  const mg::Tensor<float, 4> x = random(s);
  const auto y = mg::max_pool2d(x, 2);
  const mg::Tensor<float, 4> g = random(y.shape());
  auto dx = y.backward(std::integral_constant<int, 0>{}, mg::TensorRef<float, 4>(g));
  auto program = mg::compile(y, dx);
  run_program(state, program);
}

#if defined(METAGRAD_BENCH_HAVE_TORCH)
torch::Tensor to_torch(const mg::Tensor<float, 4>& t) {
  const auto s = t.shape();
  return torch::from_blob(const_cast<float*>(t.data()), {s[0], s[1], s[2], s[3]}, torch::kFloat32).clone();
}

void conv_torch(benchmark::State& state, const ConvCase& c, bool backward) {
  torch::set_num_threads(static_cast<int>(state.range(0)));
  mg::set_num_threads(static_cast<int>(state.range(0)));
  auto x = to_torch(random(c.x));
  auto w = to_torch(random(c.w));
  if (!backward) {
    torch::NoGradGuard no_grad;
    for (auto _ : state) {
      auto y = torch::conv2d(x, w, {}, 1, c.padding);
      benchmark::DoNotOptimize(y.data_ptr());
    }
    return;
  }
  w.requires_grad_(true);
  if (c.input_grad) x.requires_grad_(true);
  auto g = torch::conv2d(x.detach(), w.detach(), {}, 1, c.padding).normal_();
  for (auto _ : state) {
    auto y = torch::conv2d(x, w, {}, 1, c.padding);
    y.backward(g);
    benchmark::DoNotOptimize(w.grad().data_ptr());
    w.mutable_grad().reset();
    if (c.input_grad) x.mutable_grad().reset();
  }
}

void pool_torch(benchmark::State& state, const mg::Shape<4>& s) {
  torch::set_num_threads(static_cast<int>(state.range(0)));
  mg::set_num_threads(static_cast<int>(state.range(0)));
  auto x = to_torch(random(s)).requires_grad_(true);
  auto g = torch::max_pool2d(x.detach(), 2).normal_();
  for (auto _ : state) {
    auto y = torch::max_pool2d(x, 2);
    y.backward(g);
    benchmark::DoNotOptimize(x.grad().data_ptr());
    x.mutable_grad().reset();
  }
}
#endif

using mg::cpu::ConvAlgorithm;

#define METAGRAD_BENCH_CONV_(name, c, bwd)                                            \
  BENCHMARK_CAPTURE(conv_metagrad, name##_metagrad, c, bwd, ConvAlgorithm::automatic) \
      ->Name(#name "/metagrad")                                                       \
      ->Apply(threads_1_2);                                                           \
  BENCHMARK_CAPTURE(conv_metagrad, name##_im2col, c, bwd, ConvAlgorithm::im2col)      \
      ->Name(#name "/metagrad_im2col")                                                \
      ->Apply(threads_1_2);                                                           \
  BENCHMARK_CAPTURE(conv_metagrad, name##_onednn, c, bwd, ConvAlgorithm::onednn)      \
      ->Name(#name "/metagrad_onednn")                                                \
      ->Apply(threads_1_2)

METAGRAD_BENCH_CONV_(conv1_fwd, kConv1, false);
METAGRAD_BENCH_CONV_(conv1_fwd_bwd, kConv1, true);
METAGRAD_BENCH_CONV_(conv2_fwd, kConv2, false);
METAGRAD_BENCH_CONV_(conv2_fwd_bwd, kConv2, true);
BENCHMARK_CAPTURE(pool_metagrad, pool1, kPool1)->Name("pool1_fwd_bwd/metagrad")->Apply(threads_1_2);
BENCHMARK_CAPTURE(pool_metagrad, pool2, kPool2)->Name("pool2_fwd_bwd/metagrad")->Apply(threads_1_2);

#if defined(METAGRAD_BENCH_HAVE_TORCH)
BENCHMARK_CAPTURE(conv_torch, conv1_fwd, kConv1, false)->Name("conv1_fwd/libtorch")->Apply(threads_1_2);
BENCHMARK_CAPTURE(conv_torch, conv1_fwd_bwd, kConv1, true)->Name("conv1_fwd_bwd/libtorch")->Apply(threads_1_2);
BENCHMARK_CAPTURE(conv_torch, conv2_fwd, kConv2, false)->Name("conv2_fwd/libtorch")->Apply(threads_1_2);
BENCHMARK_CAPTURE(conv_torch, conv2_fwd_bwd, kConv2, true)->Name("conv2_fwd_bwd/libtorch")->Apply(threads_1_2);
BENCHMARK_CAPTURE(pool_torch, pool1, kPool1)->Name("pool1_fwd_bwd/libtorch")->Apply(threads_1_2);
BENCHMARK_CAPTURE(pool_torch, pool2, kPool2)->Name("pool2_fwd_bwd/libtorch")->Apply(threads_1_2);
#endif

}  // namespace

BENCHMARK_MAIN();
