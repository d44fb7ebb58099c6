// metagrad/backend/cpu/gemm.hpp — dense matrix products on the CPU, C = alpha * op(A) * op(B) + beta * C on
// row-major matrices, one at a time or strided-batched. A CBLAS (OpenBLAS) does the work when the build found
// one (METAGRAD_WITH_BLAS); otherwise a built-in cache-blocked kernel does, and it stays callable as
// builtin_gemm for benchmarks and tests. Include <metagrad/metagrad.hpp> instead.
//
// The built-in kernel is the Goto/BLIS scheme: op(B) is packed in slabs of KC x NC that stay in L2, op(A) in
// blocks of MC x KC, both cut into micro-panels (MR rows of A, NR columns of B, stored k-major) so the
// register-blocked micro-kernel reads two unit-stride streams whatever the transposes and leading dimensions.
// The micro-kernel keeps an MR x NR tile of C in vector registers (GCC/Clang vector extensions, so one source
// gives SSE2, AVX2 or AVX-512 code from whatever -m flags the program uses) and walks k, broadcasting one A
// value per row against NR/width vectors of B. Threads take whole tiles of C.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "../../core/config.hpp"
#include "../../core/error.hpp"
#include "../../core/shape.hpp"
#include "parallel.hpp"

#if defined(METAGRAD_WITH_BLAS)
#include <cblas.h>
#endif

METAGRAD_NAMESPACE_BEGIN
namespace cpu {

namespace detail {

// ---- micro-kernel geometry ------------------------------------------------------------------------------
// The accumulators (MR x NV vectors), NV vectors of B and one broadcast A value must fit the register file,
// or the tile spills and throughput halves: 12 x 2 + 3 of AVX-512's 32 registers; 6 x 2 + 3 of the 16 that
// AVX2 and SSE2 have (SSE2 needs one more for the product, as it has no fused multiply-add).
// Without AVX (x86-64's baseline SSE2), a broadcast from memory is a load, a shuffle and, SSE being
// two-operand, a register copy; packing each A value already repeated across a vector makes it one load
// (44 instead of 33 GFLOP/s in float on a Zen 4 core).
#if defined(__GNUC__) || defined(__clang__)
#if defined(__AVX512F__)
inline constexpr int gemm_vector_bytes = 64;
inline constexpr int gemm_mr = 12;
#elif defined(__AVX__)
inline constexpr int gemm_vector_bytes = 32;
inline constexpr int gemm_mr = 6;
#else
inline constexpr int gemm_vector_bytes = 16;
inline constexpr int gemm_mr = 6;
#endif
#if defined(__SSE2__) && !defined(__AVX__)
inline constexpr bool gemm_splat_a = true;
#else
inline constexpr bool gemm_splat_a = false;
#endif
inline constexpr int gemm_nv = 2;

template <class T>
struct GemmVector;
template <>
struct GemmVector<float> {
  typedef float type __attribute__((vector_size(gemm_vector_bytes)));
};
template <>
struct GemmVector<double> {
  typedef double type __attribute__((vector_size(gemm_vector_bytes)));
};
#else
// No vector extensions (MSVC): a 4 x 4 tile of scalars, which the compiler may still vectorise.
inline constexpr int gemm_mr = 4;
inline constexpr int gemm_nv = 4;
inline constexpr bool gemm_splat_a = false;
template <class T>
struct GemmVector {
  using type = T;
};
#endif

template <class T>
struct GemmShape {
  using V = typename GemmVector<T>::type;
  static constexpr int vl = static_cast<int>(sizeof(V) / sizeof(T));  // lanes per vector
  static constexpr int mr = gemm_mr;
  static constexpr int nv = gemm_nv;
  static constexpr int nr = nv * vl;
  static constexpr int splat = gemm_splat_a ? vl : 1;  // copies of each packed A value
  // KC: an A micro-panel (mr x KC, 12 KiB for AVX-512 floats) stays in L1 while every B micro-panel of the
  // slab streams past it. NC: the packed slab of B (KC x NC, 256 KiB in float or double) stays in L2 while
  // every A micro-panel of the block meets it. MC: the packed block of A (MC x KC, 1 MiB) is packed once per
  // slice of K and read once per slab; it may sit in L3. Measured on Zen 4, 2048^3 floats: with the slab
  // outermost instead (A repacked for every slab) the kernel lost 15%.
  static constexpr index_t kc = sizeof(T) == 4 ? 256 : 128;
  static constexpr index_t nc = (256 / nr) * nr;
  static constexpr index_t mc = (1024 / splat / mr) * mr;
};

// The least work, in multiply-adds, worth a thread of its own: waking a team costs microseconds, as long as
// a 64 x 64 x 64 product takes.
inline constexpr double gemm_parallel_work = 262144.0;

template <class V, class T>
METAGRAD_INLINE V gemm_load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));  // any alignment; compiles to one vector load
  return v;
}
template <class V, class T>
METAGRAD_INLINE void gemm_store(T* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}

