// metagrad/backend/cuda/conv.hpp — the CUDA answer to run_conv2d(Conv2dCall) (expr/conv.hpp): each pass is
// one cuDNN call on metagrad's stream of the device (cudnnConvolutionForward, cudnnConvolutionBackwardData,
// cudnnConvolutionBackwardFilter) over the contiguous NCHW buffers the node hands over, with the plan (the
// descriptors, the algorithm found by cudnnFind*AlgorithmEx, its math type and workspace size) taken from the
// cache of cudnn.hpp, and the workspace from the caching allocator. backend/dispatch.hpp calls it for calls
// on a CUDA device. Needs nvcc; include <metagrad/metagrad.hpp> instead.
//
// A forward call with a bias and an activation (expr/conv_bias.hpp) runs as cuDNN's fused
// cudnnConvolutionBiasActivationForward, y = act(conv(x, w) + bias), with
// CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: cuDNN's documentation allows CUDNN_ACTIVATION_RELU and
// CUDNN_ACTIVATION_IDENTITY there, the identity with that algorithm only, in float and double. Where cuDNN
// answers CUDNN_STATUS_NOT_SUPPORTED (remembered per geometry), or that algorithm has no workspace size for
// the geometry, or set_conv_bias_fusion(false), the unfused fallback runs: cudnnConvolutionForward with the
// searched algorithm, cudnnAddTensor of the [1, C, 1, 1] bias, cudnnActivationForward in place. The z input
// of the fused call is y itself with alpha2 = 0 (cuDNN wants a valid pointer; TensorFlow passes its output
// the same way when there is no side input).
#pragma once

#if defined(__CUDACC__)

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <unordered_map>

#include "../../core/error.hpp"
#include "../../expr/conv.hpp"
#include "cudnn.hpp"
#include "cudnn_params.hpp"
#include "runtime.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cuda {

/// How many forward convolutions with a bias or activation ran as cuDNN's fused call, and how many through
/// the unfused fallback, since the process started (tests and benchmarks read it).
struct ConvBiasCounts {
  std::uint64_t fused = 0, unfused = 0;
};

namespace detail {
struct ConvBiasState {
  std::atomic<bool> fusion{true};
  std::atomic<std::uint64_t> fused{0}, unfused{0};
};
inline ConvBiasState& conv_bias_state() {
  static ConvBiasState s;
  return s;
}
}  // namespace detail

/// Lets convolutions with a bias and activation use cuDNN's fused call (the default), or forces the unfused
/// fallback (tests, benchmarks; the results agree within the convolution's rounding).
inline void set_conv_bias_fusion(bool on) { detail::conv_bias_state().fusion = on; }
inline bool conv_bias_fusion() { return detail::conv_bias_state().fusion; }
inline ConvBiasCounts conv_bias_counts() {
  return {detail::conv_bias_state().fused.load(), detail::conv_bias_state().unfused.load()};
}

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
  auto run_search = [&](auto get_v7, auto find_ex, auto size_of, auto* perf, int count) {
    // Sets the plan to `algo`. With FMA math asked for, the descriptor keeps it whatever the report says (a
    // "default" report would let cuDNN choose TF32 kernels at run time). The workspace is asked for again under
    // the math type the descriptor now has, and the larger of the two answers kept.
    auto finish = [&](auto algo, cudnnMathType_t reported, std::size_t ws, bool searched, bool in_capture) {
      p.algo = static_cast<int>(algo);
      p.math = wanted == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : reported;
      p.conv.set_math(p.math);
      std::size_t again = 0;
      cudnn::check(size_of(algo, again), "cudnnGetConvolution*WorkspaceSize" + ctx);
      p.workspace = std::max(ws, again);
      p.searched = searched;
      p.chosen_in_capture = in_capture;
    };
    int n = 0;
    cudnn::check(get_v7(count, &n, perf), "cudnnGetConvolution*Algorithm_v7" + ctx);
    const int heuristic = cudnn::detail::pick(perf, n, wanted, cudnn::max_search_workspace);
    if (heuristic < 0) throw cuda_error("conv2d on " + c.device.str() + ": cuDNN offers no algorithm" + ctx);
    std::size_t ws_heuristic = 0;
    cudnn::check(size_of(perf[heuristic].algo, ws_heuristic), "cudnnGetConvolution*WorkspaceSize" + ctx);
    const auto h_algo = perf[heuristic].algo;
    const auto h_math = perf[heuristic].mathType;
    if (cudnn::detail::stream_capturing(device)) {
      finish(h_algo, h_math, ws_heuristic, false, true);
      return;
    }
    const std::size_t ws = search_workspace(perf, n, size_of);
    DeviceBuffer buf(ws, device);
    int found = 0;
    cudnn::check(find_ex(count, &found, perf, buf.get(), ws), "cudnnFindConvolution*AlgorithmEx" + ctx);
    const int best = cudnn::detail::pick(perf, found, wanted, ws);
    if (best < 0) {
      finish(h_algo, h_math, ws_heuristic, false, false);
      return;
    }
    finish(perf[best].algo, perf[best].mathType, perf[best].memory, true, false);
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
  if (cudnn::ConvPlan* p = cache.find(key)) {
    // A geometry first met while a graph was being recorded took the heuristics' choice (no search may run
    // then): searched on the first eager call instead. Graphs recorded with the old choice keep it.
    if (p->chosen_in_capture && !cudnn::detail::stream_capturing(device))
      detail::choose_algorithm(*p, h, c, cudnn::conv_math(key.dtype, tf32), device);
    return *p;
  }
  const CudnnConvParams params = cudnn_conv_params(c.geom);
  auto plan = std::make_unique<cudnn::ConvPlan>(params, cudnn::data_type<T>());
  detail::choose_algorithm(*plan, h, c, cudnn::conv_math(key.dtype, tf32), device);
  return *cache.insert(key, std::move(plan));
}

