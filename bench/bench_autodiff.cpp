// bench_autodiff — the boundary operations and training steps that automatic differentiation produces, each
// beside its baseline in the same run. One section per case family, each registering its own benchmarks;
// BENCHMARK_MAIN() closes the file.
//
// Benchmarks are named <case>/<impl>/threads:<n>; metagrad's thread count (set_num_threads) and OpenBLAS's
// (openblas_set_num_threads, when linked) are both set to n.
//
//   sgemm_<n>   C = A * B, n x n x n float32, row-major; reports FLOP/s (2 n^3 per product)
//               impls: metagrad (cpu::gemm: CBLAS when the build has it), builtin (cpu::builtin_gemm, the
//               kernel used without a BLAS), cblas (cblas_sgemm called directly)
//
//   sin_exp_grad  f(x, y) = sum(sin(x * y) + exp(-x) * y), N = 2^22 float32; bytes processed
//               impls: metagrad_forward (f alone), metagrad_grad (f, df/dx, df/dy as one compiled Program),
//               hand_grad (one hand-written fused, vectorised loop), libtorch_grad (LibTorch autograd, when
//               found), triad (a = b + s c: the bandwidth yardstick)
//   mlp_step    one SGD training step of an MLP 784-256-256-10 (ReLU, softmax cross-entropy), batch 128
//               impls: metagrad (compile(loss, grads...) + fused in-place updates), libtorch
//
// OpenBLAS 0.3.21 (Debian, DYNAMIC_ARCH) chooses its kernels at load time; OPENBLAS_CORETYPE=COOPERLAKE (or
// HASWELL) forces a choice. On the development VM (AMD EPYC with AVX-512) it picks Cooperlake either way.
// Run each implementation in its own process (--benchmark_filter='sgemm_.*/cblas/'): OpenBLAS's worker
// threads and OpenMP's both spin after a call, and in one process they take each other's cores.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <metagrad/backend/cpu/gemm.hpp>
#include <metagrad/metagrad.hpp>
#include <vector>

#if defined(METAGRAD_BENCH_HAVE_TORCH)
#include <torch/torch.h>
#endif

#if defined(METAGRAD_WITH_BLAS)
#include <cblas.h>
#if defined(__GNUC__)
// OpenBLAS's thread control. Weak, so the bench still links against another CBLAS (then it is null).
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
#define METAGRAD_BENCH_OPENBLAS_THREADS 1
#endif
#endif

namespace mg = metagrad;

namespace {

// ==== shared helpers ======================================================================================

void set_threads(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  mg::set_num_threads(n);
#if defined(METAGRAD_BENCH_OPENBLAS_THREADS)
  if (openblas_set_num_threads) openblas_set_num_threads(n);
#endif
  state.counters["threads"] = n;
}

void threads_1_2(benchmark::internal::Benchmark* b) {
  b->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
}

// ==== sgemm ===============================================================================================
// Square float products, C = A * B with A, B uniform in [-1, 1). The operands are made once per size and
// shared by every implementation.

struct GemmData {
  std::int64_t n;
  std::vector<float> a, b, c;
  explicit GemmData(std::int64_t size) : n(size), a(size * size), b(size * size), c(size * size) {
    std::uint32_t s = 12345;
    auto next = [&] {
      s = s * 1664525u + 1013904223u;
      return static_cast<float>(s >> 8) / static_cast<float>(1 << 23) - 1.0f;
    };
    for (auto& x : a) x = next();
    for (auto& x : b) x = next();
  }
};

GemmData& gemm_data(std::int64_t n) {
  static std::map<std::int64_t, GemmData> cache;
  return cache.try_emplace(n, n).first->second;
}

void gemm_flops(benchmark::State& state, std::int64_t n) {
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * static_cast<double>(n * n * n), benchmark::Counter::kIsIterationInvariantRate);
}

template <std::int64_t N>
void sgemm_metagrad(benchmark::State& state) {
  set_threads(state);
  auto& d = gemm_data(N);
  for (auto _ : state) {
    mg::cpu::gemm(false, false, N, N, N, 1.0f, d.a.data(), N, d.b.data(), N, 0.0f, d.c.data(), N);
    benchmark::ClobberMemory();
  }
  gemm_flops(state, N);
}

template <std::int64_t N>
void sgemm_builtin(benchmark::State& state) {
  set_threads(state);
  auto& d = gemm_data(N);
  for (auto _ : state) {
    mg::cpu::builtin_gemm(false, false, N, N, N, 1.0f, d.a.data(), N, d.b.data(), N, 0.0f, d.c.data(), N);
    benchmark::ClobberMemory();
  }
  gemm_flops(state, N);
}

