// metagrad/backend/cpu/matmul.hpp — the CPU answers to the hooks of boundary nodes in expr/: run_gemm (one
// strided-batched GEMM, through cpu::gemm_batched: CBLAS when found, else the built-in kernel) and run_fill
// (a plan evaluated into a buffer). Include <metagrad/metagrad.hpp> instead.
#pragma once

#include "../../core/shape.hpp"
#include "../../expr/matmul.hpp"
#include "elementwise.hpp"
#include "gemm.hpp"

METAGRAD_NAMESPACE_BEGIN

/// Runs one GemmCall on the CPU.
template <class T>
void run_gemm(const GemmCall<T>& c) {
  cpu::gemm_batched<T>(c.batch, c.trans_a, c.trans_b, c.m, c.n, c.k, c.alpha, c.a, c.lda, c.stride_a, c.b, c.ldb,
                       c.stride_b, c.beta, c.c, c.ldc, c.stride_c);
}

/// Evaluates `plan` (lowered at `shape`) into out.
template <class T, int R, class Plan>
void run_fill(T* out, const Strides<R>& strides, const Shape<R>& shape, const Plan& plan) {
  cpu::run_elementwise(out, strides, shape, plan);
}

METAGRAD_NAMESPACE_END
