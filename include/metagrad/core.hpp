// metagrad/core.hpp — umbrella of the core layer: configuration, dtypes, shapes, devices, storage,
// Tensor, creation functions, the Philox generator, vectorisable math and printing.
#pragma once

#include "core/config.hpp"
#include "core/creation.hpp"
#include "core/device.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/expr_base.hpp"
#include "core/math.hpp"
#include "core/pack.hpp"
#include "core/philox.hpp"
#include "core/print.hpp"
#include "core/shape.hpp"
#include "core/storage.hpp"
#include "core/tensor.hpp"