// The micro-kernel is compiled on its own: inlined into the blocking loops, GCC 12 allocated registers so that
// every FMA took its B operand from memory (18 loads per k instead of 8), which cost a third of the speed.
#if defined(__GNUC__) || defined(__clang__)
#define METAGRAD_GEMM_NOINLINE __attribute__((noinline))
#else
#define METAGRAD_GEMM_NOINLINE
#endif

/// c[r * ldc + j] = alpha * sum_k a[(k * mr + r) * splat] * b[k * nr + j] + beta * c[r * ldc + j] for
/// r < Rows and j < nr; beta == 0 writes without reading c. a and b are packed micro-panels. Rows < mr serves the last
/// rows of C without computing (and discarding) the missing ones: with M = 1 that would be 12 times the work.
template <class T, int Rows>
METAGRAD_GEMM_NOINLINE void gemm_micro_kernel(index_t kc, const T* __restrict a, const T* __restrict b, T alpha, T beta,
                                              T* __restrict c, index_t ldc) {
  using S = GemmShape<T>;
  using V = typename S::V;
  constexpr int mr = Rows, nv = S::nv, vl = S::vl, nr = S::nr;
  V acc[mr][nv];
#if defined(__GNUC__) || defined(__clang__)
  // C is read and written only after the k loop; fetching it now hides the miss (C often lives in L3).
  for (int r = 0; r < mr; ++r)
    for (int v = 0; v < nv; ++v) __builtin_prefetch(c + r * ldc + v * vl, 1);
#endif
  for (int r = 0; r < mr; ++r)
    for (int v = 0; v < nv; ++v) acc[r][v] = V{};
  for (index_t k = 0; k < kc; ++k, a += S::mr * S::splat, b += nr) {
    V bv[nv];
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)  // nvcc warns on GCC's pragma
#pragma GCC unroll 4
#endif
    for (int v = 0; v < nv; ++v) bv[v] = gemm_load<V>(b + v * vl);
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#pragma GCC unroll 16
#endif
    for (int r = 0; r < mr; ++r) {
      if constexpr (S::splat > 1) {
        const V ar = gemm_load<V>(a + r * S::splat);
        for (int v = 0; v < nv; ++v) acc[r][v] += ar * bv[v];
      } else {
        const T ar = a[r];
        for (int v = 0; v < nv; ++v) acc[r][v] += ar * bv[v];
      }
    }
  }
  for (int r = 0; r < mr; ++r) {
    T* row = c + r * ldc;
    for (int v = 0; v < nv; ++v) {
      if (beta == T(0))
        gemm_store(row + v * vl, alpha * acc[r][v]);
      else
        gemm_store(row + v * vl, alpha * acc[r][v] + beta * gemm_load<V>(row + v * vl));
    }
  }
}

