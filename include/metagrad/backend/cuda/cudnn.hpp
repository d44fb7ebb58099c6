// metagrad/backend/cuda/cudnn.hpp — metagrad's cuDNN 9 plumbing (legacy descriptor API): status checks that
// throw cuda_error naming the call, one cudnnHandle_t per device bound to metagrad's stream of that device,
// RAII tensor / filter / convolution / pooling descriptors, and the convolution plan cache: per (pass, dtype,
// math mode, geometry, device) the descriptors, the chosen algorithm, its math type and workspace size,
// made on first use. Workspaces come from metagrad's caching allocator (cuda::DeviceBuffer), never from
// cudaMalloc. Host-side code, but it leans on runtime.hpp, so like the other CUDA headers it is compiled
// only under nvcc. Include <metagrad/metagrad.hpp> (in a .cu file) instead.
//
// Without cuDNN: METAGRAD_WITH_CUDNN is set by CMake (1 when libcudnn and cudnn.h are found, else 0); a file
// compiled outside CMake gets 1 when <cudnn.h> can be included (and then must link -lcudnn). With 0, conv2d
// on a CUDA tensor throws device_error saying the build has no cuDNN; pooling still runs (metagrad's own
// kernels).
//
// Algorithm choice: cudnnFind*AlgorithmEx times the candidate algorithms on the real geometry and buffers
// once per key (PyTorch's cudnn.benchmark = True). The _v7 heuristics were the alternative: free of the
// one-time search (tens of milliseconds per geometry), but they rank by a model and for small images like
// LeNet's pick algorithms several times slower than the fastest. A training loop runs a geometry thousands of
// times, so the search pays. The search runs kernels and synchronises, which a stream under CUDA-graph
// capture forbids: a key first met during capture takes the heuristics' first choice instead.
//
// Math type: float convolutions use CUDNN_FMA_MATH unless cuda::allow_tf32() is on. CUDNN_DEFAULT_MATH is not
// enough: on Ampere and later it lets cuDNN pick TF32 tensor-core kernels for float data (cuDNN's
// cudnnMathType_t documentation; PyTorch sets CUDNN_FMA_MATH when TF32 is off for the same reason), and TF32's
// 10-bit mantissa would put results 1e-3 from the CPU's. double uses CUDNN_DEFAULT_MATH.
#pragma once

#if defined(__CUDACC__)

#if !defined(METAGRAD_WITH_CUDNN)
#if __has_include(<cudnn.h>)
#define METAGRAD_WITH_CUDNN 1
#else
#define METAGRAD_WITH_CUDNN 0
#endif
#endif

// Project headers outside the cuDNN guard: they do not need cuDNN, and the single header then inlines them
// once for every CUDA header rather than again under this guard.
#include "../../core/error.hpp"
#include "cudnn_params.hpp"
#include "matmul.hpp"
#include "runtime.hpp"

#if METAGRAD_WITH_CUDNN

#include <cudnn.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

METAGRAD_NAMESPACE_BEGIN
namespace cuda {
namespace cudnn {

/// @throws cuda_error naming `what` (the cuDNN call and its context) and cuDNN's text for `status` when it is
///         not CUDNN_STATUS_SUCCESS.
inline void check(cudnnStatus_t status, const char* what) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  throw cuda_error(std::string(what) + " failed: " + cudnnGetErrorString(status) + " (cuDNN status " +
                   std::to_string(static_cast<int>(status)) + ")");
}
inline void check(cudnnStatus_t status, const std::string& what) { check(status, what.c_str()); }

template <class T>
constexpr cudnnDataType_t data_type() {
  return std::is_same_v<T, float> ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE;
}
inline cudnnDataType_t data_type(CudnnDtype d) { return d == CudnnDtype::f32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE; }

/// The cuDNN state of one device: its handle (bound to the device current at cudnnCreate) and the stream the
/// handle was last given. Calls hold `mutex` from setting the stream to queueing their work, so two host
/// threads never share a half-configured handle.
struct DeviceState {
  std::mutex mutex;
  cudnnHandle_t handle = nullptr;
  cudaStream_t stream = nullptr;
  bool stream_set = false;
};

/// The cuDNN state of `device`, created on first use and never destroyed (as blas_device: at exit the CUDA
/// context may be gone before static destructors run).
/// @throws cuda_error when cudnnCreate fails (no cuDNN library at run time, or an unsupported GPU).
inline DeviceState& device_state(int device) {
  static auto* states = new std::unordered_map<int, DeviceState*>();
  static std::mutex m;
  std::lock_guard<std::mutex> lock(m);
  auto it = states->find(device);
  if (it != states->end()) return *it->second;
  DeviceGuard g(device);
  cudnnHandle_t h = nullptr;
  check(cudnnCreate(&h), "cudnnCreate on cuda:" + std::to_string(device));
  auto* s = new DeviceState();
  s->handle = h;
  (*states)[device] = s;
  return *s;
}

/// The handle of `device`, bound to stream(device). @pre the caller holds device_state(device).mutex.
inline cudnnHandle_t bound_handle(DeviceState& s, int device) {
  const cudaStream_t st = stream(device);
  if (!s.stream_set || s.stream != st) {
    check(cudnnSetStream(s.handle, st), "cudnnSetStream");
    s.stream = st;
    s.stream_set = true;
  }
  return s.handle;
}

/// A cudnnTensorDescriptor_t of a contiguous NCHW tensor.
class TensorDescriptor {
 public:
  TensorDescriptor(cudnnDataType_t dt, const int (&d)[4]) {
    check(cudnnCreateTensorDescriptor(&desc_), "cudnnCreateTensorDescriptor");
    const cudnnStatus_t s = cudnnSetTensor4dDescriptor(desc_, CUDNN_TENSOR_NCHW, dt, d[0], d[1], d[2], d[3]);
    if (s != CUDNN_STATUS_SUCCESS) {
      cudnnDestroyTensorDescriptor(desc_);
      check(s, "cudnnSetTensor4dDescriptor (" + dims(d) + ")");
    }
  }
  TensorDescriptor(const TensorDescriptor&) = delete;
  TensorDescriptor& operator=(const TensorDescriptor&) = delete;
  ~TensorDescriptor() { cudnnDestroyTensorDescriptor(desc_); }
  cudnnTensorDescriptor_t get() const { return desc_; }