namespace detail {

/// A cudnnActivationDescriptor_t of `mode`, NaN propagating (as the CPU's relu, x < 0 ? 0 : x).
class ActivationDescriptor {
 public:
  explicit ActivationDescriptor(cudnnActivationMode_t mode) {
    cudnn::check(cudnnCreateActivationDescriptor(&desc_), "cudnnCreateActivationDescriptor");
    const cudnnStatus_t s = cudnnSetActivationDescriptor(desc_, mode, CUDNN_PROPAGATE_NAN, 0.0);
    if (s != CUDNN_STATUS_SUCCESS) {
      cudnnDestroyActivationDescriptor(desc_);
      cudnn::check(s, "cudnnSetActivationDescriptor");
    }
  }
  ActivationDescriptor(const ActivationDescriptor&) = delete;
  ActivationDescriptor& operator=(const ActivationDescriptor&) = delete;
  ~ActivationDescriptor() { cudnnDestroyActivationDescriptor(desc_); }
  cudnnActivationDescriptor_t get() const { return desc_; }

 private:
  cudnnActivationDescriptor_t desc_ = nullptr;
};

/// What the bias and activation of one forward key need beside its ConvPlan: the [1, C, 1, 1] bias
/// descriptor, both activation descriptors, the workspace of the fused call's algorithm, and per activation
/// whether cuDNN took the fused call (-1 not tried yet, 0 refused: the fallback from then on, 1 ran).
struct FusedConvPlan {
  FusedConvPlan(cudnnDataType_t dt, const int (&bias_dims)[4])
      : bias(dt, bias_dims), relu(CUDNN_ACTIVATION_RELU), identity(CUDNN_ACTIVATION_IDENTITY) {}
  cudnn::TensorDescriptor bias;
  ActivationDescriptor relu, identity;
  std::size_t workspace = 0;
  bool algo_ok = false;  ///< IMPLICIT_PRECOMP_GEMM reported a workspace size for this geometry
  signed char fused[2] = {-1, -1};
};

/// The fused plans of this process, keyed as the convolution plans (the forward pass's key).
class FusedConvPlanCache {
 public:
  FusedConvPlan* find(const ConvAlgoKey& k) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = plans_.find(k);
    return it == plans_.end() ? nullptr : it->second.get();
  }
  FusedConvPlan* insert(const ConvAlgoKey& k, std::unique_ptr<FusedConvPlan> p) {
    std::lock_guard<std::mutex> lock(mutex_);
    return plans_.emplace(k, std::move(p)).first->second.get();
  }

 private:
  std::mutex mutex_;
  std::unordered_map<ConvAlgoKey, std::unique_ptr<FusedConvPlan>, ConvAlgoKeyHash> plans_;
};

inline FusedConvPlanCache& fused_conv_plan_cache() {
  static auto* c = new FusedConvPlanCache();  // never destroyed, as the other cuDNN state
  return *c;
}

/// The fused plan of forward call c (whose ConvPlan is p), made on first use.
/// @pre the caller holds cudnn::device_state(device).mutex and h is bound to stream(device).
template <class T>
FusedConvPlan& fused_conv_plan(const Conv2dCall<T>& c, cudnnHandle_t h, const cudnn::ConvPlan& p) {
  const bool tf32 = std::is_same_v<T, float> && allow_tf32();
  const ConvAlgoKey key{ConvPass::forward, cudnn_dtype_of<T>(), tf32, c.geom, c.device.index()};
  auto& cache = fused_conv_plan_cache();
  if (FusedConvPlan* f = cache.find(key)) return *f;
  const int dims[4] = {1, static_cast<int>(c.geom.c_out), 1, 1};
  auto f = std::make_unique<FusedConvPlan>(cudnn::data_type<T>(), dims);
  std::size_t ws = 0;
  f->algo_ok = cudnnGetConvolutionForwardWorkspaceSize(h, p.x.get(), p.w.get(), p.conv.get(), p.y.get(),
                                                       CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                                                       &ws) == CUDNN_STATUS_SUCCESS;
  f->workspace = ws;
  return *cache.insert(key, std::move(f));
}

