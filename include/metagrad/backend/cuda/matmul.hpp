// metagrad/backend/cuda/matmul.hpp — the CUDA GEMM of matmul nodes: one GemmCall becomes one cuBLAS call
// (cublas{S,D}gemm, or cublas{S,D}gemmStridedBatched for a batch) on metagrad's stream of the device, with
// no copies: a row-major product C = op(A) op(B) is the column-major product C^T = op(B)^T op(A)^T, so the
// operands are swapped and the transpose flags kept. One cuBLAS handle per device, created on first use and
// never destroyed (see blas_handle). float32 products run in full FP32 unless TF32 is switched on with
// set_allow_tf32(true). backend/dispatch.hpp calls run_gemm for calls on a CUDA device. Needs nvcc; include
// <metagrad/metagrad.hpp> instead.
//
// Workspace: cuBLAS 12.2 and later takes its workspace stream-ordered (cudaMallocAsync) by itself, which is
// also safe under CUDA-graph capture, so no workspace from metagrad's caching allocator is set (PyTorch
// dropped its explicit cuBLAS workspace for the same reason, pytorch/pytorch#113994). cuBLASLt is not used:
// for plain and strided-batched GEMMs cublasSgemm picks the same kernels, and metagrad does not yet fuse a
// bias or activation into a GEMM epilogue, the case where cuBLASLt would pay.
#pragma once

#if defined(__CUDACC__)

#include <cublas_v2.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <mutex>
#include <string>
#include <type_traits>
#include <unordered_map>

#include "../../core/error.hpp"
#include "../../core/shape.hpp"
#include "../../expr/matmul.hpp"
#include "runtime.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cuda {

namespace detail {
inline std::atomic<bool>& tf32_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}
}  // namespace detail

/// Allows (true) or forbids (false, the default) TensorFloat-32 tensor-core math in float32 matmuls on
/// CUDA. TF32 rounds the operands to a 10-bit mantissa (relative error about 5e-4 per product instead of
/// 6e-8) in exchange for several times the FLOP rate on Ampere and later; the accumulation stays FP32.
/// Takes effect for GEMMs queued after the call, on every device. double products are never affected.
/// (The NVIDIA_TF32_OVERRIDE environment variable of the CUDA libraries overrides this switch.)
inline void set_allow_tf32(bool allow) { detail::tf32_flag().store(allow, std::memory_order_relaxed); }

/// Whether float32 matmuls on CUDA may use TF32 tensor cores (false unless set_allow_tf32(true)).
inline bool allow_tf32() { return detail::tf32_flag().load(std::memory_order_relaxed); }

/// Name of a cuBLAS status ("CUBLAS_STATUS_INVALID_VALUE"), for messages.
inline const char* status_name(cublasStatus_t s) { return cublasGetStatusName(s); }

