// metagrad/backend/cuda/conv.hpp — the CUDA answer to run_conv2d(Conv2dCall) (expr/conv.hpp): each pass is
// one cuDNN call on metagrad's stream of the device (cudnnConvolutionForward, cudnnConvolutionBackwardData,
// cudnnConvolutionBackwardFilter) over the contiguous NCHW buffers the node hands over, with the plan (the
// descriptors, the algorithm found by cudnnFind*AlgorithmEx, its math type and workspace size) taken from the
// cache of cudnn.hpp, and the workspace from the caching allocator. backend/dispatch.hpp calls it for calls
// on a CUDA device. Needs nvcc; include <metagrad/metagrad.hpp> instead.
#pragma once

#if defined(__CUDACC__)

#include <memory>
#include <string>
#include <type_traits>

#include "../../core/error.hpp"
#include "../../expr/conv.hpp"
#include "cudnn.hpp"
#include "cudnn_params.hpp"
#include "runtime.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cuda {

#if METAGRAD_WITH_CUDNN

namespace detail {

inline const char* conv_pass_name(ConvPass p) {
  return p == ConvPass::forward ? "forward" : p == ConvPass::backward_data ? "backward data" : "backward weight";
}

inline std::string conv_context(ConvPass pass, const Conv2dGeometry& g) {
  return std::string(" (conv2d ") + conv_pass_name(pass) + ": input " + to_string(g.input_shape()) + ", weight " +
         to_string(g.weight_shape()) + ", output " + to_string(g.output_shape()) + ", stride " +
         metagrad::detail::size2_text(g.stride) + ", padding " + metagrad::detail::size2_text(g.padding) +
         ", dilation " + metagrad::detail::size2_text(g.dilation) + ", groups " + std::to_string(g.groups) + ")";
}

// The largest workspace, up to max_search_workspace, of the algorithms the heuristics list: what the search
// is given.
template <class Perf, class SizeOf>
std::size_t search_workspace(const Perf* perf, int n, SizeOf&& size_of) {
  std::size_t ws = 0;
  for (int i = 0; i < n; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
    std::size_t s = 0;
    if (size_of(perf[i].algo, s) == CUDNN_STATUS_SUCCESS && s <= cudnn::max_search_workspace) ws = std::max(ws, s);
  }
  return ws;
}

// Chooses the algorithm of plan p for pass `pass`: heuristics (_v7) first, then, unless the stream is being
// captured, a timed search over the real buffers with the largest workspace the heuristics' candidates need.
// The search writes the pass's output buffer, which the real call overwrites next.
template <class T>
void choose_algorithm(cudnn::ConvPlan& p, cudnnHandle_t h, const Conv2dCall<T>& c, cudnnMathType_t wanted, int device) {
  const std::string ctx = conv_context(c.pass, c.geom);
  auto finish = [&](int algo, cudnnMathType_t reported, std::size_t ws, bool searched) {
    p.algo = algo;
    // With FMA math asked for, the descriptor keeps it whatever the report says: a "default" report would
    // let cuDNN choose TF32 kernels at run time.
    p.math = wanted == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : reported;
    p.workspace = ws;
    p.searched = searched;
    p.conv.set_math(p.math);
  };
  auto run_search = [&](auto get_v7, auto find_ex, auto size_of, auto* perf, int count) {
    int n = 0;
    cudnn::check(get_v7(count, &n, perf), "cudnnGetConvolution*Algorithm_v7" + ctx);
    const int heuristic = cudnn::detail::pick(perf, n, wanted, cudnn::max_search_workspace);
    if (heuristic < 0) throw cuda_error("conv2d on " + c.device.str() + ": cuDNN offers no algorithm" + ctx);
    std::size_t ws_heuristic = 0;
    cudnn::check(size_of(perf[heuristic].algo, ws_heuristic), "cudnnGetConvolution*WorkspaceSize" + ctx);
    const auto h_algo = static_cast<int>(perf[heuristic].algo);
    const auto h_math = perf[heuristic].mathType;
    if (cudnn::detail::stream_capturing(device)) {
      finish(h_algo, h_math, ws_heuristic, false);
      return;
    }
    const std::size_t ws = search_workspace(perf, n, size_of);
    DeviceBuffer buf(ws, device);
    int found = 0;
    cudnn::check(find_ex(count, &found, perf, buf.get(), ws), "cudnnFindConvolution*AlgorithmEx" + ctx);
    const int best = cudnn::detail::pick(perf, found, wanted, ws);
    if (best < 0) {
      finish(h_algo, h_math, ws_heuristic, false);
      return;
    }
    finish(static_cast<int>(perf[best].algo), perf[best].mathType, perf[best].memory, true);
  };
  const auto xd = p.x.get(), yd = p.y.get();
  const auto wd = p.w.get();
  const auto cd = p.conv.get();
  p.conv.set_math(wanted);
  if (c.pass == ConvPass::forward) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    run_search(
        [&](int k, int* n, cudnnConvolutionFwdAlgoPerf_t* r) {
          return cudnnGetConvolutionForwardAlgorithm_v7(h, xd, wd, cd, yd, k, n, r);
        },
        [&](int k, int* n, cudnnConvolutionFwdAlgoPerf_t* r, void* ws, std::size_t bytes) {
          return cudnnFindConvolutionForwardAlgorithmEx(h, xd, c.x, wd, c.w, cd, yd, c.out, k, n, r, ws, bytes);
        },
        [&](cudnnConvolutionFwdAlgo_t a, std::size_t& s) {
          return cudnnGetConvolutionForwardWorkspaceSize(h, xd, wd, cd, yd, a, &s);
        },
        perf, CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
  } else if (c.pass == ConvPass::backward_data) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    run_search(
        [&](int k, int* n, cudnnConvolutionBwdDataAlgoPerf_t* r) {
          return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, wd, yd, cd, xd, k, n, r);
        },
        [&](int k, int* n, cudnnConvolutionBwdDataAlgoPerf_t* r, void* ws, std::size_t bytes) {
          return cudnnFindConvolutionBackwardDataAlgorithmEx(h, wd, c.w, yd, c.dy, cd, xd, c.out, k, n, r, ws, bytes);
        },
        [&](cudnnConvolutionBwdDataAlgo_t a, std::size_t& s) {
          return cudnnGetConvolutionBackwardDataWorkspaceSize(h, wd, yd, cd, xd, a, &s);
        },
        perf, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    run_search(
        [&](int k, int* n, cudnnConvolutionBwdFilterAlgoPerf_t* r) {
          return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, xd, yd, cd, wd, k, n, r);
        },
        [&](int k, int* n, cudnnConvolutionBwdFilterAlgoPerf_t* r, void* ws, std::size_t bytes) {
          return cudnnFindConvolutionBackwardFilterAlgorithmEx(h, xd, c.x, yd, c.dy, cd, wd, c.out, k, n, r, ws, bytes);
        },
        [&](cudnnConvolutionBwdFilterAlgo_t a, std::size_t& s) {
          return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, xd, yd, cd, wd, a, &s);
        },
        perf, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
  }
}

}  // namespace detail

