// The batch-normalised convolutional net the CPU and GPU whole-model tests train (tests/nn/test_bn_net.cpp,
// tests/cuda/test_batch_norm_model_cuda.cu): on 1 x 16 x 16 images, conv 3x3 (padding 1) -> 16 x 16,
// pool -> 8 x 8, conv 3x3 -> 6 x 6, pool -> 3 x 3; batch norm after both convolutions and the hidden linear
// layer.
#pragma once

#include <metagrad/metagrad.hpp>

namespace test_models {
template <class T>
auto bn_net_of() {
  namespace nn = metagrad::nn;
  return nn::sequential<struct bn_net_test>(
      nn::conv2d<T>(1, 8, 3, {.padding = 1}), nn::batch_norm2d<T>(8), nn::relu(), nn::max_pool2d(2),
      nn::conv2d<T>(8, 16, 3), nn::batch_norm2d<T>(16, {.eps = 1e-3, .momentum = 0.3}), nn::relu(), nn::max_pool2d(2),
      nn::flatten(), nn::linear<T>(16 * 3 * 3, 32), nn::batch_norm1d<T>(32), nn::relu(), nn::linear<T>(32, 10));
}
}  // namespace test_models
