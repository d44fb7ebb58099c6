// metagrad/expr/reduce.hpp — reductions as boundary nodes: sum, mean, prod, max, min, argmax, argmin,
// all, any, var, std, logsumexp and norm, over all axes or any set of axes, with or without keepdims.
// The elementwise input is fused into the reduction loop (sum(square(x - y)) makes no temporary); the
// result is materialised once, and written straight into the destination when the reduction is the root
// of an assignment. Include <metagrad/expr.hpp> instead.
#pragma once

#include <concepts>
#include <string>
#include <tuple>
#include <type_traits>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "../ops/reduction.hpp"
#include "node.hpp"
#include "plan.hpp"

METAGRAD_NAMESPACE_BEGIN

/// Tag asking a reduction to keep the reduced axes with extent 1: sum(x, {1}, keepdims).
struct KeepDims {};
inline constexpr KeepDims keepdims{};

/// Reduction of operand A over K axes with reducer Red; rank A::rank when Keep, else A::rank - K.
template <class Red, class A, int K, bool Keep>
class ReduceExpr
    : public ExprBase<ReduceExpr<Red, A, K, Keep>>,
      public BoundaryBase<typename Red::template out_t<typename std::remove_cvref_t<A>::value_type>,
                          // (clamped so that too many axes reach the static_assert below)
                          Keep ? std::remove_cvref_t<A>::rank
                               : (std::remove_cvref_t<A>::rank >= K ? std::remove_cvref_t<A>::rank - K : 0)> {
  using AE = std::remove_cvref_t<A>;
  static constexpr int RI = AE::rank;
  using in_type = typename AE::value_type;

 public:
  using value_type = typename Red::template out_t<in_type>;
  static constexpr int rank = Keep ? RI : RI - K;
  static_assert(K <= RI, "metagrad: more reduction axes than the expression has dimensions");

  /// @throws index_error for an axis out of range or named twice.
  ReduceExpr(Red red, A a, const Array<int, K>& axes) : red_(red), a_(std::forward<A>(a)) {
    for (int d = 0; d < RI; ++d) mask_[d] = false;
    for (int i = 0; i < K; ++i) {
      const int ax = normalize_axis(axes[i], RI, Red::name);
      if (mask_[ax]) throw index_error(std::string(Red::name) + ": axis " + std::to_string(ax) + " named twice");
      mask_[ax] = true;
    }
  }

  Shape<rank> shape() const { return out_shape(a_.shape()); }
  const AE& operand() const { return a_; }
  const Red& reducer() const { return red_; }
  const Array<bool, RI>& reduced_axes() const { return mask_; }
  static constexpr bool keeps_dims = Keep;
  auto children() const { return detail::refs(a_); }
  bool same_params(const ReduceExpr& o) const {
    return detail::bits_equal(red_, o.red_) && detail::bits_equal(mask_, o.mask_);
  }

  /// Writes the reduction into `dst` (re-allocated when its shape differs).
  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == rank);
    const auto in = a_.shape();
    const auto os = out_shape(in);
    check_nonempty(in);
    const Device dev = detail::operands_device(*this, Red::name).value_or(Device::cpu());
    detail::prepare_destination(dst, os, dev);
    const auto plan = lower_expr(a_, in);
    bool alias = false;
    if (os.numel() > 0) {  // an empty dst has no memory (data() is null) and cannot alias
      // The bytes dst spans through its strides (a strided destination reaches past numel elements).
      const auto r = offset_range(os, dst.strides());
      const char* lo = reinterpret_cast<const char*>(dst.data() + r.lo);
      const char* hi = reinterpret_cast<const char*>(dst.data() + r.hi + 1);
      plan.visit_leaves(
          [&](const void*, const void* l, const void* h, const auto&, bool) {
            alias |= !(static_cast<const char*>(h) <= lo || static_cast<const char*>(l) >= hi);
          },
          false, in);
    }
    if (alias) {
      // The input reads the destination: reduce into fresh memory, then copy into dst's own memory, so that
      // other handles and views of it see the result (as `x = x.t()` does for elementwise expressions).
      Tensor<value_type, RD> tmp;
      tmp.allocate(os, dev);
      run_reduction(dev, red_, plan, in, mask_, tmp.data(), ost_for(tmp));
      dst.assign(tmp);
      return;
    }
    run_reduction(dev, red_, plan, in, mask_, dst.data(), ost_for(dst));
  }

 private:
  template <int RD>
  Strides<RI> ost_for(const Tensor<value_type, RD>& t) const {
    Strides<RI> ost{};
    for (int d = 0, o = 0; d < RI; ++d) {
      if (Keep)
        ost[d] = t.strides()[d];
      else if (!mask_[d])
        ost[d] = t.strides()[o++];
    }
    return ost;
  }
  Shape<rank> out_shape(const Shape<RI>& in) const {
    Shape<rank> s;
    for (int d = 0, o = 0; d < RI; ++d) {
      if (Keep)
        s[o++] = mask_[d] ? 1 : in[d];
      else if (!mask_[d])
        s[o++] = in[d];
    }
    return s;
  }
  void check_nonempty(const Shape<RI>& in) const {
    if constexpr (std::is_same_v<Red, ops::MaxReducer> || std::is_same_v<Red, ops::MinReducer> ||
                  std::is_same_v<Red, ops::ArgMaxReducer> || std::is_same_v<Red, ops::ArgMinReducer>) {
      for (int d = 0; d < RI; ++d)
        if (mask_[d] && in[d] == 0)
          throw shape_error(std::string(Red::name) + ": cannot reduce over axis " + std::to_string(d) +
                            " of extent 0 (shape " + to_string(in) + ")");
    }
  }

  Red red_;
  A a_;
  Array<bool, RI> mask_{};
};