/// The cuDNN plan of a convolution call: from the cache, or made (descriptors, algorithm search) and cached.
/// @pre the caller holds cudnn::device_state(device).mutex and h is bound to stream(device).
template <class T>
cudnn::ConvPlan& conv_plan(const Conv2dCall<T>& c, cudnnHandle_t h) {
  const int device = c.device.index();
  const bool tf32 = std::is_same_v<T, float> && allow_tf32();
  const ConvAlgoKey key{c.pass, cudnn_dtype_of<T>(), tf32, c.geom, device};
  auto& cache = cudnn::conv_plan_cache();
  if (cudnn::ConvPlan* p = cache.find(key)) return *p;
  const CudnnConvParams params = cudnn_conv_params(c.geom);
  auto plan = std::make_unique<cudnn::ConvPlan>(params, cudnn::data_type<T>());
  detail::choose_algorithm(*plan, h, c, cudnn::conv_math(key.dtype, tf32), device);
  return *cache.insert(key, std::move(plan));
}

/// Runs one convolution pass with cuDNN on call.device, queued on stream(device) (the call returns before
/// the result is computed). The first call of a (pass, dtype, TF32 switch, geometry, device) searches the
/// algorithms and synchronises the device; later calls reuse the choice.
/// @pre every pointer is device memory of call.device, contiguous (see Conv2dCall); no extent is 0.
/// @throws shape_error naming conv2d and the shapes when a tensor exceeds cuDNN's 32-bit sizes; cuda_error
///         naming the cuDNN call, its status and the geometry when cuDNN refuses or fails.
template <class T>
void run_conv2d(const Conv2dCall<T>& c) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "metagrad: cuDNN convolution is float or double");
  (void)cudnn_conv_params(c.geom);  // the 32-bit limits, before any cuDNN state is made
  const int device = c.device.index();
  DeviceGuard guard(device);
  auto& state = cudnn::device_state(device);
  std::lock_guard<std::mutex> lock(state.mutex);
  const cudnnHandle_t h = cudnn::bound_handle(state, device);
  cudnn::ConvPlan& p = conv_plan(c, h);
  DeviceBuffer ws(p.workspace, device);
  const T one = 1, zero = 0;
  const std::string ctx = detail::conv_context(c.pass, c.geom);
  if (c.pass == ConvPass::forward) {
    cudnn::check(cudnnConvolutionForward(h, &one, p.x.get(), c.x, p.w.get(), c.w, p.conv.get(),
                                         static_cast<cudnnConvolutionFwdAlgo_t>(p.algo), ws.get(), p.workspace, &zero,
                                         p.y.get(), c.out),
                 "cudnnConvolutionForward" + ctx);
  } else if (c.pass == ConvPass::backward_data) {
    cudnn::check(cudnnConvolutionBackwardData(h, &one, p.w.get(), c.w, p.y.get(), c.dy, p.conv.get(),
                                              static_cast<cudnnConvolutionBwdDataAlgo_t>(p.algo), ws.get(), p.workspace,
                                              &zero, p.x.get(), c.out),
                 "cudnnConvolutionBackwardData" + ctx);
  } else {
    cudnn::check(cudnnConvolutionBackwardFilter(h, &one, p.x.get(), c.x, p.y.get(), c.dy, p.conv.get(),
                                                static_cast<cudnnConvolutionBwdFilterAlgo_t>(p.algo), ws.get(),
                                                p.workspace, &zero, p.w.get(), c.out),
                 "cudnnConvolutionBackwardFilter" + ctx);
  }
}

#else  // no cuDNN in this build

/// @throws device_error: this build has no cuDNN, so convolutions cannot run on CUDA devices.
template <class T>
void run_conv2d(const Conv2dCall<T>& c) {
  throw device_error("conv2d on " + c.device.str() +
                     ": this build has no cuDNN (METAGRAD_WITH_CUDNN is 0: cudnn.h or libcudnn was not found when "
                     "it was configured); install cuDNN 9 and reconfigure, or move the operands to the CPU");
}

#endif  // METAGRAD_WITH_CUDNN

}  // namespace cuda
METAGRAD_NAMESPACE_END

#endif  // __CUDACC__