namespace detail {

// The per-device cuBLAS state. A handle is bound to the device current at cublasCreate, and its stream and
// math mode are handle state: both are re-set only when they change, under the device's mutex, so two host
// threads queueing GEMMs on one device never see each other's half-configured handle.
struct BlasDevice {
  std::mutex mutex;
  cublasHandle_t handle = nullptr;
  cudaStream_t stream = nullptr;
  bool stream_set = false;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

/// The cuBLAS state of `device`, created on first use. Never destroyed: at process exit the CUDA context
/// may already be gone when static destructors run, and cublasDestroy would then fail or crash (PyTorch
/// keeps its handles alive for the same reason).
/// @throws cuda_error when cublasCreate fails.
inline BlasDevice& blas_device(int device) {
  static auto* devices = new std::unordered_map<int, BlasDevice*>();
  static std::mutex m;
  std::lock_guard<std::mutex> lock(m);
  auto it = devices->find(device);
  if (it != devices->end()) return *it->second;
  DeviceGuard g(device);
  cublasHandle_t h = nullptr;
  const cublasStatus_t s = cublasCreate(&h);
  if (s != CUBLAS_STATUS_SUCCESS)
    throw cuda_error(std::string("cublasCreate on cuda:") + std::to_string(device) + " failed: " + status_name(s));
  auto* d = new BlasDevice();
  d->handle = h;
  (*devices)[device] = d;
  return *d;
}

template <class T>
std::string gemm_sizes(const GemmCall<T>& c) {
  return "batch " + std::to_string(c.batch) + ", m " + std::to_string(c.m) + ", n " + std::to_string(c.n) + ", k " +
         std::to_string(c.k) + ", trans_a " + (c.trans_a ? "1" : "0") + ", trans_b " + (c.trans_b ? "1" : "0") +
         ", lda " + std::to_string(c.lda) + ", ldb " + std::to_string(c.ldb) + ", ldc " + std::to_string(c.ldc) +
         ", strides " + std::to_string(c.stride_a) + "/" + std::to_string(c.stride_b) + "/" +
         std::to_string(c.stride_c);
}

/// cuBLAS takes m, n, k, the leading dimensions and the batch count as 32-bit int.
/// @throws shape_error naming matmul and the sizes when one of them exceeds INT_MAX (or is negative).
template <class T>
void check_gemm_limits(const GemmCall<T>& c) {
  const index_t v[] = {c.batch, c.m, c.n, c.k, c.lda, c.ldb, c.ldc};
  for (index_t x : v)
    if (x < 0 || x > index_t(INT_MAX))
      throw shape_error("matmul: cuBLAS takes sizes as 32-bit int and this product exceeds INT_MAX (" + gemm_sizes(c) +
                        "); split it into smaller products");
}

template <class T>
void check_blas(cublasStatus_t s, const char* call, const GemmCall<T>& c) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  throw cuda_error(std::string("matmul: ") + call + " failed on " + c.device.str() + ": " + status_name(s) + " (" +
                   cublasGetStatusString(s) + "; " + gemm_sizes(c) + ")");
}

// Typed entry points, so run_gemm is written once.
inline cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float* alpha, const float* a, int lda, const float* b, int ldb, const float* beta,
                           float* c, int ldc) {
  return cublasSgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const double* alpha, const double* a, int lda, const double* b, int ldb, const double* beta,
                           double* c, int ldc) {
  return cublasDgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline cublasStatus_t gemm_strided(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                   const float* alpha, const float* a, int lda, long long sa, const float* b, int ldb,
                                   long long sb, const float* beta, float* c, int ldc, long long sc, int batch) {
  return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
}
inline cublasStatus_t gemm_strided(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                   const double* alpha, const double* a, int lda, long long sa, const double* b,
                                   int ldb, long long sb, const double* beta, double* c, int ldc, long long sc,
                                   int batch) {
  return cublasDgemmStridedBatched(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
}

}  // namespace detail

/// Runs one GemmCall (row-major, strided-batched; see expr/matmul.hpp) with cuBLAS on call.device, queued
/// on stream(device): the call returns before the product is computed.
/// @pre a, b and c are device memory of call.device; every ld is at least the row length it describes.
/// @throws shape_error naming matmul and the sizes when m, n, k, a leading dimension or the batch exceeds
///         INT_MAX (cuBLAS's 32-bit sizes); cuda_error naming the cuBLAS call, its status and the sizes when
///         cuBLAS refuses or fails.
template <class T>
void run_gemm(const GemmCall<T>& c) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "metagrad: cuBLAS GEMM is float or double");
  detail::check_gemm_limits(c);
  if (c.batch == 0 || c.m == 0 || c.n == 0) return;
  const int device = c.device.index();
  DeviceGuard g(device);
  const cudaStream_t st = stream(device);
  auto& bd = detail::blas_device(device);
  std::lock_guard<std::mutex> lock(bd.mutex);
  if (!bd.stream_set || bd.stream != st) {
    detail::check_blas(cublasSetStream(bd.handle, st), "cublasSetStream", c);
    bd.stream = st;
    bd.stream_set = true;
  }
  const cublasMath_t math = std::is_same_v<T, float> && allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
  if (bd.math != math) {
    detail::check_blas(cublasSetMathMode(bd.handle, math), "cublasSetMathMode", c);
    bd.math = math;
  }
  // Row-major C (m x n, ldc) is column-major C^T (n x m, ldc); likewise for A and B. So C^T = op(B)^T op(A)^T
  // is a column-major GEMM with B first: n x m, inner k, and each operand keeps its own transpose flag.
  const cublasOperation_t ob = c.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t oa = c.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int m = static_cast<int>(c.n), n = static_cast<int>(c.m), k = static_cast<int>(c.k);
  int lda = static_cast<int>(c.ldb), ldb = static_cast<int>(c.lda);
  const int ldc = static_cast<int>(c.ldc);
  if (k == 0) {
    // C = beta C and the operands are not read, but cuBLAS still checks their leading dimensions, which an
    // empty operand may not meet (its row stride can be 0).
    const int ra = c.trans_b ? k : m, rb = c.trans_a ? n : k;
    lda = std::max(lda, std::max(1, ra));
    ldb = std::max(ldb, std::max(1, rb));
  }
  if (c.batch == 1) {
    detail::check_blas(detail::gemm(bd.handle, ob, oa, m, n, k, &c.alpha, c.b, lda, c.a, ldb, &c.beta, c.c, ldc),
                       std::is_same_v<T, float> ? "cublasSgemm" : "cublasDgemm", c);
  } else if (c.stride_c == 0) {
    // Every item writes the same C: the items must run one after another (as on the CPU, where beta = 1
    // then sums them), which a batched call does not promise.
    for (index_t i = 0; i < c.batch; ++i)
      detail::check_blas(detail::gemm(bd.handle, ob, oa, m, n, k, &c.alpha, c.b + i * c.stride_b, lda,
                                      c.a + i * c.stride_a, ldb, &c.beta, c.c, ldc),
                         std::is_same_v<T, float> ? "cublasSgemm" : "cublasDgemm", c);
  } else {
    detail::check_blas(detail::gemm_strided(bd.handle, ob, oa, m, n, k, &c.alpha, c.b, lda, c.stride_b, c.a, ldb,
                                            c.stride_a, &c.beta, c.c, ldc, c.stride_c, static_cast<int>(c.batch)),
                       std::is_same_v<T, float> ? "cublasSgemmStridedBatched" : "cublasDgemmStridedBatched", c);
  }
}

}  // namespace cuda
METAGRAD_NAMESPACE_END

#endif  // __CUDACC__
