// metagrad/metagrad.hpp — the umbrella header: everything the build can use (tensors, expressions,
// gradients, compiled programs, the CPU backend, io and nn). Include this one.
//
// metagrad is a header-only C++20 deep-learning library in which the computation graph is a C++ type:
// expressions build nodes, lowering turns them into trivially copyable plans, and each elementwise region
// runs as one fused loop (CPU) or kernel (CUDA).
#pragma once

#include "autodiff.hpp"
#include "backend/cpu.hpp"
#include "core.hpp"
#include "expr.hpp"
#include "graph.hpp"
#include "io.hpp"
#include "nn.hpp"

// Under nvcc the CUDA backend comes too (one source file carries both code paths).
#if defined(__CUDACC__)
#include "backend/cuda/elementwise.hpp"
#include "backend/cuda/matmul.hpp"
#include "backend/cuda/reduce.hpp"
#include "backend/cuda/runtime.hpp"
#endif

// Internal helper macros end here (STYLE.md); the METAGRAD_HD / METAGRAD_INLINE / namespace macros stay
// defined because user-written ops use them.
#undef METAGRAD_FLOAT_UNARY_OP_