namespace detail {
template <int R>
Array<int, R> all_axes() {
  Array<int, R> a{};
  for (int i = 0; i < R; ++i) a[i] = i;
  return a;
}
template <int K>
Array<int, K> axes_from(const int (&axes)[K]) {
  Array<int, K> a{};
  for (int i = 0; i < K; ++i) a[i] = axes[i];
  return a;
}
template <class Red, class A>
auto reduce_all(Red red, A&& a) {
  constexpr int R = expr_rank_v<A>;
  return ReduceExpr<Red, closure_t<A&&>, R, false>(red, std::forward<A>(a), all_axes<R>());
}
template <class Red, class A, int K>
auto reduce_axes(Red red, A&& a, const int (&axes)[K]) {
  return ReduceExpr<Red, closure_t<A&&>, K, false>(red, std::forward<A>(a), axes_from(axes));
}
template <class Red, class A, int K>
auto reduce_axes_keep(Red red, A&& a, const int (&axes)[K]) {
  return ReduceExpr<Red, closure_t<A&&>, K, true>(red, std::forward<A>(a), axes_from(axes));
}
}  // namespace detail

// Each reduction comes in four forms:
//   f(e)                      over all axes, rank 0
//   f(e, axis)                over one axis
//   f(e, {a, b})              over the listed axes (negative axes count from the end)
//   f(e, {a, b}, keepdims)    the same, keeping the reduced axes with extent 1
#define METAGRAD_REDUCTION_(fname, Red)                               \
  template <expression A>                                             \
  auto fname(A&& a) {                                                 \
    return detail::reduce_all(Red{}, std::forward<A>(a));             \
  }                                                                   \
  template <expression A>                                             \
  auto fname(A&& a, int axis) {                                       \
    const int axes[1] = {axis};                                       \
    return detail::reduce_axes(Red{}, std::forward<A>(a), axes);      \
  }                                                                   \
  template <expression A, int K>                                      \
  auto fname(A&& a, const int(&axes)[K]) {                            \
    return detail::reduce_axes(Red{}, std::forward<A>(a), axes);      \
  }                                                                   \
  template <expression A, int K>                                      \
  auto fname(A&& a, const int(&axes)[K], KeepDims) {                  \
    return detail::reduce_axes_keep(Red{}, std::forward<A>(a), axes); \
  }