/// Packs op(A)[0, mc) x [0, kc) into micro-panels of mr rows, k-major: element (p*mr + r, k) goes to
/// (p*mr*kc + k*mr + r) * splat, repeated splat times. The rows a last, short panel lacks are left unwritten;
/// the micro-kernel for that many rows never reads them.
template <class T>
void gemm_pack_a(bool trans, index_t mc, index_t kc, const T* a, index_t lda, T* __restrict dst) {
  constexpr int mr = GemmShape<T>::mr, sp = GemmShape<T>::splat;
  for (index_t i0 = 0; i0 < mc; i0 += mr, dst += mr * sp * kc) {
    const int rows = static_cast<int>(std::min<index_t>(mr, mc - i0));
    if (trans) {  // op(A)(i, k) = a[k * lda + i]: each k is a contiguous run of rows
      for (index_t k = 0; k < kc; ++k)
        for (int r = 0; r < rows; ++r)
          for (int l = 0; l < sp; ++l) dst[(k * mr + r) * sp + l] = a[k * lda + i0 + r];
    } else {  // op(A)(i, k) = a[i * lda + k]: read each row once, write with stride mr (the panel is in L1)
      for (int r = 0; r < rows; ++r) {
        const T* src = a + (i0 + r) * lda;
        for (index_t k = 0; k < kc; ++k)
          for (int l = 0; l < sp; ++l) dst[(k * mr + r) * sp + l] = src[k];
      }
    }
  }
}

/// Packs op(B)[0, kc) x [0, nc) into micro-panels of nr columns, k-major (panel q, element (k, q*nr + j) at
/// q*nr*kc + k*nr + j). Columns past nc are zero: the micro-kernel computes them (into a scratch tile), and
/// stale bits there could be signalling NaNs.
template <class T>
void gemm_pack_b(bool trans, index_t kc, index_t nc, const T* b, index_t ldb, T* __restrict dst) {
  constexpr int nr = GemmShape<T>::nr;
  for (index_t j0 = 0; j0 < nc; j0 += nr, dst += nr * kc) {
    const int cols = static_cast<int>(std::min<index_t>(nr, nc - j0));
    if (cols < nr) std::fill(dst, dst + nr * kc, T(0));
    if (trans) {  // op(B)(k, j) = b[j * ldb + k]
      for (int j = 0; j < cols; ++j) {
        const T* src = b + (j0 + j) * ldb;
        for (index_t k = 0; k < kc; ++k) dst[k * nr + j] = src[k];
      }
    } else if (cols == nr) {  // op(B)(k, j) = b[k * ldb + j]: whole rows of the panel at once
      for (index_t k = 0; k < kc; ++k) std::memcpy(dst + k * nr, b + k * ldb + j0, sizeof(T) * nr);
    } else {
      for (index_t k = 0; k < kc; ++k)
        for (int j = 0; j < cols; ++j) dst[k * nr + j] = b[k * ldb + j0 + j];
    }
  }
}

// Packing buffers, one per thread, grown only when too small: after the first product of a given size a
// thread allocates nothing. OpenMP keeps its worker threads alive, so their buffers persist too.
struct GemmScratch {
  static constexpr std::size_t alignment = 64;
  void* data = nullptr;
  std::size_t bytes = 0;
  GemmScratch() = default;
  GemmScratch(const GemmScratch&) = delete;
  GemmScratch& operator=(const GemmScratch&) = delete;
  ~GemmScratch() {
    if (data) ::operator delete (data, std::align_val_t{alignment});
  }
  void* reserve(std::size_t n) {
    if (n > bytes) {
      if (data) ::operator delete (data, std::align_val_t{alignment});
      data = nullptr;
      bytes = 0;
      data = ::operator new (n, std::align_val_t{alignment});
      bytes = n;
    }
    return data;
  }
};
inline GemmScratch& gemm_scratch() {
  thread_local GemmScratch s;
  return s;
}

