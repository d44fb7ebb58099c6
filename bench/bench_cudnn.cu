// bench_cudnn — metagrad's convolutions on a CUDA GPU beside the same cuDNN call made directly, in the same
// process: each of LeNet's two convolution layers (conv1: 1 -> 6 channels, 28 x 28, 5 x 5, padding 2;
// conv2: 6 -> 16 channels, 14 x 14, 5 x 5) at batch 64 and 256, for the forward, backward-data and
// backward-weight passes. metagrad evaluates the node into a preallocated tensor (eval_into: the plan cache
// lookup, descriptor reuse and workspace from the caching allocator are all inside the timing); the baseline
// calls cudnnConvolution{Forward,BackwardData,BackwardFilter} with descriptors made once, the fastest FMA-math
// algorithm from cudnnFind*AlgorithmEx and a workspace allocated once. So the ratio measures metagrad's
// per-call overhead and the quality of its algorithm choice.
//
// Names are <layer>_<pass>/<impl>/<batch>; counters GFLOP/s (2 N C_out OH OW C_in kH kW per pass) and, for
// metagrad, `ratio` = its rate / the baseline's (registered first). Timing: CUDA events around the work on
// metagrad's stream of device 0 (manual time). Without a GPU the program prints "skipped: no CUDA device".
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstdio>
#include <map>
#include <metagrad/metagrad.hpp>
#include <string>
#include <vector>

namespace mg = metagrad;

namespace {

const mg::Device kGpu = mg::Device::cuda(0);

cudaStream_t stream() { return mg::cuda::stream(0); }

void check(cudnnStatus_t s, const char* what) { mg::cuda::cudnn::check(s, what); }

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

std::map<std::string, double>& baselines() {
  static std::map<std::string, double> m;
  return m;
}

// f once untimed (plan search, handle creation), then timed per iteration; rate in GFLOP/s.
template <class F>
void run_timed(benchmark::State& state, const std::string& key, bool is_baseline, double flop, F&& f) {
  GpuTimer timer;
  f();
  mg::cuda::synchronize(0);
  double total = 0;
  for (auto _ : state) {
    const double s = timer.seconds(f);
    state.SetIterationTime(s);
    total += s;
  }
  const double rate = total > 0 ? flop * static_cast<double>(state.iterations()) / total / 1e9 : 0;
  state.counters["GFLOP/s"] = rate;
  if (is_baseline)
    baselines()[key] = rate;
  else if (auto it = baselines().find(key); it != baselines().end() && it->second > 0)
    state.counters["ratio"] = rate / it->second;
}

struct Layer {
  const char* name;
  mg::index_t c_in, hw, c_out, k, pad;
};
const Layer kLayers[] = {{"conv1", 1, 28, 6, 5, 2}, {"conv2", 6, 14, 16, 5, 0}};

mg::Tensor<float, 4> pattern(const mg::Shape<4>& s, unsigned seed) {
  std::vector<float> v(static_cast<std::size_t>(s.numel()));
  unsigned x = seed * 2654435761u + 1u;
  for (auto& e : v) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    e = static_cast<float>(x >> 8) * 0x1p-24f * 2 - 1;
  }
  return mg::from_vector(v, s).to(kGpu);
}

struct Operands {
  mg::Tensor<float, 4> x, w, g, y, dx, dw;
  mg::Conv2dGeometry geom;
  Operands(const Layer& l, mg::index_t n) {
    const mg::Conv2dOptions o{.padding = l.pad};
    x = pattern({n, l.c_in, l.hw, l.hw}, 1);
    w = pattern({l.c_out, l.c_in, l.k, l.k}, 2);
    geom = mg::detail::conv2d_geometry(x.shape(), w.shape(), o, "conv2d");
    g = pattern(geom.output_shape(), 3);
    y = mg::zeros<float>(geom.output_shape(), kGpu);
    dx = mg::zeros<float>(geom.input_shape(), kGpu);
    dw = mg::zeros<float>(geom.weight_shape(), kGpu);
  }
  double flop() const {
    return 2.0 * double(geom.n * geom.c_out * geom.oh * geom.ow) * double(geom.c_in_per_group() * geom.kh * geom.kw);
  }
};

void BM_metagrad(benchmark::State& state, Layer l, mg::ConvPass pass, std::string key) {
  Operands d(l, state.range(0));
  const mg::Conv2dOptions o{.padding = l.pad};
  const auto y = mg::conv2d(d.x, d.w, o);
  const auto bd = y.backward(std::integral_constant<int, 0>{}, d.g);
  const auto bw = y.backward(std::integral_constant<int, 1>{}, d.g);
  run_timed(state, key, false, d.flop(), [&] {
    if (pass == mg::ConvPass::forward)
      y.eval_into(d.y);
    else if (pass == mg::ConvPass::backward_data)
      bd.eval_into(d.dx);
    else
      bw.eval_into(d.dw);
  });
}

