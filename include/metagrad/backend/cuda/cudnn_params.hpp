// metagrad/backend/cuda/cudnn_params.hpp — the device-independent half of metagrad's cuDNN use: the key
// of the convolution algorithm cache (pass, dtype, math mode, geometry, device) and its hash, the 32-bit
// descriptor parameters of a convolution (cuDNN's legacy descriptors take int extents and strides, so a
// geometry beyond INT_MAX elements is refused here by name), and the mapping of a pooling onto a cuDNN
// pooling descriptor together with the reason when there is none (dilation, a ceil_mode window past
// cuDNN's floor geometry, an adaptive pool whose windows are not one uniform grid). Nothing here includes a
// CUDA header, so plain C++ tests check it. Include <metagrad/metagrad.hpp> (in a .cu file) instead.
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "../../core/error.hpp"
#include "../../core/shape.hpp"
#include "../../expr/conv.hpp"
#include "../../expr/pool.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cuda {

/// Element type of a cuDNN call, as a key field (cuDNN's own enum lives in cudnn.h).
enum class CudnnDtype : std::uint8_t { f32, f64 };

template <class T>
constexpr CudnnDtype cudnn_dtype_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "metagrad: cuDNN calls are float or double");
  return std::is_same_v<T, float> ? CudnnDtype::f32 : CudnnDtype::f64;
}

/// What an algorithm choice depends on: the same pass, dtype, math mode and geometry on the same device
/// always gets the same algorithm and workspace size, so the search runs once per key per process.
struct ConvAlgoKey {
  ConvPass pass = ConvPass::forward;
  CudnnDtype dtype = CudnnDtype::f32;
  bool tf32 = false;  ///< TF32 tensor-core math allowed (float only): other algorithms qualify
  Conv2dGeometry geom;
  int device = 0;
  bool operator==(const ConvAlgoKey&) const = default;
};

/// Hash of every field of a ConvAlgoKey (boost::hash_combine's mixing over the integers).
struct ConvAlgoKeyHash {
  std::size_t operator()(const ConvAlgoKey& k) const {
    std::size_t h = 0;
    auto mix = [&h](std::int64_t v) {
      h ^= std::hash<std::int64_t>{}(v) + std::size_t(0x9e3779b97f4a7c15ull) + (h << 6) + (h >> 2);
    };
    const Conv2dGeometry& g = k.geom;
    const std::int64_t v[] = {static_cast<std::int64_t>(k.pass),
                              static_cast<std::int64_t>(k.dtype),
                              k.tf32 ? 1 : 0,
                              k.device,
                              g.n,
                              g.c_in,
                              g.h,
                              g.w,
                              g.c_out,
                              g.kh,
                              g.kw,
                              g.oh,
                              g.ow,
                              g.stride.h,
                              g.stride.w,
                              g.padding.h,
                              g.padding.w,
                              g.dilation.h,
                              g.dilation.w,
                              g.groups};
    for (std::int64_t x : v) mix(x);
    return h;
  }
};

/// The int parameters of cuDNN's tensor, filter and convolution descriptors for one convolution: NCHW
/// extents of x, w (KCRS, K = c_out, C = c_in / groups) and y, padding, stride, dilation and group count.
struct CudnnConvParams {
  int x[4], w[4], y[4];
  int pad_h, pad_w, stride_h, stride_w, dil_h, dil_w, groups;
};

namespace detail {
inline bool fits_int(index_t v) { return v >= 0 && v <= index_t(INT_MAX); }
}  // namespace detail

/// The descriptor parameters of geometry g.
/// @throws shape_error naming conv2d and the shapes when a tensor of the convolution has more than INT_MAX
///         elements (cuDNN's legacy descriptors hold int strides; split the batch) or a parameter exceeds
///         INT_MAX.
inline CudnnConvParams cudnn_conv_params(const Conv2dGeometry& g) {
  const Shape<4> xs = g.input_shape(), ws = g.weight_shape(), ys = g.output_shape();
  const index_t scalars[] = {g.padding.h, g.padding.w, g.stride.h, g.stride.w, g.dilation.h, g.dilation.w, g.groups};
  bool ok = detail::fits_int(xs.numel()) && detail::fits_int(ws.numel()) && detail::fits_int(ys.numel());
  for (index_t v : scalars) ok = ok && detail::fits_int(v);
  if (!ok)
    throw shape_error("conv2d on CUDA: input " + to_string(xs) + ", weight " + to_string(ws) + ", output " +
                      to_string(ys) +
                      ": cuDNN takes extents and strides as 32-bit int and a tensor here has more than INT_MAX "
                      "elements; split the batch");
  CudnnConvParams p{};
  for (int d = 0; d < 4; ++d) {
    p.x[d] = static_cast<int>(xs[d]);
    p.w[d] = static_cast<int>(ws[d]);
    p.y[d] = static_cast<int>(ys[d]);
  }
  p.pad_h = static_cast<int>(g.padding.h);
  p.pad_w = static_cast<int>(g.padding.w);
  p.stride_h = static_cast<int>(g.stride.h);
  p.stride_w = static_cast<int>(g.stride.w);
  p.dil_h = static_cast<int>(g.dilation.h);
  p.dil_w = static_cast<int>(g.dilation.w);
  p.groups = static_cast<int>(g.groups);
  return p;
}

