// bench_cuda — metagrad on a CUDA GPU beside the yardstick of each kind of work, in the same process:
// fused elementwise expressions beside a device-to-device cudaMemcpy of the same bytes, a sum reduction
// beside cub::DeviceReduce::Sum, matrix products beside cublasSgemm called directly, and an MLP training
// step (its PyTorch twin is bench/mlp_step_pytorch.py, run by bench/run_gpu.sh on the same GPU).
//
// Names are <case>/<impl>. All work is queued on metagrad's stream of device 0 and timed with CUDA events
// around it (manual time: the GPU's time, not the host's enqueue time); each timed iteration ends with an
// event synchronise. Counters: GB/s (bytes read + written per second) or GFLOP/s, and `ratio` = this
// implementation's rate / its baseline's, when the baseline ran earlier in the same process (baselines are
// registered first; bench/report_gpu.py recomputes every ratio from the JSON anyway).
//
//   tanh_chain       y = tanh(a * x + b) * c + d * d    N = 2^26 float32, 24 bytes / element   vs cudaMemcpy
//   affine           y = (x - m) * s + b                 20 bytes / element                     vs cudaMemcpy
//   triad            y = b + 1.5 c                       12 bytes / element                     vs cudaMemcpy
//   sum              r = sum(x)                          4 bytes / element                      vs cub
//   sum_of_squares   r = sum(square(x - m))              8 bytes / element                      vs cudaMemcpy
//   sgemm_<n>        C = A B, n = 1024 ... 8192, FP32 (and TF32 at 4096, 8192), 2 n^3 FLOP      vs cublas
//   mlp_step         one SGD step of an MLP 784-256-256-10 (ReLU, softmax cross-entropy), batch 128
//   mlp_step_large   the same step for 784-2048-2048-10, batch 1024 (compute-bound)
//
// The cudaMemcpy baseline of a case copies half the case's bytes (each copied byte is read and written),
// so both sides move the same traffic; its GB/s counts read + write.
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cub/device/device_reduce.cuh>
#include <map>
#include <metagrad/metagrad.hpp>
#include <string>
#include <vector>

namespace mg = metagrad;

namespace {

constexpr mg::index_t kN = mg::index_t{1} << 26;
const mg::Device kGpu = mg::Device::cuda(0);

void check_blas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw mg::cuda_error(std::string(what) + ": " + cublasGetStatusName(s));
}

cudaStream_t stream() { return mg::cuda::stream(0); }

// Times the work queued by f() on metagrad's stream with a pair of events.
class GpuTimer {
 public:
  GpuTimer() {
    mg::cuda::check(cudaEventCreate(&start_), "cudaEventCreate");
    mg::cuda::check(cudaEventCreate(&stop_), "cudaEventCreate");
  }
  ~GpuTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  template <class F>
  double seconds(F&& f) {
    mg::cuda::check(cudaEventRecord(start_, stream()), "cudaEventRecord");
    f();
    mg::cuda::check(cudaEventRecord(stop_, stream()), "cudaEventRecord");
    mg::cuda::check(cudaEventSynchronize(stop_), "cudaEventSynchronize");
    float ms = 0;
    mg::cuda::check(cudaEventElapsedTime(&ms, start_, stop_), "cudaEventElapsedTime");
    return ms * 1e-3;
  }