#if defined(METAGRAD_WITH_BLAS)
template <std::int64_t N>
void sgemm_cblas(benchmark::State& state) {
  set_threads(state);
  auto& d = gemm_data(N);
  const int n = static_cast<int>(N);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, d.a.data(), n, d.b.data(), n, 0.0f,
                d.c.data(), n);
    benchmark::ClobberMemory();
  }
  gemm_flops(state, N);
}
#endif

}  // namespace

#if defined(METAGRAD_WITH_BLAS)
#define METAGRAD_BENCH_SGEMM(n)                                                    \
  BENCHMARK(sgemm_metagrad<n>)->Name("sgemm_" #n "/metagrad")->Apply(threads_1_2); \
  BENCHMARK(sgemm_builtin<n>)->Name("sgemm_" #n "/builtin")->Apply(threads_1_2);   \
  BENCHMARK(sgemm_cblas<n>)->Name("sgemm_" #n "/cblas")->Apply(threads_1_2)
#else
#define METAGRAD_BENCH_SGEMM(n)                                                    \
  BENCHMARK(sgemm_metagrad<n>)->Name("sgemm_" #n "/metagrad")->Apply(threads_1_2); \
  BENCHMARK(sgemm_builtin<n>)->Name("sgemm_" #n "/builtin")->Apply(threads_1_2)
#endif
METAGRAD_BENCH_SGEMM(256);
METAGRAD_BENCH_SGEMM(512);
METAGRAD_BENCH_SGEMM(1024);
METAGRAD_BENCH_SGEMM(2048);
#undef METAGRAD_BENCH_SGEMM

// ==== end of sgemm ========================================================================================

namespace {

// ==== sin_exp_grad ========================================================================================
//
// f(x, y) = sum(sin(x * y) + exp(-x) * y), N = 2^22 float32. Bytes processed: forward reads x and y; the
// gradient cases count x, y read and dx, dy written (what a perfect fused gradient loop moves); triad counts
// b, c read and a written.

constexpr mg::index_t sin_exp_n = mg::index_t{1} << 22;

struct SinExpData {
  mg::Tensor<float, 1> x, y, dx, dy, a;
  SinExpData() {
    mg::manual_seed(1);
    x = mg::rand<float>({sin_exp_n});
    y = mg::rand<float>({sin_exp_n});
    dx = mg::Tensor<float, 1>(mg::Shape<1>{sin_exp_n});
    dy = mg::Tensor<float, 1>(mg::Shape<1>{sin_exp_n});
    a = mg::Tensor<float, 1>(mg::Shape<1>{sin_exp_n});
  }
};
SinExpData& sin_exp_data() {
  static SinExpData d;
  return d;
}

void bytes(benchmark::State& state, double per_iteration) {
  state.SetBytesProcessed(static_cast<std::int64_t>(per_iteration) * state.iterations());
}

void BM_sin_exp_metagrad_forward(benchmark::State& state) {
  set_threads(state);
  auto& d = sin_exp_data();
  mg::Input<struct sx, float, 1> x("x");
  mg::Input<struct sy, float, 1> y("y");
  auto f = mg::sum(mg::sin(x * y) + mg::exp(-x) * y);
  auto program = mg::compile(f);
  x.bind(d.x);
  y.bind(d.y);
  for (auto _ : state) benchmark::DoNotOptimize(std::get<0>(program.run()).data());
  bytes(state, 2.0 * sin_exp_n * sizeof(float));
}

void BM_sin_exp_metagrad_grad(benchmark::State& state) {
  set_threads(state);
  auto& d = sin_exp_data();
  mg::Input<struct sx, float, 1> x("x");
  mg::Input<struct sy, float, 1> y("y");
  auto f = mg::sum(mg::sin(x * y) + mg::exp(-x) * y);
  auto [dx, dy] = mg::grad(f, x, y);
  auto program = mg::compile(f, dx, dy);
  x.bind(d.x);
  y.bind(d.y);
  for (auto _ : state) benchmark::DoNotOptimize(std::get<1>(program.run()).data());
  bytes(state, 4.0 * sin_exp_n * sizeof(float));
}

// The gradient written by hand: one fused, vectorised loop (metagrad's own vector math, so that the
// comparison is about the graph machinery, not the math functions).
void BM_sin_exp_hand_grad(benchmark::State& state) {
  set_threads(state);
  auto& d = sin_exp_data();
  const float* x = d.x.data();
  const float* y = d.y.data();
  float* dx = d.dx.data();
  float* dy = d.dy.data();
  for (auto _ : state) {
    double total = 0;
    const int chunks = mg::num_threads();
    std::vector<double> part(static_cast<std::size_t>(chunks), 0.0);
    mg::cpu::parallel_for(
        chunks,
        [&](mg::index_t cb, mg::index_t ce) {
          // Local copies of the pointers: stores through dx/dy must not be able to change them.
          const float* __restrict px = x;
          const float* __restrict py = y;
          float* __restrict pdx = dx;
          float* __restrict pdy = dy;
          for (mg::index_t c = cb; c < ce; ++c) {
            const mg::index_t b = sin_exp_n * c / chunks, e = sin_exp_n * (c + 1) / chunks;
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (mg::index_t i = b; i < e; ++i) {
              const float xi = px[i], yi = py[i], xy = xi * yi;
              const float s = mg::math::sin(xy), co = mg::math::cos(xy), ex = mg::math::exp(-xi);
              acc += s + ex * yi;
              pdx[i] = co * yi - ex * yi;
              pdy[i] = co * xi + ex;
            }
            part[static_cast<std::size_t>(c)] = acc;
          }
        },
        1, 1);
    for (double p : part) total += p;
    benchmark::DoNotOptimize(total);
    benchmark::ClobberMemory();
  }
  bytes(state, 4.0 * sin_exp_n * sizeof(float));
}

void BM_sin_exp_triad(benchmark::State& state) {
  set_threads(state);
  auto& d = sin_exp_data();
  const float* b = d.x.data();
  const float* c = d.y.data();
  float* a = d.a.data();
  for (auto _ : state) {
    mg::cpu::parallel_for(sin_exp_n, [&](mg::index_t lo, mg::index_t hi) {
#pragma omp simd
      for (mg::index_t i = lo; i < hi; ++i) a[i] = b[i] + 3.0f * c[i];
    });
    benchmark::ClobberMemory();
  }
  bytes(state, 3.0 * sin_exp_n * sizeof(float));
}

#if defined(METAGRAD_BENCH_HAVE_TORCH)
void torch_threads(benchmark::State& state) {
  set_threads(state);
  torch::set_num_threads(static_cast<int>(state.range(0)));
}

void BM_sin_exp_libtorch_grad(benchmark::State& state) {
  torch_threads(state);
  auto& d = sin_exp_data();
  auto x = torch::from_blob(d.x.data(), {sin_exp_n}, torch::kFloat32).clone().requires_grad_(true);
  auto y = torch::from_blob(d.y.data(), {sin_exp_n}, torch::kFloat32).clone().requires_grad_(true);
  for (auto _ : state) {
    auto f = (torch::sin(x * y) + torch::exp(-x) * y).sum();
    f.backward();
    benchmark::DoNotOptimize(x.grad().data_ptr());
    x.mutable_grad().reset();
    y.mutable_grad().reset();
  }
  bytes(state, 4.0 * sin_exp_n * sizeof(float));
}
#endif

BENCHMARK(BM_sin_exp_metagrad_forward)->Name("sin_exp_grad/metagrad_forward")->Apply(threads_1_2);
BENCHMARK(BM_sin_exp_metagrad_grad)->Name("sin_exp_grad/metagrad_grad")->Apply(threads_1_2);
BENCHMARK(BM_sin_exp_hand_grad)->Name("sin_exp_grad/hand_grad")->Apply(threads_1_2);
#if defined(METAGRAD_BENCH_HAVE_TORCH)
BENCHMARK(BM_sin_exp_libtorch_grad)->Name("sin_exp_grad/libtorch_grad")->Apply(threads_1_2);
#endif
BENCHMARK(BM_sin_exp_triad)->Name("sin_exp_grad/triad")->Apply(threads_1_2);

// ==== mlp_step ============================================================================================
//
// One training step of an MLP 784-256-256-10 (ReLU) with softmax cross-entropy on a batch of 128: forward,
// all six gradients, SGD update. Same initial weights and data for both impls.

constexpr mg::index_t mlp_batch = 128;

struct MlpData {
  mg::Tensor<float, 2> x, y, w1, w2, w3;
  mg::Tensor<float, 1> b1, b2, b3;
  MlpData() {
    mg::manual_seed(2);
    x = mg::randn<float>({mlp_batch, 784});
    const mg::Tensor<std::int64_t, 1> cls = mg::randint<std::int64_t>(0, 10, {mlp_batch});
    y = mg::zeros<float>({mlp_batch, 10});
    for (mg::index_t i = 0; i < mlp_batch; ++i) y(i, cls(i)) = 1.0f;
    w1 = mg::Tensor<float, 2>(mg::randn<float>({784, 256}) * 0.05f);
    w2 = mg::Tensor<float, 2>(mg::randn<float>({256, 256}) * 0.06f);
    w3 = mg::Tensor<float, 2>(mg::randn<float>({256, 10}) * 0.06f);
    b1 = mg::zeros<float>({256});
    b2 = mg::zeros<float>({256});
    b3 = mg::zeros<float>({10});
  }
};

void BM_mlp_metagrad(benchmark::State& state) {
  set_threads(state);
  static MlpData d;
  mg::Input<struct mx, float, 2> x("x");
  mg::Input<struct my, float, 2> y("y");
  mg::Param<struct mw1, float, 2> w1("fc1.weight", d.w1.clone());
  mg::Param<struct mb1, float, 1> b1("fc1.bias", d.b1.clone());
  mg::Param<struct mw2, float, 2> w2("fc2.weight", d.w2.clone());
  mg::Param<struct mb2, float, 1> b2("fc2.bias", d.b2.clone());
  mg::Param<struct mw3, float, 2> w3("fc3.weight", d.w3.clone());
  mg::Param<struct mb3, float, 1> b3("fc3.bias", d.b3.clone());
  auto h1 = mg::relu(mg::matmul(x, w1) + b1);
  auto h2 = mg::relu(mg::matmul(h1, w2) + b2);
  auto z = mg::matmul(h2, w3) + b3;
  auto loss = mg::mean(mg::logsumexp(z, {1}) - mg::sum(z * y, {1}));
  auto [g1, gb1, g2, gb2, g3, gb3] = mg::grad(loss, w1, b1, w2, b2, w3, b3);
  auto step = mg::compile(loss, g1, gb1, g2, gb2, g3, gb3);
  x.bind(d.x);
  y.bind(d.y);
  const float lr = 0.01f;
  for (auto _ : state) {
    const auto& [l, d1, db1, d2, db2, d3, db3] = step.run();
    w1.value() -= lr * d1;
    b1.value() -= lr * db1;
    w2.value() -= lr * d2;
    b2.value() -= lr * db2;
    w3.value() -= lr * d3;
    b3.value() -= lr * db3;
    benchmark::DoNotOptimize(l.data());
  }
  state.counters["loss"] = mg::Tensor<float, 0>(loss).item();
}

#if defined(METAGRAD_BENCH_HAVE_TORCH)
void BM_mlp_libtorch(benchmark::State& state) {
  torch_threads(state);
  static MlpData d;
  auto t2 = [](const mg::Tensor<float, 2>& t) {
    return torch::from_blob(const_cast<float*>(t.data()), {t.shape()[0], t.shape()[1]}, torch::kFloat32).clone();
  };
  auto t1 = [](const mg::Tensor<float, 1>& t) {
    return torch::from_blob(const_cast<float*>(t.data()), {t.shape()[0]}, torch::kFloat32).clone();
  };
  auto x = t2(d.x);
  auto target = t2(d.y).argmax(1);
  std::vector<torch::Tensor> p = {t2(d.w1), t1(d.b1), t2(d.w2), t1(d.b2), t2(d.w3), t1(d.b3)};
  for (auto& t : p) t.requires_grad_(true);
  const float lr = 0.01f;
  torch::Tensor loss;
  for (auto _ : state) {
    auto h1 = torch::relu(torch::addmm(p[1], x, p[0]));
    auto h2 = torch::relu(torch::addmm(p[3], h1, p[2]));
    auto z = torch::addmm(p[5], h2, p[4]);
    loss = torch::nn::functional::cross_entropy(z, target);
    loss.backward();
    {
      torch::NoGradGuard no_grad;
      for (auto& t : p) {
        t.sub_(t.grad(), lr);
        t.mutable_grad().zero_();
      }
    }
    benchmark::DoNotOptimize(loss.data_ptr());
  }
  state.counters["loss"] = loss.item<float>();
}
#endif

BENCHMARK(BM_mlp_metagrad)->Name("mlp_step/metagrad")->Apply(threads_1_2);
#if defined(METAGRAD_BENCH_HAVE_TORCH)
BENCHMARK(BM_mlp_libtorch)->Name("mlp_step/libtorch")->Apply(threads_1_2);
#endif

// ==== end of mlp_step =====================================================================================

}  // namespace

BENCHMARK_MAIN();