/// cuDNN's pooling modes metagrad uses (cudnnPoolingMode_t's values are chosen in cudnn.hpp).
enum class CudnnPoolMode : std::uint8_t { max, avg_include_pad, avg_exclude_pad };

/// A pooling as one cuDNN pooling descriptor, or (`exact` false) the reason cuDNN cannot compute exactly
/// metagrad's (PyTorch's) result, in which case metagrad's own kernel runs.
struct CudnnPoolParams {
  bool exact = false;
  const char* why_not = "";
  CudnnPoolMode mode = CudnnPoolMode::max;
  int window_h = 0, window_w = 0, pad_h = 0, pad_w = 0, stride_h = 0, stride_w = 0;
  int x[4] = {0, 0, 0, 0}, y[4] = {0, 0, 0, 0};
};

/// Maps pooling geometry g onto cuDNN. cuDNN's output extent is floor((in + 2 pad - k) / stride) + 1 with
/// symmetric padding and no dilation; a max window never takes a padded element and an average's divisor
/// is k_h k_w (include) or the count of input elements (exclude). metagrad's windows agree with that
/// exactly when the output extents are cuDNN's (a ceil_mode that adds no window): in floor mode every
/// window ends by in + pad, so PyTorch's clipped divisor is k_h k_w too. An adaptive pool maps when each
/// extent divides evenly (windows of in / out, stride in / out, no padding).
inline CudnnPoolParams cudnn_pool_params(const Pool2dGeometry& g) {
  CudnnPoolParams r;
  const Pool2dParams& p = g.p;
  const index_t all[] = {g.n * g.c * g.h * g.w, g.n * g.c * g.oh * g.ow};
  if (!detail::fits_int(all[0]) || !detail::fits_int(all[1])) {
    r.why_not = "a tensor has more than INT_MAX elements";
    return r;
  }
  index_t kh = p.kernel.h, kw = p.kernel.w, sh = p.stride.h, sw = p.stride.w, ph = p.padding.h, pw = p.padding.w;
  if (p.kind == PoolKind::adaptive_avg) {
    if (g.h % g.oh != 0 || g.w % g.ow != 0) {
      r.why_not = "adaptive windows of unequal sizes";
      return r;
    }
    kh = sh = g.h / g.oh;
    kw = sw = g.w / g.ow;
    ph = pw = 0;
    r.mode = CudnnPoolMode::avg_include_pad;
  } else {
    if (p.kind == PoolKind::max && (p.dilation.h != 1 || p.dilation.w != 1)) {
      r.why_not = "dilation";
      return r;
    }
    r.mode = p.kind == PoolKind::max ? CudnnPoolMode::max
             : p.count_include_pad   ? CudnnPoolMode::avg_include_pad
                                     : CudnnPoolMode::avg_exclude_pad;
  }
  const index_t floor_oh = metagrad::detail::pool_out_extent(g.h, kh, ph, sh, 1, false);
  const index_t floor_ow = metagrad::detail::pool_out_extent(g.w, kw, pw, sw, 1, false);
  if (floor_oh != g.oh || floor_ow != g.ow) {
    r.why_not = "a ceil_mode window beyond cuDNN's output geometry";
    return r;
  }
  const index_t scalars[] = {kh, kw, sh, sw, ph, pw};
  for (index_t v : scalars)
    if (!detail::fits_int(v)) {
      r.why_not = "a window parameter exceeds INT_MAX";
      return r;
    }
  r.exact = true;
  r.window_h = static_cast<int>(kh);
  r.window_w = static_cast<int>(kw);
  r.stride_h = static_cast<int>(sh);
  r.stride_w = static_cast<int>(sw);
  r.pad_h = static_cast<int>(ph);
  r.pad_w = static_cast<int>(pw);
  const index_t xd[4] = {g.n, g.c, g.h, g.w}, yd[4] = {g.n, g.c, g.oh, g.ow};
  for (int d = 0; d < 4; ++d) {
    r.x[d] = static_cast<int>(xd[d]);
    r.y[d] = static_cast<int>(yd[d]);
  }
  return r;
}

}  // namespace cuda
METAGRAD_NAMESPACE_END