/// y = act(conv(x, w) + bias): cuDNN's fused call where it applies, else the convolution, cudnnAddTensor and
/// cudnnActivationForward (see the file comment).
/// @pre as run_conv2d; c.pass is forward.
template <class T>
void conv_bias_forward(const Conv2dCall<T>& c, cudnnHandle_t h, cudnn::ConvPlan& p, const std::string& ctx) {
  const int device = c.device.index();
  FusedConvPlan& f = fused_conv_plan(c, h, p);
  const T one = 1, zero = 0;
  const bool relu = c.activation == Activation::relu;
  signed char& fused = f.fused[relu ? 1 : 0];
  // The fused call needs a bias (its bias pointer is not optional); a bare activation takes the fallback.
  if (c.bias != nullptr && f.algo_ok && fused != 0 && conv_bias_fusion()) {
    DeviceBuffer ws(f.workspace, device);
    const cudnnStatus_t s = cudnnConvolutionBiasActivationForward(
        h, &one, p.x.get(), c.x, p.w.get(), c.w, p.conv.get(), CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        ws.get(), f.workspace, &zero, p.y.get(), c.out, f.bias.get(), c.bias, relu ? f.relu.get() : f.identity.get(),
        p.y.get(), c.out);
    if (s == CUDNN_STATUS_SUCCESS) {
      fused = 1;
      ++conv_bias_state().fused;
      return;
    }
    // A refusal is a property of the geometry: remembered, and answered by the fallback. cuDNN 9 refuses with
    // sub-codes of NOT_SUPPORTED (3001 _SHAPE, 3002 _DATA_TYPE, ...), and the fused call's documented limits
    // (algorithm, data type, activation) may also come back as BAD_PARAM, so on the first try of a geometry
    // either category is a refusal. A failure of a call that ran before, or of another kind, is an error.
    const int category = CUDNN_STATUS_CATEGORY(static_cast<int>(s));
    if (fused == 1 || (category != CUDNN_STATUS_NOT_SUPPORTED && category != CUDNN_STATUS_BAD_PARAM))
      cudnn::check(s, "cudnnConvolutionBiasActivationForward" + ctx);
    fused = 0;
  }
  DeviceBuffer ws(p.workspace, device);
  cudnn::check(cudnnConvolutionForward(h, &one, p.x.get(), c.x, p.w.get(), c.w, p.conv.get(),
                                       static_cast<cudnnConvolutionFwdAlgo_t>(p.algo), ws.get(), p.workspace, &zero,
                                       p.y.get(), c.out),
               "cudnnConvolutionForward" + ctx);
  if (c.bias != nullptr)
    cudnn::check(cudnnAddTensor(h, &one, f.bias.get(), c.bias, &one, p.y.get(), c.out), "cudnnAddTensor" + ctx);
  if (relu)
    cudnn::check(cudnnActivationForward(h, f.relu.get(), &one, p.y.get(), c.out, &zero, p.y.get(), c.out),
                 "cudnnActivationForward" + ctx);
  ++conv_bias_state().unfused;
}

}  // namespace detail

/// Runs one convolution pass with cuDNN on call.device, queued on stream(device) (the call returns before
/// the result is computed); a forward call's bias and activation in the same cuDNN call where cuDNN fuses
/// them (see the file comment). The first call of a (pass, dtype, TF32 switch, geometry, device) searches the
/// algorithms and synchronises the device; later calls reuse the choice.
/// @pre every pointer is device memory of call.device, contiguous (see Conv2dCall); no extent is 0.
/// @throws shape_error naming conv2d and the shapes when a tensor exceeds cuDNN's 32-bit sizes; cuda_error
///         naming the cuDNN call, its status and the geometry when cuDNN refuses or fails; metagrad::error for
///         a bias or activation on a backward pass.
template <class T>
void run_conv2d(const Conv2dCall<T>& c) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "metagrad: cuDNN convolution is float or double");
  const bool epilogue = c.bias != nullptr || c.activation != Activation::identity;
  if (epilogue && c.pass != ConvPass::forward)
    throw error("conv2d on " + c.device.str() + ": a bias or activation was given to a " +
                detail::conv_pass_name(c.pass) + " pass; they belong to the forward pass only");
  (void)cudnn_conv_params(c.geom);  // the 32-bit limits, before any cuDNN state is made
  const int device = c.device.index();
  DeviceGuard guard(device);
  auto& state = cudnn::device_state(device);
  std::lock_guard<std::mutex> lock(state.mutex);
  const cudnnHandle_t h = cudnn::bound_handle(state, device);
  cudnn::ConvPlan& p = conv_plan(c, h);
  const std::string ctx = detail::conv_context(c.pass, c.geom);
  if (epilogue) return detail::conv_bias_forward(c, h, p, ctx);  // with its own workspace
  DeviceBuffer ws(p.workspace, device);
  const T one = 1, zero = 0;
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