// Splits [0, n) into ceil(n / step) nearly equal blocks, each a multiple of `unit`: a K of 300 runs as
// 152 + 148, not 256 + 44, so no block is left with too little work to hide the kernel's fixed cost.
inline index_t gemm_balanced_step(index_t n, index_t step, index_t unit) {
  const index_t blocks = (n + step - 1) / step;
  const index_t even = (n + blocks - 1) / blocks;
  return std::min(step, (even + unit - 1) / unit * unit);
}

/// C = beta * C over M x N (beta == 0 writes zeros without reading C).
template <class T>
void gemm_scale(index_t M, index_t N, T beta, T* C, index_t ldc) {
  if (beta == T(1) || M == 0 || N == 0) return;
  parallel_for(
      M,
      [&](index_t i0, index_t i1) {
        for (index_t i = i0; i < i1; ++i) {
          T* row = C + i * ldc;
          if (beta == T(0))
            std::fill(row, row + N, T(0));
          else
            for (index_t j = 0; j < N; ++j) row[j] *= beta;
        }
      },
      N, 1);
}

template <class T>
using GemmKernel = void (*)(index_t, const T*, const T*, T, T, T*, index_t);

// gemm_micro_kernel<T, 1> ... <T, mr>, indexed by rows - 1.
template <class T, std::size_t... I>
constexpr std::array<GemmKernel<T>, sizeof...(I)> gemm_kernels(std::index_sequence<I...>) {
  return {&gemm_micro_kernel<T, static_cast<int>(I) + 1>...};
}

/// The built-in kernel over the tile rows [i0, i1) x columns [j0, j1) of C, on the calling thread.
/// @pre K > 0; the arguments were checked.
template <class T>
void gemm_tile(bool trans_a, bool trans_b, index_t i0, index_t i1, index_t j0, index_t j1, index_t K, T alpha,
               const T* A, index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc) {
  using S = GemmShape<T>;
  constexpr int mr = S::mr, nr = S::nr;
  const index_t kc_step = gemm_balanced_step(K, S::kc, 8);
  const index_t nc_step = gemm_balanced_step(j1 - j0, S::nc, nr);
  const index_t mc_step = gemm_balanced_step(i1 - i0, S::mc, mr);
  const index_t a_elems = (mc_step + mr - 1) / mr * mr * kc_step * S::splat;
  const index_t b_elems = (nc_step + nr - 1) / nr * nr * kc_step;
  const std::size_t a_bytes = (sizeof(T) * a_elems + 63) / 64 * 64;
  char* buf = static_cast<char*>(gemm_scratch().reserve(a_bytes + sizeof(T) * b_elems));
  T* ap = reinterpret_cast<T*>(buf);
  T* bp = reinterpret_cast<T*>(buf + a_bytes);
  alignas(64) T edge[mr * nr];
  static constexpr auto kernels = gemm_kernels<T>(std::make_index_sequence<mr>{});

  for (index_t ic = i0; ic < i1; ic += mc_step) {
    const index_t mc = std::min(mc_step, i1 - ic);
    for (index_t pc = 0; pc < K; pc += kc_step) {
      const index_t kc = std::min(kc_step, K - pc);
      // Later slices of K add onto what the first one stored.
      const T beta_k = pc == 0 ? beta : T(1);
      gemm_pack_a(trans_a, mc, kc, trans_a ? A + pc * lda + ic : A + ic * lda + pc, lda, ap);
      for (index_t jc = j0; jc < j1; jc += nc_step) {
        const index_t nc = std::min(nc_step, j1 - jc);
        gemm_pack_b(trans_b, kc, nc, trans_b ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, bp);
        for (index_t ir = 0; ir < mc; ir += mr) {
          const T* a_panel = ap + ir * kc * S::splat;
          const index_t rows = std::min<index_t>(mr, mc - ir);
          for (index_t jr = 0; jr < nc; jr += nr) {
            const T* b_panel = bp + jr * kc;
            const index_t cols = std::min<index_t>(nr, nc - jr);
            T* c = C + (ic + ir) * ldc + jc + jr;
            if (rows == mr && cols == nr) {
              gemm_micro_kernel<T, mr>(kc, a_panel, b_panel, alpha, beta_k, c, ldc);
            } else if (cols == nr) {
              kernels[rows - 1](kc, a_panel, b_panel, alpha, beta_k, c, ldc);
            } else {  // the last columns: the rows' full width into a buffer, then the columns that exist
              kernels[rows - 1](kc, a_panel, b_panel, T(1), T(0), edge, nr);
              for (index_t r = 0; r < rows; ++r)
                for (index_t j = 0; j < cols; ++j) {
                  T& out = c[r * ldc + j];
                  out = beta_k == T(0) ? alpha * edge[r * nr + j] : alpha * edge[r * nr + j] + beta_k * out;
                }
            }
          }
        }
      }
    }
  }
}

