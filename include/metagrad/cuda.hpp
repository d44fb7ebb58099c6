// metagrad/cuda.hpp — umbrella of the CUDA backend. Under nvcc it adds the fused-kernel launcher to
// everything <metagrad/metagrad.hpp> has; in a file compiled by a plain C++ compiler it adds nothing
// (asking such a file for a CUDA device throws device_error that says to compile it with nvcc).
#pragma once

#include "metagrad.hpp"

#if defined(__CUDACC__)
#include "backend/cuda/elementwise.hpp"
#endif