 private:
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

// Rates of the baselines measured so far, by case, for the `ratio` counter.
std::map<std::string, double>& baselines() {
  static std::map<std::string, double> m;
  return m;
}

// Runs f once untimed (first-use allocations, handle creation, kernel loading), then once per iteration
// timed on the GPU. `amount` is bytes (or FLOP) per call; `unit` names the counter. A baseline records its
// rate under `key`; a metagrad implementation reports its ratio to it.
template <class F>
void run_timed(benchmark::State& state, const std::string& key, bool is_baseline, double amount, const char* unit,
               double scale, F&& f) {
  GpuTimer timer;
  f();
  mg::cuda::synchronize(0);
  double total = 0;
  for (auto _ : state) {
    const double s = timer.seconds(f);
    state.SetIterationTime(s);
    total += s;
  }
  const double rate = total > 0 ? amount * static_cast<double>(state.iterations()) / total / scale : 0;
  state.counters[unit] = rate;
  if (is_baseline) {
    baselines()[key] = rate;
  } else if (auto it = baselines().find(key); it != baselines().end() && it->second > 0) {
    state.counters["ratio"] = rate / it->second;
  }
}

// Device tensors filled with a cheap deterministic pattern on the host (2^26 normal draws would take seconds).
template <int R>
mg::Tensor<float, R> device_tensor(const mg::Shape<R>& shape, std::uint32_t seed, float lo, float hi) {
  std::vector<float> v(static_cast<std::size_t>(shape.numel()));
  std::uint32_t s = seed * 2654435761u + 1u;
  for (auto& x : v) {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    x = lo + (hi - lo) * static_cast<float>(s >> 8) * 0x1p-24f;
  }
  return mg::from_vector(v, shape).to(kGpu);
}

// ==== elementwise and reductions, N = 2^26 ===============================================================

struct Data {
  mg::Tensor<float, 1> a, x, b, c, d, y;
  mg::Tensor<float, 0> r;
  Data()
      : a(device_tensor(mg::Shape<1>{kN}, 1, 0, 1)),
        x(device_tensor(mg::Shape<1>{kN}, 2, -2, 2)),
        b(device_tensor(mg::Shape<1>{kN}, 3, 0, 1)),
        c(device_tensor(mg::Shape<1>{kN}, 4, 0, 1)),
        d(device_tensor(mg::Shape<1>{kN}, 5, 0, 1)),
        y(mg::zeros<float>({kN}, kGpu)),
        r(mg::zeros<float>(mg::Shape<0>{}, kGpu)) {}
};

Data& data() {
  static Data d;
  return d;
}

// The bandwidth yardstick: cudaMemcpyAsync device to device of bytes / 2 (read + written = bytes).
void BM_memcpy(benchmark::State& state, std::string key, std::int64_t bytes_per_element) {
  const std::size_t bytes = static_cast<std::size_t>(kN * bytes_per_element / 2);
  mg::cuda::DeviceBuffer src(bytes, 0), dst(bytes, 0);
  mg::cuda::check(cudaMemsetAsync(src.get(), 0, bytes, stream()), "cudaMemsetAsync");
  run_timed(state, key, true, 2.0 * static_cast<double>(bytes), "GB/s", 1e9, [&] {
    mg::cuda::check(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, stream()),
                    "cudaMemcpyAsync");
  });
  state.SetBytesProcessed(state.iterations() * 2 * static_cast<std::int64_t>(bytes));
}

template <class F>
void elementwise(benchmark::State& state, const std::string& key, std::int64_t bytes_per_element, F&& f) {
  run_timed(state, key, false, static_cast<double>(kN * bytes_per_element), "GB/s", 1e9, f);
  state.SetBytesProcessed(state.iterations() * kN * bytes_per_element);
}

void BM_tanh_chain(benchmark::State& state) {
  auto& D = data();
  elementwise(state, "tanh_chain", 24, [&] { D.y = mg::tanh(D.a * D.x + D.b) * D.c + D.d * D.d; });
}
void BM_affine(benchmark::State& state) {
  auto& D = data();
  elementwise(state, "affine", 20, [&] { D.y = (D.x - D.a) * D.c + D.b; });
}
void BM_triad(benchmark::State& state) {
  auto& D = data();
  elementwise(state, "triad", 12, [&] { D.y = D.b + 1.5f * D.c; });
}
void BM_sum_of_squares(benchmark::State& state) {
  auto& D = data();
  elementwise(state, "sum_of_squares", 8, [&] { D.r = mg::sum(mg::square(D.x - D.a)); });
}
void BM_sum(benchmark::State& state) {
  auto& D = data();
  elementwise(state, "sum", 4, [&] { D.r = mg::sum(D.x); });
}

// cub::DeviceReduce::Sum called directly, temporary storage sized and allocated once.
void BM_sum_cub(benchmark::State& state) {
  auto& D = data();
  std::size_t temp_bytes = 0;
  mg::cuda::check(cub::DeviceReduce::Sum(nullptr, temp_bytes, D.x.data(), D.r.data(), static_cast<int>(kN), stream()),
                  "cub::DeviceReduce::Sum");
  mg::cuda::DeviceBuffer temp(temp_bytes, 0);
  run_timed(state, "sum", true, static_cast<double>(kN * 4), "GB/s", 1e9, [&] {
    mg::cuda::check(
        cub::DeviceReduce::Sum(temp.get(), temp_bytes, D.x.data(), D.r.data(), static_cast<int>(kN), stream()),
        "cub::DeviceReduce::Sum");
  });
  state.SetBytesProcessed(state.iterations() * kN * 4);
}

