// metagrad/nn/conv.hpp — convolution and pooling layers (Conv2d with PyTorch's weight layout, default
// initialisation and state dict keys; MaxPool2d, AvgPool2d, AdaptiveAvgPool2d) and Flatten. A Conv2d with a
// bias is one conv2d(x, w, b) node (expr/conv_bias.hpp) and an nn::relu() after it turns that node into the
// fused convolution + bias + ReLU. Include <metagrad/nn.hpp> instead.
#pragma once

#include <cmath>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "../expr/concat.hpp"
#include "../expr/conv.hpp"
// Before linear.hpp: nn::relu()'s call ::metagrad::relu(x) is a qualified name, looked up where the lambda
// is defined, so the fused relu overload must already be declared there.
#include "../expr/conv_bias.hpp"
#include "../expr/pool.hpp"
#include "../expr/view.hpp"
#include "init.hpp"
#include "layer_base.hpp"
#include "linear.hpp"
#include "module.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace nn {

template <class Tag, class T, bool Bias>
class Conv2d;

/// Description of a Conv2d layer (see conv2d()).
template <class T = float, bool Bias = true>
struct Conv2dSpec {
  index_t in_channels, out_channels;
  Size2 kernel;
  Conv2dOptions options;
  Init weight_init = Init::standard();
  Init bias_init = Init::standard();
  template <class Tag>
  using layer = Conv2d<Tag, T, Bias>;

  Conv2dSpec weight(Init i) const {
    Conv2dSpec s = *this;
    s.weight_init = i;
    return s;
  }
  Conv2dSpec bias(Init i) const {
    Conv2dSpec s = *this;
    s.bias_init = i;
    return s;
  }
};

/// 2-D convolution over NCHW input: weight [out, in / groups, kh, kw] and bias [out], initialised as
/// torch.nn.Conv2d's (kaiming uniform with a = sqrt(5); bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
template <class T = float>
Conv2dSpec<T, true> conv2d(index_t in_channels, index_t out_channels, Size2 kernel, Conv2dOptions o = {}) {
  return {in_channels, out_channels, kernel, o};
}
template <class T = float>
Conv2dSpec<T, false> conv2d(index_t in_channels, index_t out_channels, Size2 kernel, Conv2dOptions o, NoBias) {
  return {in_channels, out_channels, kernel, o};
}

template <class Tag, class T = float, bool Bias = true>
class Conv2d : public LayerBase {
 public:
  using weight_type = Param<RoleTag<Tag, role::weight>, T, 4>;
  using bias_type = Param<RoleTag<Tag, role::bias>, T, 1>;

  explicit Conv2d(const Conv2dSpec<T, Bias>& s) : spec_(s), weight_("weight"), bias_("bias") {
    const index_t g = s.options.groups;
    if (s.in_channels <= 0 || s.out_channels <= 0 || s.kernel.h <= 0 || s.kernel.w <= 0 || g <= 0 ||
        s.in_channels % g != 0 || s.out_channels % g != 0)
      throw error("conv2d layer: in_channels=" + std::to_string(s.in_channels) +
                  " and out_channels=" + std::to_string(s.out_channels) +
                  " must be positive multiples of groups=" + std::to_string(g) + ", and the kernel non-empty");
    Tensor<T, 4> w({s.out_channels, s.in_channels / g, s.kernel.h, s.kernel.w});
    if (s.weight_init.kind == Init::Kind::standard)
      kaiming_uniform_(w, std::sqrt(5.0));
    else
      s.weight_init.apply(w);
    weight_.set(w);
    if constexpr (Bias) {
      Tensor<T, 1> b(Shape<1>{{s.out_channels}});
      if (s.bias_init.kind == Init::Kind::standard) {
        const double bound = 1.0 / std::sqrt(fans(w.shape()).first);
        uniform_(b, -bound, bound);
      } else {
        s.bias_init.apply(b);
      }
      bias_.set(b);
    }
  }

