// bench_elementwise — fused elementwise expressions and a fused reduction beside a hand-written loop,
// Eigen's Tensor module and the STREAM-style triad (the machine's memory bandwidth), N = 2^24 float32.
//
// Benchmarks are named <case>/<impl>/threads:<n>; each reports bytes processed (inputs read + output
// written), so Google Benchmark's bytes_per_second column compares them directly. bench/report.py turns a
// JSON run into the table of ratios in bench/README.md.
//
//   tanh_chain      y = tanh(a * x + b) * c + d * d      5 inputs + 1 output = 24 bytes / element
//   affine          y = (x - m) * s + b                  4 inputs + 1 output = 20 bytes / element
//   sum_of_squares  r = sum(square(x - y))               2 inputs            =  8 bytes / element
//   triad           a = b + s * c                        2 inputs + 1 output = 12 bytes / element
//   softmax_rows    Y = softmax(X, 1), X [16384, 1024]   1 input + 1 output  =  8 bytes / element
//                   metagrad (the softmax node), composed (exp(X - max) / sum(exp(X - max)) from reductions
//                   and a fused pass: how softmax was built before it became a node), hand (one row at a
//                   time: max, exp and sum, scale, with the same math::exp and OpenMP split)
//   batch_norm      a compiled training step's batch norm, X [64, 64, 32, 32]: y = batch_norm(X, gamma, beta)
//                   and dX, dgamma, dbeta of sum(y * W)   3 inputs (X, W, adjoint reuse) + 2 outputs; reported
//                   per element of X as 16 bytes (X read twice, y and dX written). metagrad (the batch-norm
//                   node and its backward node), composed ((X - mean) * rsqrt(var + eps) * gamma + beta from
//                   reductions, differentiated by autodiff: how batch_norm was built before it became a node)
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <metagrad/metagrad.hpp>

#if defined(METAGRAD_BENCH_HAVE_EIGEN)
#define EIGEN_USE_THREADS
#include <unsupported/Eigen/CXX11/Tensor>
#endif

namespace mg = metagrad;