/// The built-in kernel over all of C, on up to `threads` threads, each computing whole tiles of C.
/// @pre M, N, K > 0; the arguments were checked.
template <class T>
void gemm_builtin_run(int threads, bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A,
                      index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc) {
  using S = GemmShape<T>;
  const index_t mu = (M + S::mr - 1) / S::mr, nu = (N + S::nr - 1) / S::nr;  // micro-tiles per side
  // A gm x gn grid with one tile per thread, as square as the micro-tiles allow: each thread packs the
  // parts of A and B its tile needs, and a square tile does the most multiply-adds per element packed.
  index_t gm = 1, gn = 1;
  for (int t = threads; t > 1 && gm * gn == 1; --t) {
    double best = 0;
    for (index_t m = 1; m <= t; ++m) {
      if (t % m != 0 || m > mu || t / m > nu) continue;
      const double rows = static_cast<double>((mu + m - 1) / m * S::mr);
      const double cols = static_cast<double>((nu + t / m - 1) / (t / m) * S::nr);
      const double score = rows * cols / (rows + cols);
      if (score > best) best = score, gm = m, gn = t / m;
    }
  }
  if (gm * gn == 1) {
    gemm_tile(trans_a, trans_b, 0, M, 0, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const index_t tile_m = (mu + gm - 1) / gm * S::mr, tile_n = (nu + gn - 1) / gn * S::nr;
  // One tile per block: a weight of parallel_grain makes parallel_for hand each thread exactly one.
  parallel_for(
      gm * gn,
      [&](index_t t0, index_t t1) {
        for (index_t t = t0; t < t1; ++t) {
          const index_t i0 = (t / gn) * tile_m, j0 = (t % gn) * tile_n;
          if (i0 >= M || j0 >= N) continue;
          gemm_tile(trans_a, trans_b, i0, std::min(M, i0 + tile_m), j0, std::min(N, j0 + tile_n), K, alpha, A, lda, B,
                    ldb, beta, C, ldc);
        }
      },
      parallel_grain, 1);
}

/// Threads a product of `work` multiply-adds may use: at least gemm_parallel_work each, and one inside a
/// parallel region (nested teams would only add overhead).
inline int gemm_threads(double work) {
  if (work < 2 * gemm_parallel_work) return 1;
#if defined(_OPENMP)
  if (omp_in_parallel()) return 1;
#endif
  return static_cast<int>(std::min<double>(num_threads(), work / gemm_parallel_work));
}

// Whether batch items of `work` multiply-adds each go to one thread, side by side: those too small for more
// than one thread each. OpenBLAS runs products of at most 2^18 multiply-adds on the calling thread
// (SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD in its interface/gemm.c); a larger call would start its
// own threads under ours, so with CBLAS only those go side by side.
inline bool gemm_batch_side_by_side(double work) {
#if defined(METAGRAD_WITH_BLAS)
  return work <= gemm_parallel_work;
#else
  return work < 2 * gemm_parallel_work;
#endif
}

inline std::string gemm_sizes(index_t M, index_t N, index_t K, bool trans_a, bool trans_b) {
  return "(M = " + std::to_string(M) + ", N = " + std::to_string(N) + ", K = " + std::to_string(K) +
         ", trans_a = " + (trans_a ? "true" : "false") + ", trans_b = " + (trans_b ? "true" : "false") + ")";
}

// Checks one stored operand: `rows` x `cols` as stored, row stride `ld`. BLAS asks ld >= max(1, cols) even
// of empty matrices; here an empty operand may have any ld (a 4 x 0 tensor naturally has row stride 0), and
// the BLAS call is skipped for it.
inline void gemm_check_ld(const char* name, index_t rows, index_t cols, index_t ld, index_t M, index_t N, index_t K,
                          bool trans_a, bool trans_b) {
  if (rows > 0 && cols > 0 && ld < cols)
    throw error(std::string("matmul: leading dimension ld") + name + " = " + std::to_string(ld) +
                " is smaller than the " + std::to_string(cols) + " columns of " +
                static_cast<char>(name[0] - 'a' + 'A') + " as stored " + gemm_sizes(M, N, K, trans_a, trans_b));
}

inline void gemm_check(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, index_t lda, index_t ldb,
                       index_t ldc) {
  if (M < 0 || N < 0 || K < 0) throw error("matmul: negative matrix size " + gemm_sizes(M, N, K, trans_a, trans_b));
  gemm_check_ld("a", trans_a ? K : M, trans_a ? M : K, lda, M, N, K, trans_a, trans_b);
  gemm_check_ld("b", trans_b ? N : K, trans_b ? K : N, ldb, M, N, K, trans_a, trans_b);
  gemm_check_ld("c", M, N, ldc, M, N, K, trans_a, trans_b);
}

template <class T>
constexpr void gemm_check_type() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "metagrad::cpu::gemm: matrix products are implemented for float and double only");
}

