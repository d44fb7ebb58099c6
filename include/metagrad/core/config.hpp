// metagrad/core/config.hpp — configuration macros shared by every header: the versioned namespace,
// the host/device annotation, forced inlining and the loop pragmas that make fused loops vectorise.
// Include <metagrad/core.hpp> (or <metagrad/metagrad.hpp>) instead of this file.
#pragma once

#include <cstddef>
#include <cstdint>

#define METAGRAD_VERSION_MAJOR 0
#define METAGRAD_VERSION_MINOR 1
#define METAGRAD_VERSION_PATCH 0

// The inline namespace v0 keeps two vendored copies of different versions from clashing at link time.
// A file compiled by nvcc gets v0_cuda: its evaluation code carries the CUDA paths that a plain C++ file's
// does not, and the same template instantiated both ways under one name would break the one-definition
// rule (the linker would keep one of them for both). Tensors therefore do not cross between nvcc and
// plain C++ translation units of one program; pass raw data, or keep the model in .cu files.
#if defined(__CUDACC__)
#define METAGRAD_NAMESPACE_BEGIN \
  namespace metagrad {           \
  inline namespace v0_cuda {
#else
#define METAGRAD_NAMESPACE_BEGIN \
  namespace metagrad {           \
  inline namespace v0 {
#endif
#define METAGRAD_NAMESPACE_END \
  }                            \
  }

// Everything a kernel touches is METAGRAD_HD: host and device under nvcc, plain C++ otherwise.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define METAGRAD_HD __host__ __device__
#define METAGRAD_DEVICE_COMPILER 1
#else
#define METAGRAD_HD
#define METAGRAD_DEVICE_COMPILER 0
#endif

// Fused element access must inline completely or the loop that drives it cannot vectorise.
#if defined(__CUDACC__)
#define METAGRAD_INLINE __forceinline__
#elif defined(__GNUC__) || defined(__clang__)
#define METAGRAD_INLINE inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define METAGRAD_INLINE __forceinline
#else
#define METAGRAD_INLINE inline
#endif

#define METAGRAD_STRINGIFY_(x) #x
#define METAGRAD_PRAGMA_(x) _Pragma(METAGRAD_STRINGIFY_(x))

// METAGRAD_SIMD_LOOP promises the compiler that the next loop carries no dependence between
// iterations (a fused elementwise loop reads element i and writes element i), so it vectorises
// without run-time alias checks. Exact in-place aliasing (y = y + 1) keeps that promise.
#if defined(_OPENMP)
#define METAGRAD_SIMD_LOOP METAGRAD_PRAGMA_(omp simd)
#elif defined(__clang__)
#define METAGRAD_SIMD_LOOP METAGRAD_PRAGMA_(clang loop vectorize(assume_safety))
#elif defined(__GNUC__)
#define METAGRAD_SIMD_LOOP METAGRAD_PRAGMA_(GCC ivdep)
#else
#define METAGRAD_SIMD_LOOP
#endif

// METAGRAD_SIMD_SUM(v) / METAGRAD_SIMD_SUM2(v, w): the next loop sums into v (and w) across iterations, a
// dependence the plain SIMD promise must not make; OpenMP's reduction clause vectorises it with per-lane
// partial sums (without OpenMP the loop stays scalar and exact in its order).
#if defined(_OPENMP)
#define METAGRAD_SIMD_SUM(v) METAGRAD_PRAGMA_(omp simd reduction(+ : v))
#define METAGRAD_SIMD_SUM2(v, w) METAGRAD_PRAGMA_(omp simd reduction(+ : v) reduction(+ : w))
#else
#define METAGRAD_SIMD_SUM(v)
#define METAGRAD_SIMD_SUM2(v, w)
#endif

#if defined(_OPENMP) && !defined(METAGRAD_WITH_OPENMP)
#define METAGRAD_WITH_OPENMP 1
#endif

#if defined(__CUDACC__) && !defined(METAGRAD_WITH_CUDA)
#define METAGRAD_WITH_CUDA 1
#endif