// The direct cuDNN call: descriptors and workspace made once, the fastest FMA-math algorithm of the search.
void BM_cudnn(benchmark::State& state, Layer l, mg::ConvPass pass, std::string key) {
  Operands d(l, state.range(0));
  const auto p = mg::cuda::cudnn_conv_params(d.geom);
  cudnnHandle_t h = nullptr;
  check(cudnnCreate(&h), "cudnnCreate");
  check(cudnnSetStream(h, stream()), "cudnnSetStream");
  mg::cuda::cudnn::TensorDescriptor xd(CUDNN_DATA_FLOAT, p.x), yd(CUDNN_DATA_FLOAT, p.y);
  mg::cuda::cudnn::FilterDescriptor wd(CUDNN_DATA_FLOAT, p.w);
  mg::cuda::cudnn::ConvolutionDescriptor cd(p, CUDNN_DATA_FLOAT);
  cd.set_math(CUDNN_FMA_MATH);
  const std::size_t limit = std::size_t(256) << 20;
  mg::cuda::DeviceBuffer search(limit, 0);
  int algo = -1, n = 0;
  std::size_t ws = 0;
  auto take = [&](const auto* perf, int count) {
    for (int i = 0; i < count && algo < 0; ++i)
      if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].mathType != CUDNN_TENSOR_OP_MATH &&
          perf[i].mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) {
        algo = static_cast<int>(perf[i].algo);
        ws = perf[i].memory;
      }
  };
  if (pass == mg::ConvPass::forward) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    check(cudnnFindConvolutionForwardAlgorithmEx(h, xd.get(), d.x.data(), wd.get(), d.w.data(), cd.get(), yd.get(),
                                                 d.y.data(), CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf, search.get(),
                                                 limit),
          "cudnnFindConvolutionForwardAlgorithmEx");
    take(perf, n);
  } else if (pass == mg::ConvPass::backward_data) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    check(cudnnFindConvolutionBackwardDataAlgorithmEx(h, wd.get(), d.w.data(), yd.get(), d.g.data(), cd.get(), xd.get(),
                                                      d.dx.data(), CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf,
                                                      search.get(), limit),
          "cudnnFindConvolutionBackwardDataAlgorithmEx");
    take(perf, n);
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    check(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, xd.get(), d.x.data(), yd.get(), d.g.data(), cd.get(),
                                                        wd.get(), d.dw.data(), CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                                                        &n, perf, search.get(), limit),
          "cudnnFindConvolutionBackwardFilterAlgorithmEx");
    take(perf, n);
  }
  if (algo < 0) {
    state.SkipWithError("cuDNN found no FMA-math algorithm");
    cudnnDestroy(h);
    return;
  }
  mg::cuda::DeviceBuffer work(ws, 0);
  const float one = 1, zero = 0;
  run_timed(state, key, true, d.flop(), [&] {
    if (pass == mg::ConvPass::forward)
      check(cudnnConvolutionForward(h, &one, xd.get(), d.x.data(), wd.get(), d.w.data(), cd.get(),
                                    static_cast<cudnnConvolutionFwdAlgo_t>(algo), work.get(), ws, &zero, yd.get(),
                                    d.y.data()),
            "cudnnConvolutionForward");
    else if (pass == mg::ConvPass::backward_data)
      check(cudnnConvolutionBackwardData(h, &one, wd.get(), d.w.data(), yd.get(), d.g.data(), cd.get(),
                                         static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), work.get(), ws, &zero,
                                         xd.get(), d.dx.data()),
            "cudnnConvolutionBackwardData");
    else
      check(cudnnConvolutionBackwardFilter(h, &one, xd.get(), d.x.data(), yd.get(), d.g.data(), cd.get(),
                                           static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), work.get(), ws, &zero,
                                           wd.get(), d.dw.data()),
            "cudnnConvolutionBackwardFilter");
  });
  mg::cuda::synchronize(0);
  cudnnDestroy(h);
}

void register_all() {
  const std::pair<mg::ConvPass, const char*> passes[] = {{mg::ConvPass::forward, "forward"},
                                                         {mg::ConvPass::backward_data, "backward_data"},
                                                         {mg::ConvPass::backward_weight, "backward_weight"}};
  for (const Layer& l : kLayers)
    for (const auto& [pass, pname] : passes)
      for (long batch : {64L, 256L}) {
        const std::string name = std::string(l.name) + "_" + pname;
        const std::string key = name + "/" + std::to_string(batch);
        // The baseline first, so the metagrad run finds its rate. Names end in the batch (the Arg).
        benchmark::RegisterBenchmark((name + "/cudnn").c_str(), BM_cudnn, l, pass, key)
            ->Arg(batch)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
        benchmark::RegisterBenchmark((name + "/metagrad").c_str(), BM_metagrad, l, pass, key)
            ->Arg(batch)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
}

}  // namespace

int main(int argc, char** argv) {
  if (mg::cuda::device_count() == 0) {
    std::printf("skipped: no CUDA device\n");
    return 0;
  }
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