#if defined(METAGRAD_WITH_BLAS)
inline bool gemm_fits_blas_int(index_t M, index_t N, index_t K, index_t lda, index_t ldb, index_t ldc) {
  constexpr index_t lim = std::numeric_limits<int>::max();
  return M <= lim && N <= lim && K <= lim && lda <= lim && ldb <= lim && ldc <= lim;
}

/// One CBLAS call. @pre M, N, K > 0 and the leading dimensions are valid for BLAS.
template <class T>
void gemm_cblas(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A, index_t lda,
                const T* B, index_t ldb, T beta, T* C, index_t ldc) {
  // A single row or column may carry any stride here, but BLAS checks ld >= columns regardless.
  const index_t ca = trans_a ? M : K, cb = trans_b ? K : N;
  lda = std::max(lda, ca);
  ldb = std::max(ldb, cb);
  ldc = std::max(ldc, N);
  const auto ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
                static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
  else
    cblas_dgemm(CblasRowMajor, ta, tb, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
                static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}
#endif

}  // namespace detail

/// C = alpha * op(A) * op(B) + beta * C with the built-in kernel, whether or not the build has a CBLAS
/// (for benchmarks and tests). Same contract as gemm().
template <class T>
void builtin_gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A, index_t lda,
                  const T* B, index_t ldb, T beta, T* C, index_t ldc) {
  detail::gemm_check_type<T>();
  detail::gemm_check(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  // As in BLAS, alpha == 0 does not read A or B.
  if (K == 0 || alpha == T(0)) return detail::gemm_scale(M, N, beta, C, ldc);
  const double work = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  detail::gemm_builtin_run(detail::gemm_threads(work), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/// C = alpha * op(A) * op(B) + beta * C on row-major matrices, where op(X) is X or its transpose.
///
/// op(A) is M x K, op(B) is K x N, C is M x N. lda, ldb and ldc are the row strides (in elements) of the
/// matrices as stored: A is stored M x K, or K x M when trans_a; B is stored K x N, or N x K when trans_b.
/// beta == 0 makes C write-only (NaN or infinity already in C does not propagate) and alpha == 0 reads
/// neither A nor B, as in BLAS. K == 0 gives C = beta * C. Runs CBLAS (cblas_sgemm / cblas_dgemm) when the
/// build defines METAGRAD_WITH_BLAS, the built-in kernel otherwise; both use the CPU threads
/// (set_num_threads for the built-in kernel, the BLAS library's own setting for CBLAS).
/// @pre T is float or double (a static_assert says so otherwise); C does not overlap A or B.
/// @throws metagrad::error naming "matmul" and the sizes when a size is negative or a leading dimension is
///         smaller than the columns of its non-empty matrix as stored.
template <class T>
void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A, index_t lda, const T* B,
          index_t ldb, T beta, T* C, index_t ldc) {
  detail::gemm_check_type<T>();
#if defined(METAGRAD_WITH_BLAS)
  detail::gemm_check(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == T(0)) return detail::gemm_scale(M, N, beta, C, ldc);
  if (detail::gemm_fits_blas_int(M, N, K, lda, ldb, ldc))
    return detail::gemm_cblas(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
  builtin_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/// gemm() over `batch` independent products: item b reads A + b * stride_a and B + b * stride_b and updates
/// C + b * stride_c (strides in elements). A stride of 0 for A or B broadcasts one matrix to every item.
/// Each item is computed exactly as gemm() would compute it alone. Items too small to use several threads
/// each (up to about 2^18 multiply-adds, 64^3) run side by side on the CPU threads; larger ones run one
/// after another, each threaded.
/// @pre as gemm(); the batch items of C do not overlap one another.
/// @throws metagrad::error as gemm(), and for a negative batch or stride_c == 0 with batch > 1 (every item
///         would write the same matrix).
template <class T>
void gemm_batched(index_t batch, bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A,
                  index_t lda, index_t stride_a, const T* B, index_t ldb, index_t stride_b, T beta, T* C, index_t ldc,
                  index_t stride_c) {
  detail::gemm_check_type<T>();
  detail::gemm_check(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (batch < 0) throw error("matmul: negative batch size " + std::to_string(batch));
  if (batch == 0 || M == 0 || N == 0) return;
  if (batch > 1 && stride_c == 0)
    throw error("matmul: batched output with stride 0 would have every item of the batch of " + std::to_string(batch) +
                " write the same matrix " + detail::gemm_sizes(M, N, K, trans_a, trans_b));
  const double work = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  if (!detail::gemm_batch_side_by_side(work) || K == 0 || alpha == T(0)) {
    for (index_t b = 0; b < batch; ++b)
      gemm(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb, beta, C + b * stride_c, ldc);
    return;
  }
  // Concurrent calls into OpenBLAS are safe: its threaded builds lock the pool its buffers come from.
  const index_t weight = std::max<index_t>(1, static_cast<index_t>(work) / 8);
  parallel_for(
      batch,
      [&](index_t b0, index_t b1) {
        for (index_t b = b0; b < b1; ++b) {
          const T* a = A + b * stride_a;
          const T* bm = B + b * stride_b;
          T* c = C + b * stride_c;
#if defined(METAGRAD_WITH_BLAS)
          if (detail::gemm_fits_blas_int(M, N, K, lda, ldb, ldc)) {
            detail::gemm_cblas(trans_a, trans_b, M, N, K, alpha, a, lda, bm, ldb, beta, c, ldc);
            continue;
          }
#endif
          detail::gemm_builtin_run(1, trans_a, trans_b, M, N, K, alpha, a, lda, bm, ldb, beta, c, ldc);
        }
      },
      weight, 1);
}

}  // namespace cpu
METAGRAD_NAMESPACE_END

#undef METAGRAD_GEMM_NOINLINE