  static std::string dims(const int (&d)[4]) {
    return "[" + std::to_string(d[0]) + ", " + std::to_string(d[1]) + ", " + std::to_string(d[2]) + ", " +
           std::to_string(d[3]) + "]";
  }

 private:
  cudnnTensorDescriptor_t desc_ = nullptr;
};

/// A cudnnFilterDescriptor_t of contiguous [K, C, R, S] weights.
class FilterDescriptor {
 public:
  FilterDescriptor(cudnnDataType_t dt, const int (&d)[4]) {
    check(cudnnCreateFilterDescriptor(&desc_), "cudnnCreateFilterDescriptor");
    const cudnnStatus_t s = cudnnSetFilter4dDescriptor(desc_, dt, CUDNN_TENSOR_NCHW, d[0], d[1], d[2], d[3]);
    if (s != CUDNN_STATUS_SUCCESS) {
      cudnnDestroyFilterDescriptor(desc_);
      check(s, "cudnnSetFilter4dDescriptor (" + TensorDescriptor::dims(d) + ")");
    }
  }
  FilterDescriptor(const FilterDescriptor&) = delete;
  FilterDescriptor& operator=(const FilterDescriptor&) = delete;
  ~FilterDescriptor() { cudnnDestroyFilterDescriptor(desc_); }
  cudnnFilterDescriptor_t get() const { return desc_; }

 private:
  cudnnFilterDescriptor_t desc_ = nullptr;
};

/// A cudnnConvolutionDescriptor_t: cross-correlation (PyTorch's conv2d) with the padding, stride, dilation
/// and groups of p, accumulating in `compute`.
class ConvolutionDescriptor {
 public:
  ConvolutionDescriptor(const CudnnConvParams& p, cudnnDataType_t compute) {
    check(cudnnCreateConvolutionDescriptor(&desc_), "cudnnCreateConvolutionDescriptor");
    try {
      check(cudnnSetConvolution2dDescriptor(desc_, p.pad_h, p.pad_w, p.stride_h, p.stride_w, p.dil_h, p.dil_w,
                                            CUDNN_CROSS_CORRELATION, compute),
            "cudnnSetConvolution2dDescriptor");
      check(cudnnSetConvolutionGroupCount(desc_, p.groups), "cudnnSetConvolutionGroupCount");
    } catch (...) {
      cudnnDestroyConvolutionDescriptor(desc_);
      throw;
    }
  }
  ConvolutionDescriptor(const ConvolutionDescriptor&) = delete;
  ConvolutionDescriptor& operator=(const ConvolutionDescriptor&) = delete;
  ~ConvolutionDescriptor() { cudnnDestroyConvolutionDescriptor(desc_); }
  cudnnConvolutionDescriptor_t get() const { return desc_; }
  void set_math(cudnnMathType_t m) { check(cudnnSetConvolutionMathType(desc_, m), "cudnnSetConvolutionMathType"); }

