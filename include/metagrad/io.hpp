// metagrad/io.hpp — umbrella of the io layer: atomic file writes, the IDX format and MNIST-family loading,
// safetensors reading and writing, CSV reading, and the in-memory dataset and prefetching batch loader.
// Tensors read here are evaluated and converted by the CPU backend, which comes along.
// gzip-compressed IDX files need zlib (METAGRAD_WITH_ZLIB, set by the CMake target when zlib is found).
#pragma once

#include "backend/cpu.hpp"
#include "core.hpp"
#include "io/atomic_file.hpp"
#include "io/csv.hpp"
#include "io/dataset.hpp"
#include "io/idx.hpp"
#include "io/safetensors.hpp"
