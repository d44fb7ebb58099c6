// metagrad/backend/cpu/matmul.hpp — the CPU GEMM of matmul nodes: one strided-batched GemmCall through
// cpu::gemm_batched (CBLAS when found, else the built-in kernel). backend/dispatch.hpp calls it for calls on
// the CPU. Include <metagrad/metagrad.hpp> instead.
#pragma once

#include "../../core/shape.hpp"
#include "../../expr/matmul.hpp"
#include "gemm.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cpu {

/// Runs one GemmCall on the CPU.
template <class T>
void run_gemm(const GemmCall<T>& c) {
  gemm_batched<T>(c.batch, c.trans_a, c.trans_b, c.m, c.n, c.k, c.alpha, c.a, c.lda, c.stride_a, c.b, c.ldb, c.stride_b,
                  c.beta, c.c, c.ldc, c.stride_c);
}

}  // namespace cpu
METAGRAD_NAMESPACE_END