  template <class X>
  auto operator()(X&& x) const {
    static_assert(std::remove_cvref_t<X>::rank == 4, "metagrad: nn::Conv2d needs NCHW input (rank 4)");
    if constexpr (Bias)
      return metagrad::conv2d(std::forward<X>(x), weight_, bias_, spec_.options);
    else
      return metagrad::conv2d(std::forward<X>(x), weight_, spec_.options);
  }

  const weight_type& weight() const { return weight_; }
  const bias_type& bias() const {
    static_assert(Bias, "metagrad: this Conv2d layer has no bias");
    return bias_;
  }
  auto params() const {
    if constexpr (Bias)
      return std::make_tuple(weight_, bias_);
    else
      return std::make_tuple(weight_);
  }
  void collect_state(std::vector<StateEntry>& out) const {
    out.push_back(state_entry(weight_.name(), weight_.value(), true));
    if constexpr (Bias) out.push_back(state_entry(bias_.name(), bias_.value(), true));
  }
  void set_prefix(const std::string& p) { prefix_params(params(), p); }
  std::string describe() const {
    const auto& o = spec_.options;
    std::string s = "Conv2d(" + std::to_string(spec_.in_channels) + ", " + std::to_string(spec_.out_channels) +
                    ", kernel_size=" + metagrad::detail::size2_text(spec_.kernel);
    if (!(o.stride == Size2(1))) s += ", stride=" + metagrad::detail::size2_text(o.stride);
    if (!(o.padding == Size2(0))) s += ", padding=" + metagrad::detail::size2_text(o.padding);
    if (!(o.dilation == Size2(1))) s += ", dilation=" + metagrad::detail::size2_text(o.dilation);
    if (o.groups != 1) s += ", groups=" + std::to_string(o.groups);
    if (!Bias) s += ", bias=false";
    return s + ")";
  }

 private:
  Conv2dSpec<T, Bias> spec_;
  weight_type weight_;
  bias_type bias_;
};

/// Max pooling over NCHW input (torch.nn.MaxPool2d; stride defaults to the kernel).
inline auto max_pool2d(Size2 kernel, std::optional<Size2> stride = std::nullopt, Size2 padding = 0) {
  const Size2 st = stride.value_or(kernel);
  auto f = [=](auto&& x) { return ::metagrad::max_pool2d(std::forward<decltype(x)>(x), kernel, st, padding); };
  return Lambda<decltype(f)>("MaxPool2d(kernel_size=" + metagrad::detail::size2_text(kernel) +
                                 ", stride=" + metagrad::detail::size2_text(st) +
                                 ", padding=" + metagrad::detail::size2_text(padding) + ")",
                             f);
}
/// Average pooling over NCHW input (torch.nn.AvgPool2d; padding counted in the average, as torch's default).
inline auto avg_pool2d(Size2 kernel, std::optional<Size2> stride = std::nullopt, Size2 padding = 0) {
  const Size2 st = stride.value_or(kernel);
  auto f = [=](auto&& x) { return ::metagrad::avg_pool2d(std::forward<decltype(x)>(x), kernel, st, padding); };
  return Lambda<decltype(f)>("AvgPool2d(kernel_size=" + metagrad::detail::size2_text(kernel) +
                                 ", stride=" + metagrad::detail::size2_text(st) +
                                 ", padding=" + metagrad::detail::size2_text(padding) + ")",
                             f);
}
/// Adaptive average pooling to an output of `size` (torch.nn.AdaptiveAvgPool2d).
inline auto adaptive_avg_pool2d(Size2 size) {
  auto f = [=](auto&& x) { return ::metagrad::adaptive_avg_pool2d(std::forward<decltype(x)>(x), size); };
  return Lambda<decltype(f)>("AdaptiveAvgPool2d(output_size=" + metagrad::detail::size2_text(size) + ")", f);
}
/// Flattens every axis from 1 on: [N, C, H, W] -> [N, C*H*W] (torch.nn.Flatten()).
inline auto flatten() {
  auto f = [](auto&& x) { return ::metagrad::flatten<1>(std::forward<decltype(x)>(x)); };
  return Lambda<decltype(f)>("Flatten()", f);
}

}  // namespace nn
METAGRAD_NAMESPACE_END