namespace {

constexpr mg::index_t kN = mg::index_t{1} << 24;

struct Data {
  mg::Tensor<float, 1> a, x, b, c, d, y;
  Data() {
    mg::Generator g(42);
    a = mg::rand<float>({kN}, g);
    x = mg::randn<float>({kN}, g);
    b = mg::rand<float>({kN}, g);
    c = mg::rand<float>({kN}, g);
    d = mg::rand<float>({kN}, g);
    y = mg::zeros<float>({kN});
  }
};

Data& data() {
  static Data d;
  return d;
}

void set_threads(benchmark::State& state) { mg::set_num_threads(static_cast<int>(state.range(0))); }

void finish(benchmark::State& state, std::int64_t bytes_per_element) {
  state.SetBytesProcessed(state.iterations() * kN * bytes_per_element);
  state.counters["threads"] = static_cast<double>(state.range(0));
}

// A hand-written loop: the same vectorised math functions as metagrad, the same static split over the
// same number of OpenMP threads, no expression machinery.
template <class F>
void hand_loop(int threads, F&& body) {
#if defined(_OPENMP)
#pragma omp parallel for simd num_threads(threads) schedule(static)
#endif
  for (std::int64_t i = 0; i < kN; ++i) body(i);
  (void)threads;
}

// ---- triad ------------------------------------------------------------------------------------------

void triad_hand(benchmark::State& state) {
  auto& D = data();
  float* __restrict a = D.y.data();
  const float* __restrict b = D.b.data();
  const float* __restrict c = D.c.data();
  const float s = 1.5f;
  for (auto _ : state) {
    hand_loop(static_cast<int>(state.range(0)), [&](std::int64_t i) { a[i] = b[i] + s * c[i]; });
    benchmark::ClobberMemory();
  }
  finish(state, 12);
}

// ---- tanh_chain -------------------------------------------------------------------------------------

void tanh_chain_metagrad(benchmark::State& state) {
  set_threads(state);
  auto& D = data();
  for (auto _ : state) {
    D.y = mg::tanh(D.a * D.x + D.b) * D.c + D.d * D.d;
    benchmark::ClobberMemory();
  }
  finish(state, 24);
}

void tanh_chain_hand(benchmark::State& state) {
  auto& D = data();
  float* __restrict y = D.y.data();
  const float* __restrict a = D.a.data(), * __restrict x = D.x.data(), * __restrict b = D.b.data(), * __restrict c = D.c.data(), * __restrict d = D.d.data();
  for (auto _ : state) {
    hand_loop(static_cast<int>(state.range(0)),
              [&](std::int64_t i) { y[i] = mg::math::tanh(a[i] * x[i] + b[i]) * c[i] + d[i] * d[i]; });
    benchmark::ClobberMemory();
  }
  finish(state, 24);
}

// The loop the issue warns about: scalar tanhf from libm (one thread; for reference only).
void tanh_chain_hand_libm(benchmark::State& state) {
  auto& D = data();
  float* y = D.y.data();
  const float *a = D.a.data(), *x = D.x.data(), *b = D.b.data(), *c = D.c.data(), *d = D.d.data();
  for (auto _ : state) {
    for (std::int64_t i = 0; i < kN; ++i) y[i] = std::tanh(a[i] * x[i] + b[i]) * c[i] + d[i] * d[i];
    benchmark::ClobberMemory();
  }
  finish(state, 24);
}

// ---- affine -----------------------------------------------------------------------------------------

void affine_metagrad(benchmark::State& state) {
  set_threads(state);
  auto& D = data();
  for (auto _ : state) {
    D.y = (D.x - D.a) * D.c + D.b;
    benchmark::ClobberMemory();
  }
  finish(state, 20);
}

void affine_hand(benchmark::State& state) {
  auto& D = data();
  float* __restrict y = D.y.data();
  const float* __restrict x = D.x.data(), * __restrict m = D.a.data(), * __restrict s = D.c.data(), * __restrict b = D.b.data();
  for (auto _ : state) {
    hand_loop(static_cast<int>(state.range(0)), [&](std::int64_t i) { y[i] = (x[i] - m[i]) * s[i] + b[i]; });
    benchmark::ClobberMemory();
  }
  finish(state, 20);
}

// ---- sum_of_squares ---------------------------------------------------------------------------------

void sum_of_squares_metagrad(benchmark::State& state) {
  set_threads(state);
  auto& D = data();
  for (auto _ : state) {
    double r = mg::sum(mg::square(D.x - D.a)).item();
    benchmark::DoNotOptimize(r);
  }
  finish(state, 8);
}

void sum_of_squares_hand(benchmark::State& state) {
  auto& D = data();
  const float* __restrict x = D.x.data(), * __restrict m = D.a.data();
  for (auto _ : state) {
    double r = 0;
#if defined(_OPENMP)
#pragma omp parallel for simd num_threads(static_cast <int>(state.range(0))) schedule(static) reduction(+ : r)
#endif
    for (std::int64_t i = 0; i < kN; ++i) {
      const double t = x[i] - m[i];
      r += t * t;
    }
    benchmark::DoNotOptimize(r);
  }
  finish(state, 8);
}

// ---- softmax_rows -----------------------------------------------------------------------------------

constexpr mg::index_t kRows = 16384, kCols = 1024;  // kRows * kCols == kN

struct Matrix {
  mg::Tensor<float, 2> x, y;
  Matrix() {
    mg::Generator g(7);
    x = mg::eval(mg::randn<float>({kRows, kCols}, g) * 3.0f);
    y = mg::zeros<float>({kRows, kCols});
  }
};
Matrix& matrix() {
  static Matrix m;
  return m;
}

void softmax_rows_metagrad(benchmark::State& state) {
  set_threads(state);
  auto& M = matrix();
  for (auto _ : state) {
    M.y = mg::softmax(M.x, 1);
    benchmark::ClobberMemory();
  }
  finish(state, 8);
}

void softmax_rows_composed(benchmark::State& state) {
  set_threads(state);
  auto& M = matrix();
  for (auto _ : state) {
    auto z = M.x - mg::max(M.x, {1}, mg::keepdims);
    M.y = mg::exp(z) / mg::sum(mg::exp(z), {1}, mg::keepdims);
    benchmark::ClobberMemory();
  }
  finish(state, 8);
}

// ---- batch_norm -------------------------------------------------------------------------------------

constexpr mg::index_t kBn = 64, kBc = 64, kBh = 32;  // kBn * kBc * kBh * kBh == kN / 4

struct BatchNormData {
  mg::Tensor<float, 4> x, w;
  mg::Tensor<float, 1> g, b;
  BatchNormData() {
    mg::Generator gen(11);
    x = mg::eval(mg::randn<float>({kBn, kBc, kBh, kBh}, gen) * 2.0f + 1.0f);
    w = mg::randn<float>({kBn, kBc, kBh, kBh}, gen);
    g = mg::rand<float>({kBc}, gen);
    b = mg::rand<float>({kBc}, gen);
  }
};
BatchNormData& bn_data() {
  static BatchNormData d;
  return d;
}

// Runs the compiled step of sum(f(x, gamma, beta) * w) and its three gradients.
template <class F>
void batch_norm_step(benchmark::State& state, F&& f) {
  set_threads(state);
  auto& D = bn_data();
  mg::Input<struct bench_bn_x, float, 4> x("x");
  mg::Param<struct bench_bn_g, float, 1> gamma("gamma", D.g);
  mg::Param<struct bench_bn_b, float, 1> beta("beta", D.b);
  x.bind(D.x);
  auto y = f(x, gamma, beta);
  auto loss = mg::sum(y * D.w);
  auto [dx, dg, db] = mg::grad(loss, x, gamma, beta);
  auto program = mg::compile(y, dx, dg, db);
  for (auto _ : state) {
    program.run();
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * (kN / 4) * 16);
  state.counters["threads"] = static_cast<double>(state.range(0));
}

void batch_norm_metagrad(benchmark::State& state) {
  batch_norm_step(state, [](const auto& x, const auto& g, const auto& b) { return mg::batch_norm(x, g, b); });
}

void batch_norm_composed(benchmark::State& state) {
  batch_norm_step(state, [](const auto& x, const auto& g, const auto& b) {
    const int axes[3] = {0, 2, 3};
    auto per_channel = [](const auto& v) {
      return mg::reshape(v, {mg::index_t{1}, kBc, mg::index_t{1}, mg::index_t{1}});
    };
    return (x - mg::mean(x, axes, mg::keepdims)) * mg::rsqrt(mg::var(x, axes, mg::keepdims) + 1e-5f) * per_channel(g) +
           per_channel(b);
  });
}

void softmax_rows_hand(benchmark::State& state) {
  auto& M = matrix();
  const float* __restrict x = M.x.data();
  float* __restrict y = M.y.data();
  for (auto _ : state) {
#if defined(_OPENMP)
#pragma omp parallel for num_threads(static_cast <int>(state.range(0))) schedule(static)
#endif
    for (std::int64_t r = 0; r < kRows; ++r) {
      const float* xr = x + r * kCols;
      float* yr = y + r * kCols;
      float m = -INFINITY, s = 0;
#if defined(_OPENMP)
#pragma omp simd reduction(max : m)
#endif
      for (std::int64_t i = 0; i < kCols; ++i) m = xr[i] > m ? xr[i] : m;
#if defined(_OPENMP)
#pragma omp simd reduction(+ : s)
#endif
      for (std::int64_t i = 0; i < kCols; ++i) s += (yr[i] = mg::math::exp(xr[i] - m));
#if defined(_OPENMP)
#pragma omp simd
#endif
      for (std::int64_t i = 0; i < kCols; ++i) yr[i] = yr[i] / s;
    }
    benchmark::ClobberMemory();
  }
  finish(state, 8);
}

#if defined(METAGRAD_BENCH_HAVE_EIGEN)
// ---- Eigen Tensor -----------------------------------------------------------------------------------

using EVec = Eigen::TensorMap<Eigen::Tensor<float, 1, Eigen::RowMajor>>;
using CEVec = Eigen::TensorMap<const Eigen::Tensor<float, 1, Eigen::RowMajor>>;

template <class F>
void with_eigen_device(int threads, F&& f) {
  if (threads <= 1) {
    Eigen::DefaultDevice dev;
    f(dev);
  } else {
    static std::unique_ptr<Eigen::ThreadPool> pool;
    static std::unique_ptr<Eigen::ThreadPoolDevice> dev;
    if (!dev || dev->numThreads() != threads) {
      dev.reset();
      pool = std::make_unique<Eigen::ThreadPool>(threads);
      dev = std::make_unique<Eigen::ThreadPoolDevice>(pool.get(), threads);
    }
    f(*dev);
  }
}

void tanh_chain_eigen(benchmark::State& state) {
  auto& D = data();
  EVec y(D.y.data(), kN);
  CEVec a(D.a.data(), kN), x(D.x.data(), kN), b(D.b.data(), kN), c(D.c.data(), kN), d(D.d.data(), kN);
  for (auto _ : state) {
    with_eigen_device(static_cast<int>(state.range(0)),
                      [&](auto& dev) { y.device(dev) = (a * x + b).tanh() * c + d * d; });
    benchmark::ClobberMemory();
  }
  finish(state, 24);
}

void affine_eigen(benchmark::State& state) {
  auto& D = data();
  EVec y(D.y.data(), kN);
  CEVec x(D.x.data(), kN), m(D.a.data(), kN), s(D.c.data(), kN), b(D.b.data(), kN);
  for (auto _ : state) {
    with_eigen_device(static_cast<int>(state.range(0)), [&](auto& dev) { y.device(dev) = (x - m) * s + b; });
    benchmark::ClobberMemory();
  }
  finish(state, 20);
}

void sum_of_squares_eigen(benchmark::State& state) {
  auto& D = data();
  CEVec x(D.x.data(), kN), m(D.a.data(), kN);
  Eigen::Tensor<float, 0, Eigen::RowMajor> r;
  for (auto _ : state) {
    with_eigen_device(static_cast<int>(state.range(0)), [&](auto& dev) { r.device(dev) = (x - m).square().sum(); });
    benchmark::DoNotOptimize(r.data());
  }
  finish(state, 8);
}
#endif

void threads_1_2(benchmark::internal::Benchmark* b) {
  b->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(triad_hand)->Name("triad/hand")->Apply(threads_1_2);
BENCHMARK(tanh_chain_metagrad)->Name("tanh_chain/metagrad")->Apply(threads_1_2);
BENCHMARK(tanh_chain_hand)->Name("tanh_chain/hand")->Apply(threads_1_2);
BENCHMARK(tanh_chain_hand_libm)
    ->Name("tanh_chain/hand_libm")
    ->ArgName("threads")
    ->Arg(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(affine_metagrad)->Name("affine/metagrad")->Apply(threads_1_2);
BENCHMARK(affine_hand)->Name("affine/hand")->Apply(threads_1_2);
BENCHMARK(sum_of_squares_metagrad)->Name("sum_of_squares/metagrad")->Apply(threads_1_2);
BENCHMARK(sum_of_squares_hand)->Name("sum_of_squares/hand")->Apply(threads_1_2);
BENCHMARK(softmax_rows_metagrad)->Name("softmax_rows/metagrad")->Apply(threads_1_2);
BENCHMARK(softmax_rows_composed)->Name("softmax_rows/composed")->Apply(threads_1_2);
BENCHMARK(softmax_rows_hand)->Name("softmax_rows/hand")->Apply(threads_1_2);
BENCHMARK(batch_norm_metagrad)->Name("batch_norm/metagrad")->Apply(threads_1_2);
BENCHMARK(batch_norm_composed)->Name("batch_norm/composed")->Apply(threads_1_2);
#if defined(METAGRAD_BENCH_HAVE_EIGEN)
BENCHMARK(tanh_chain_eigen)->Name("tanh_chain/eigen")->Apply(threads_1_2);
BENCHMARK(affine_eigen)->Name("affine/eigen")->Apply(threads_1_2);
BENCHMARK(sum_of_squares_eigen)->Name("sum_of_squares/eigen")->Apply(threads_1_2);
#endif

BENCHMARK_MAIN();