// ==== sgemm_<n> ===========================================================================================

struct Gemm {
  mg::Tensor<float, 2> a, b, c;
  explicit Gemm(mg::index_t n) {
    a = device_tensor(mg::Shape<2>{n, n}, 11, -1, 1);
    b = device_tensor(mg::Shape<2>{n, n}, 12, -1, 1);
    c = mg::zeros<float>({n, n}, kGpu);
  }
};

Gemm& gemm_data(mg::index_t n) {
  static std::map<mg::index_t, Gemm*> m;  // kept for the process: 8192^2 operands are reused across impls
  auto& p = m[n];
  if (!p) p = new Gemm(n);
  return *p;
}

cublasHandle_t baseline_handle() {
  static cublasHandle_t h = [] {
    cublasHandle_t x = nullptr;
    check_blas(cublasCreate(&x), "cublasCreate");
    return x;
  }();
  return h;
}

std::string gemm_key(mg::index_t n, bool tf32) { return "sgemm_" + std::to_string(n) + (tf32 ? "_tf32" : ""); }

// cublasSgemm directly: row-major C = A B is column-major C^T = B^T A^T, so B goes first.
void BM_sgemm_cublas(benchmark::State& state, mg::index_t n, bool tf32) {
  auto& G = gemm_data(n);
  const cublasHandle_t h = baseline_handle();
  check_blas(cublasSetStream(h, stream()), "cublasSetStream");
  check_blas(cublasSetMathMode(h, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  const int ni = static_cast<int>(n);
  const float one = 1, zero = 0;
  run_timed(state, gemm_key(n, tf32), true, 2.0 * double(n) * double(n) * double(n), "GFLOP/s", 1e9, [&] {
    check_blas(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, ni, ni, ni, &one, G.b.data(), ni, G.a.data(), ni, &zero,
                           G.c.data(), ni),
               "cublasSgemm");
  });
}

void BM_sgemm_metagrad(benchmark::State& state, mg::index_t n, bool tf32) {
  auto& G = gemm_data(n);
  mg::cuda::set_allow_tf32(tf32);
  run_timed(state, gemm_key(n, tf32), false, 2.0 * double(n) * double(n) * double(n), "GFLOP/s", 1e9,
            [&] { G.c = mg::matmul(G.a, G.b); });
  mg::cuda::set_allow_tf32(false);
}

// ==== mlp_step ============================================================================================
//
// One SGD training step: forward, loss, the six gradients (one compiled Program) and six fused in-place
// updates, on the GPU. `inner` steps are queued between the events and the time per step is reported, so
// the host's launch rate and the GPU overlap as they do in training.

struct mx;
struct my;
struct mw1;
struct mb1;
struct mw2;
struct mb2;
struct mw3;
struct mb3;

void BM_mlp_metagrad(benchmark::State& state, mg::index_t batch, mg::index_t hidden, int inner) {
  mg::manual_seed(2);
  const mg::Tensor<float, 2> hx = mg::randn<float>({batch, 784});
  mg::Tensor<float, 2> hy = mg::zeros<float>({batch, 10});
  for (mg::index_t i = 0; i < batch; ++i) hy(i, (i * 7) % 10) = 1.0f;
  mg::Input<mx, float, 2> x("x");
  mg::Input<my, float, 2> y("y");
  mg::Param<mw1, float, 2> w1("fc1.weight", mg::Tensor<float, 2>(mg::randn<float>({784, hidden}) * 0.05f).to(kGpu));
  mg::Param<mb1, float, 1> b1("fc1.bias", mg::zeros<float>({hidden}, kGpu));
  mg::Param<mw2, float, 2> w2("fc2.weight", mg::Tensor<float, 2>(mg::randn<float>({hidden, hidden}) * 0.06f).to(kGpu));
  mg::Param<mb2, float, 1> b2("fc2.bias", mg::zeros<float>({hidden}, kGpu));
  mg::Param<mw3, float, 2> w3("fc3.weight", mg::Tensor<float, 2>(mg::randn<float>({hidden, 10}) * 0.06f).to(kGpu));
  mg::Param<mb3, float, 1> b3("fc3.bias", mg::zeros<float>({10}, kGpu));
  auto h1 = mg::relu(mg::matmul(x, w1) + b1);
  auto h2 = mg::relu(mg::matmul(h1, w2) + b2);
  auto z = mg::matmul(h2, w3) + b3;
  auto loss = mg::mean(mg::logsumexp(z, 1) - mg::sum(z * y, 1));
  auto [g1, gb1, g2, gb2, g3, gb3] = mg::grad(loss, w1, b1, w2, b2, w3, b3);
  auto step = mg::compile(loss, g1, gb1, g2, gb2, g3, gb3);
  const mg::Tensor<float, 2> dx = hx.to(kGpu), dy = hy.to(kGpu);
  x.bind(dx);
  y.bind(dy);
  const float lr = 0.01f;
  auto one_step = [&] {
    const auto& [l, d1, db1, d2, db2, d3, db3] = step.run();
    w1.value() -= lr * d1;
    b1.value() -= lr * db1;
    w2.value() -= lr * d2;
    b2.value() -= lr * db2;
    w3.value() -= lr * d3;
    b3.value() -= lr * db3;
    benchmark::DoNotOptimize(l.data());
  };
  for (int i = 0; i < 5; ++i) one_step();  // plan sizing, first-use allocations, handle creation
  mg::cuda::synchronize(0);
  GpuTimer timer;
  double total = 0;
  for (auto _ : state) {
    const double s = timer.seconds([&] {
      for (int i = 0; i < inner; ++i) one_step();
    });
    state.SetIterationTime(s / inner);
    total += s / inner;
  }
  const double flop =
      6.0 * double(batch) * (784.0 * double(hidden) + double(hidden) * double(hidden) + double(hidden) * 10.0);
  state.counters["ms/step"] = 1e3 * total / static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = flop * static_cast<double>(state.iterations()) / total / 1e9;
  state.counters["loss"] = mg::Tensor<float, 0>(loss).item();
  state.counters["batch"] = static_cast<double>(batch);
}

// Baselines first: a metagrad implementation reads its baseline's rate for the `ratio` counter.
void register_all() {
  auto reg = [](const std::string& name, auto fn) {
    return benchmark::RegisterBenchmark(name.c_str(), fn)->UseManualTime()->Unit(benchmark::kMillisecond);
  };
  struct Elementwise {
    const char* name;
    std::int64_t bytes;
    void (*fn)(benchmark::State&);
  };
  for (const Elementwise& e :
       {Elementwise{"tanh_chain", 24, BM_tanh_chain}, Elementwise{"affine", 20, BM_affine},
        Elementwise{"triad", 12, BM_triad}, Elementwise{"sum_of_squares", 8, BM_sum_of_squares}}) {
    const std::string key = e.name;
    const std::int64_t bytes = e.bytes;
    reg(key + "/cudaMemcpy", [key, bytes](benchmark::State& st) { BM_memcpy(st, key, bytes); });
    reg(key + "/metagrad", e.fn);
  }
  reg("sum/cub", BM_sum_cub);
  reg("sum/metagrad", BM_sum);
  for (mg::index_t n : {1024, 2048, 4096, 8192}) {
    reg(gemm_key(n, false) + "/cublas", [n](benchmark::State& st) { BM_sgemm_cublas(st, n, false); });
    reg(gemm_key(n, false) + "/metagrad", [n](benchmark::State& st) { BM_sgemm_metagrad(st, n, false); });
  }
  for (mg::index_t n : {4096, 8192}) {
    reg(gemm_key(n, true) + "/cublas", [n](benchmark::State& st) { BM_sgemm_cublas(st, n, true); });
    reg(gemm_key(n, true) + "/metagrad", [n](benchmark::State& st) { BM_sgemm_metagrad(st, n, true); });
  }
  reg("mlp_step/metagrad", [](benchmark::State& st) { BM_mlp_metagrad(st, 128, 256, 20); });
  reg("mlp_step_large/metagrad", [](benchmark::State& st) { BM_mlp_metagrad(st, 1024, 2048, 5); });
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (mg::cuda::device_count() == 0) {
    std::printf("skipped: no CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop{};
  mg::cuda::check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  int runtime = 0, driver = 0, cublas = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  cublasGetVersion(baseline_handle(), &cublas);
  benchmark::AddCustomContext("gpu", prop.name);
  benchmark::AddCustomContext("gpu_sm", std::to_string(prop.major) + std::to_string(prop.minor));
  benchmark::AddCustomContext("gpu_memory_gib", std::to_string(prop.totalGlobalMem >> 30));
  benchmark::AddCustomContext("cuda_runtime", std::to_string(runtime));
  benchmark::AddCustomContext("cuda_driver", std::to_string(driver));
  benchmark::AddCustomContext("cublas", std::to_string(cublas));
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