/// Sum (double accumulation for floats, int64 for integers and bool).
METAGRAD_REDUCTION_(sum, ops::SumReducer)
/// Arithmetic mean (float for integer inputs; NaN over no elements).
METAGRAD_REDUCTION_(mean, ops::MeanReducer)
/// Product.
METAGRAD_REDUCTION_(prod, ops::ProdReducer)
/// Maximum / minimum, NaN-propagating. @throws shape_error over an empty axis.
METAGRAD_REDUCTION_(max, ops::MaxReducer)
METAGRAD_REDUCTION_(min, ops::MinReducer)
/// Index (int64, row-major within the reduced axes) of the first maximum / minimum.
METAGRAD_REDUCTION_(argmax, ops::ArgMaxReducer)
METAGRAD_REDUCTION_(argmin, ops::ArgMinReducer)
/// Whether all / any elements are non-zero.
METAGRAD_REDUCTION_(all, ops::AllReducer)
METAGRAD_REDUCTION_(any, ops::AnyReducer)
/// log(sum(exp(x))), computed stably in one pass.
METAGRAD_REDUCTION_(logsumexp, ops::LogSumExpReducer)
#undef METAGRAD_REDUCTION_

/// Variance with `ddof` delta degrees of freedom (0: population, NumPy's default; 1: sample, torch's).
/// The ddof of the all-axes form is a deduced integer, so that var(x, {1}) is the variance over axis 1 (a braced
/// list deduces nothing) rather than over all axes with ddof 1.
template <expression A>
auto var(A&& a) {
  return detail::reduce_all(ops::VarReducer{0}, std::forward<A>(a));
}
template <expression A, std::integral D>
auto var(A&& a, D ddof) {
  return detail::reduce_all(ops::VarReducer{static_cast<int>(ddof)}, std::forward<A>(a));
}
template <expression A, int K>
auto var(A&& a, const int (&axes)[K], int ddof = 0) {
  return detail::reduce_axes(ops::VarReducer{ddof}, std::forward<A>(a), axes);
}
template <expression A, int K>
auto var(A&& a, const int (&axes)[K], KeepDims, int ddof = 0) {
  return detail::reduce_axes_keep(ops::VarReducer{ddof}, std::forward<A>(a), axes);
}
/// Standard deviation, sqrt(var(...)) (named stddev: a function called std would make `std::` ambiguous
/// after `using namespace metagrad`).
template <expression A>
auto stddev(A&& a) {
  return detail::reduce_all(ops::StdReducer{0}, std::forward<A>(a));
}
template <expression A, std::integral D>
auto stddev(A&& a, D ddof) {
  return detail::reduce_all(ops::StdReducer{static_cast<int>(ddof)}, std::forward<A>(a));
}
template <expression A, int K>
auto stddev(A&& a, const int (&axes)[K], int ddof = 0) {
  return detail::reduce_axes(ops::StdReducer{ddof}, std::forward<A>(a), axes);
}
template <expression A, int K>
auto stddev(A&& a, const int (&axes)[K], KeepDims, int ddof = 0) {
  return detail::reduce_axes_keep(ops::StdReducer{ddof}, std::forward<A>(a), axes);
}

namespace detail {
inline ops::NormReducer norm_reducer(double p) {
  if (!(p >= 0)) throw error("norm: the order p must be >= 0 or +inf, got " + std::to_string(p));
  return ops::NormReducer{p};
}
}  // namespace detail

/// The p-norm (default 2); p = INFINITY is the max-norm, p = 0 counts non-zeros.
/// @throws metagrad::error for p < 0 or NaN. As for var, p of the all-axes form is deduced, so that norm(x, {1})
/// is the norm over axis 1.
template <expression A>
auto norm(A&& a) {
  return detail::reduce_all(detail::norm_reducer(2.0), std::forward<A>(a));
}
template <expression A, class P>
requires std::is_arithmetic_v<P>
auto norm(A&& a, P p) { return detail::reduce_all(detail::norm_reducer(static_cast<double>(p)), std::forward<A>(a)); }
template <expression A, int K>
auto norm(A&& a, const int (&axes)[K], double p = 2.0) {
  return detail::reduce_axes(detail::norm_reducer(p), std::forward<A>(a), axes);
}
template <expression A, int K>
auto norm(A&& a, const int (&axes)[K], KeepDims, double p = 2.0) {
  return detail::reduce_axes_keep(detail::norm_reducer(p), std::forward<A>(a), axes);
}

METAGRAD_NAMESPACE_END
