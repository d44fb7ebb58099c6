// metagrad/cuda.hpp — umbrella of the CUDA backend. Under nvcc, <metagrad/metagrad.hpp> already carries it
// (runtime and caching allocator, fused kernels, reductions, cuBLAS); this header says so at the point
// of use. In a file compiled by a plain C++ compiler it adds nothing, and asking such a file for a CUDA
// device throws device_error saying to compile it with nvcc.
#pragma once

#include "metagrad.hpp"