 private:
  cudnnConvolutionDescriptor_t desc_ = nullptr;
};

/// A cudnnPoolingDescriptor_t of p (NaNs propagate, as the CPU's max rule).
class PoolingDescriptor {
 public:
  explicit PoolingDescriptor(const CudnnPoolParams& p) {
    check(cudnnCreatePoolingDescriptor(&desc_), "cudnnCreatePoolingDescriptor");
    // The deterministic max mode: the forward value is the same in both modes, and it is the one whose
    // backward would not depend on scheduling.
    const cudnnPoolingMode_t mode = p.mode == CudnnPoolMode::max ? CUDNN_POOLING_MAX_DETERMINISTIC
                                    : p.mode == CudnnPoolMode::avg_include_pad
                                        ? CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING
                                        : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
    const cudnnStatus_t s = cudnnSetPooling2dDescriptor(desc_, mode, CUDNN_PROPAGATE_NAN, p.window_h, p.window_w,
                                                        p.pad_h, p.pad_w, p.stride_h, p.stride_w);
    if (s != CUDNN_STATUS_SUCCESS) {
      cudnnDestroyPoolingDescriptor(desc_);
      check(s, "cudnnSetPooling2dDescriptor");
    }
  }
  PoolingDescriptor(const PoolingDescriptor&) = delete;
  PoolingDescriptor& operator=(const PoolingDescriptor&) = delete;
  ~PoolingDescriptor() { cudnnDestroyPoolingDescriptor(desc_); }
  cudnnPoolingDescriptor_t get() const { return desc_; }

 private:
  cudnnPoolingDescriptor_t desc_ = nullptr;
};

/// The math type a convolution of dtype d runs in (see the file comment).
inline cudnnMathType_t conv_math(CudnnDtype d, bool tf32) {
  if (d == CudnnDtype::f64) return CUDNN_DEFAULT_MATH;
  return tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
}

/// Everything a convolution pass of one key needs at run time: descriptors set once, the algorithm (the
/// int value of the pass's cudnnConvolution*Algo_t), its math type and workspace bytes.
struct ConvPlan {
  ConvPlan(const CudnnConvParams& p, cudnnDataType_t dt) : x(dt, p.x), y(dt, p.y), w(dt, p.w), conv(p, dt) {}
  TensorDescriptor x, y;
  FilterDescriptor w;
  ConvolutionDescriptor conv;
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  std::size_t workspace = 0;
  bool searched = false;           ///< chosen by timing (cudnnFind...Ex) rather than the heuristics
  bool chosen_in_capture = false;  ///< chosen while a graph was recorded (heuristics only): search again later
};

/// The convolution plans of this process, keyed by ConvAlgoKey. Plans are never removed (a program has few
/// geometries) and their addresses are stable.
class ConvPlanCache {
 public:
  ConvPlan* find(const ConvAlgoKey& k) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = plans_.find(k);
    return it == plans_.end() ? nullptr : it->second.get();
  }
  ConvPlan* insert(const ConvAlgoKey& k, std::unique_ptr<ConvPlan> p) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto [it, fresh] = plans_.emplace(k, std::move(p));
    return it->second.get();
  }
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return plans_.size();
  }

 private:
  std::mutex mutex_;
  std::unordered_map<ConvAlgoKey, std::unique_ptr<ConvPlan>, ConvAlgoKeyHash> plans_;
};

inline ConvPlanCache& conv_plan_cache() {
  static auto* c = new ConvPlanCache();
  return *c;
}

/// Largest workspace the algorithm search offers cuDNN: algorithms wanting more (some FFT variants on large
/// images) are not considered, so a first step never fails for lack of memory the steady state would not use.
inline constexpr std::size_t max_search_workspace = std::size_t(1) << 30;

namespace detail {

/// Index of the first usable result: status success, workspace within `limit`, and a math type that keeps
/// float results off TF32 unless allowed (with CUDNN_FMA_MATH asked for, that is the FMA or default math
/// report); -1 when none.
template <class Perf>
int pick(const Perf* perf, int n, cudnnMathType_t wanted, std::size_t limit) {
  for (int i = 0; i < n; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > limit) continue;
    if (wanted == CUDNN_FMA_MATH && perf[i].mathType != CUDNN_FMA_MATH && perf[i].mathType != CUDNN_DEFAULT_MATH)
      continue;
    return i;
  }
  return -1;
}

inline bool stream_capturing(int device) {
  cudaStreamCaptureStatus s = cudaStreamCaptureStatusNone;
  cuda::check(cudaStreamIsCapturing(stream(device), &s), "cudaStreamIsCapturing");
  return s != cudaStreamCaptureStatusNone;
}

}  // namespace detail

}  // namespace cudnn
}  // namespace cuda
METAGRAD_NAMESPACE_END

#endif  // METAGRAD_WITH_CUDNN
#endif  // __CUDACC__
