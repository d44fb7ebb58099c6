// metagrad/backend/cpu.hpp — umbrella of the CPU backend: threads, the fused elementwise loop driver,
// reductions and evaluation into tensors.
#pragma once

#include "../expr.hpp"
#include "cpu/assign.hpp"
#include "cpu/batch_norm.hpp"
#include "cpu/conv.hpp"
#include "cpu/elementwise.hpp"
#include "cpu/gemm.hpp"
#include "cpu/matmul.hpp"
#include "cpu/parallel.hpp"
#include "cpu/pool.hpp"
#include "cpu/reduce.hpp"
