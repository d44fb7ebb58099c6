// metagrad/expr/view.hpp — views as expressions: permute / transpose / t, slice / select, squeeze /
// unsqueeze, broadcast_to / expand and reshape. A view never copies: over a tensor (or anything that
// lowers to one) it folds into the leaf's pointer and strides; over a computed expression it remaps
// indices inside the fused loop. Include <metagrad/expr.hpp> instead.
#pragma once

#include <limits>
#include <string>
#include <tuple>
#include <utility>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "elementwise.hpp"
#include "node.hpp"
#include "plan.hpp"

METAGRAD_NAMESPACE_BEGIN

/// Output axis i of an axis map reads child axis `from[i]`, or is a new axis of extent 1 when
/// from[i] < 0. Child axes not named must have extent 1 (they are squeezed away). This one node is
/// permute (RO == rank of the child, every axis named), squeeze and unsqueeze.
template <class A, int RO>
class AxisMapExpr : public ExprBase<AxisMapExpr<A, RO>> {
  using AE = std::remove_cvref_t<A>;
  static constexpr int RC = AE::rank;

 public:
  using value_type = typename AE::value_type;
  static constexpr int rank = RO;

  AxisMapExpr(A a, Array<int, RO> from, const char* op) : a_(std::forward<A>(a)), from_(from) {
    int named[RC > 0 ? RC : 1] = {};
    for (int i = 0; i < RO; ++i) {
      if (from_[i] >= RC) throw index_error(std::string(op) + ": axis " + std::to_string(from_[i]) + " out of range");
      if (from_[i] >= 0 && named[from_[i]]++)
        throw index_error(std::string(op) + ": axis " + std::to_string(from_[i]) + " appears twice");
    }
    // Only a squeeze reads the operand's shape here, so a permute or unsqueeze of an Input that is not
    // bound yet can be built (and differentiated) before the first run.
    bool squeezes = false;
    for (int c = 0; c < RC; ++c) squeezes |= !named[c];
    if (squeezes) {
      const auto cs = a_.shape();
      for (int c = 0; c < RC; ++c)
        if (!named[c] && cs[c] != 1)
          throw shape_error(std::string(op) + ": axis " + std::to_string(c) + " of shape " + to_string(cs) +
                            " has extent " + std::to_string(cs[c]) + ", not 1");
    }
  }
  /// Without checks: for maps derived from a checked one (gradients), where the operand may not be bound yet.
  struct unchecked_t {};
  AxisMapExpr(A a, Array<int, RO> from, unchecked_t) : a_(std::forward<A>(a)), from_(from) {}

  Shape<RO> shape() const {
    const auto cs = a_.shape();
    Shape<RO> s;
    for (int i = 0; i < RO; ++i) s[i] = from_[i] >= 0 ? cs[from_[i]] : 1;
    return s;
  }
  const AE& operand() const { return a_; }
  const Array<int, RO>& axes() const { return from_; }
  auto children() const { return detail::refs(a_); }
  bool same_params(const AxisMapExpr& o) const { return detail::bits_equal(from_, o.from_); }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    const auto cs = a_.shape();
    const auto own = shape();
    auto cp = lower_expr(a_, cs);
    if constexpr (is_leaf_plan_v<decltype(cp)>) {
      Strides<RO> st{};
      for (int i = 0; i < RO; ++i) st[i] = from_[i] >= 0 ? cp.strides[from_[i]] : 0;
      LeafPlan<value_type, RO> leaf{cp.ptr, st, is_contiguous(own, st)};
      return broadcast_plan(leaf, own, target);
    } else {
      AxisMapPlan<decltype(cp), RO> p{cp, {}, cs, true};
      int last = -1;
      for (int c = 0; c < RC; ++c) p.map[c] = -1;
      for (int i = 0; i < RO; ++i)
        if (from_[i] >= 0) {
          p.map[from_[i]] = i;
          p.order_kept &= from_[i] > last;
          last = from_[i];
        }
      return broadcast_plan(p, own, target);
    }
  }

 private:
  A a_;
  Array<int, RO> from_;
};

/// A strided window: along each axis, elements start, start + step, ... (`count` of them).
template <class A>
class SliceExpr : public ExprBase<SliceExpr<A>> {
  using AE = std::remove_cvref_t<A>;

 public:
  using value_type = typename AE::value_type;
  static constexpr int rank = AE::rank;

  /// @pre start/step/count already normalised and in range (see slice()).
  SliceExpr(A a, Array<index_t, rank> start, Array<index_t, rank> step, Shape<rank> count)
      : a_(std::forward<A>(a)), start_(start), step_(step), count_(count) {}

  Shape<rank> shape() const { return count_; }
  const AE& operand() const { return a_; }
  const Array<index_t, rank>& starts() const { return start_; }
  const Array<index_t, rank>& steps() const { return step_; }
  auto children() const { return detail::refs(a_); }
  bool same_params(const SliceExpr& o) const {
    return detail::bits_equal(start_, o.start_) && detail::bits_equal(step_, o.step_) &&
           detail::bits_equal(count_, o.count_);
  }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    const auto cs = a_.shape();
    if (!(cs == source_shape_)) check_source(cs);
    auto cp = lower_expr(a_, cs);
    if constexpr (is_leaf_plan_v<decltype(cp)>) {
      Strides<rank> st{};
      index_t off = 0;
      for (int d = 0; d < rank; ++d) {
        off += start_[d] * cp.strides[d];
        st[d] = cp.strides[d] * step_[d];
      }
      LeafPlan<value_type, rank> leaf{cp.ptr + (count_.numel() ? off : 0), st, is_contiguous(count_, st)};
      return broadcast_plan(leaf, count_, target);
    } else {
      return broadcast_plan(SlicePlan<decltype(cp)>{cp, start_, step_, cs}, count_, target);
    }
  }

  void set_source_shape(const Shape<rank>& s) { source_shape_ = s; }

 private:
  // The window was checked against the operand's shape when the slice was made; an operand that has
  // since changed shape (a re-assigned tensor) is checked again.
  void check_source(const Shape<rank>& cs) const {
    for (int d = 0; d < rank; ++d) {
      if (count_[d] == 0) continue;
      const index_t last = start_[d] + (count_[d] - 1) * step_[d];
      if (start_[d] < 0 || start_[d] >= cs[d] || last < 0 || last >= cs[d])
        throw shape_error("slice: the sliced expression now has shape " + to_string(cs) +
                          ", which the window no longer fits");
    }
  }
  A a_;
  Array<index_t, rank> start_, step_;
  Shape<rank> count_;
  Shape<rank> source_shape_{};
};

/// The operand's elements in row-major order with new extents. The extents (one may be -1) are resolved
/// against the operand's shape whenever the shape is needed, so a reshape of an Input adapts to each
/// binding (a flatten of a batch works for every batch size).
template <class A, int RO>
class ReshapeExpr : public ExprBase<ReshapeExpr<A, RO>> {
  using AE = std::remove_cvref_t<A>;

 public:
  using value_type = typename AE::value_type;
  static constexpr int rank = RO;

  /// @throws shape_error (when the shape is needed) if the sizes disagree or more than one extent is -1.
  ReshapeExpr(A a, Shape<RO> s) : a_(std::forward<A>(a)), spec_(s) {
    try {
      (void)resolve(a_.shape(), spec_);  // report a bad reshape where it is written, when the shape is known
    } catch (const unbound_error&) {
    }
  }

  Shape<RO> shape() const { return resolve(a_.shape(), spec_); }
  const AE& operand() const { return a_; }
  auto children() const { return detail::refs(a_); }
  bool same_params(const ReshapeExpr& o) const { return detail::bits_equal(spec_, o.spec_); }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    const auto cs = a_.shape();
    const auto shape = resolve(cs, spec_);
    auto cp = lower_expr(a_, cs);
    if constexpr (is_leaf_plan_v<decltype(cp)>) {
      const value_type* ptr = cp.ptr;
      if (!is_contiguous(cs, Strides<AE::rank>(cp.strides))) {
        // A non-contiguous tensor has no strided view with the new extents in general: copy it once
        // (torch.reshape does the same). A tensor operand needs clone(): constructing a Tensor from a
        // Tensor only copies the handle.
        if constexpr (is_tensor_v<AE>)
          copy_.get() = a_.clone();
        else
          copy_.get() = Tensor<value_type, AE::rank>(a_);
        ptr = copy_.get().data();
      }
      LeafPlan<value_type, RO> leaf{ptr, contiguous_strides(shape), true};
      return broadcast_plan(leaf, shape, target);
    } else {
      return broadcast_plan(ReshapePlan<decltype(cp), RO>{cp, contiguous_strides(shape), cs}, shape, target);
    }
  }

 private:
  template <int RC>
  static Shape<RO> resolve(const Shape<RC>& from, Shape<RO> s) {
    int infer = -1;
    index_t known = 1;
    for (int d = 0; d < RO; ++d) {
      if (s[d] == -1) {
        if (infer >= 0) throw shape_error("reshape: only one extent may be -1, got " + to_string(s));
        infer = d;
      } else if (s[d] < 0) {
        throw shape_error("reshape: negative extent in " + to_string(s));
      } else {
        known *= s[d];
      }
    }
    if (infer >= 0 && known != 0 && from.numel() % known == 0) s[infer] = from.numel() / known;
    if (s.numel() != from.numel() || (infer >= 0 && known == 0))
      throw shape_error("reshape: cannot reshape " + to_string(from) + " (" + std::to_string(from.numel()) +
                        " elements) into " + to_string(s));
    return s;
  }
  A a_;
  Shape<RO> spec_;
  detail::Lazy<Tensor<value_type, AE::rank>> copy_;
};

/// The operand broadcast to a given (larger) shape, NumPy rules.
template <class A, int RO>
class BroadcastExpr : public ExprBase<BroadcastExpr<A, RO>> {
  using AE = std::remove_cvref_t<A>;

 public:
  using value_type = typename AE::value_type;
  static constexpr int rank = RO;
  static_assert(AE::rank <= RO, "metagrad: broadcast_to cannot lower the rank; use reshape or a reduction");

  BroadcastExpr(A a, Shape<RO> s) : a_(std::forward<A>(a)), shape_(s) {
    check_broadcastable_to(a_.shape(), shape_, "broadcast_to");
  }
  Shape<RO> shape() const { return shape_; }
  const AE& operand() const { return a_; }
  auto children() const { return detail::refs(a_); }
  bool same_params(const BroadcastExpr& o) const { return detail::bits_equal(shape_, o.shape_); }

  // Broadcasting commutes with everything below it, so the target goes straight to the operand.
  template <int RT>
  auto lower(const Shape<RT>& target) const {
    check_broadcastable_to(a_.shape(), shape_, "broadcast_to");
    return lower_expr(a_, target);
  }

 private:
  A a_;
  Shape<RO> shape_;
};

// --- front-ends ---------------------------------------------------------------------------------

/// Axes reordered: output axis i is input axis perm[i]. @throws index_error for a repeated axis.
template <expression A, int N>
auto permute(A&& a, const int (&perm)[N]) {
  constexpr int R = expr_rank_v<A>;
  static_assert(N == R, "metagrad: permute needs exactly one axis per dimension of the expression");
  Array<int, R> from{};
  for (int i = 0; i < R; ++i) from[i] = normalize_axis(perm[i], R, "permute");
  return AxisMapExpr<closure_t<A&&>, R>(std::forward<A>(a), from, "permute");
}

/// Axes a and b swapped.
template <expression A>
auto transpose(A&& e, int a, int b) {
  constexpr int R = expr_rank_v<A>;
  static_assert(R >= 1, "metagrad: transpose needs an expression of rank 1 or more");
  Array<int, R> from{};
  for (int i = 0; i < R; ++i) from[i] = i;
  a = normalize_axis(a, R, "transpose");
  b = normalize_axis(b, R, "transpose");
  std::swap(from[a], from[b]);
  return AxisMapExpr<closure_t<A&&>, R>(std::forward<A>(e), from, "transpose");
}

/// Matrix transpose. @pre rank 2 (compile-time check).
template <expression A>
auto t(A&& a) {
  static_assert(expr_rank_v<A> == 2, "metagrad: t() transposes a rank-2 expression; use permute for other ranks");
  return transpose(std::forward<A>(a), 0, 1);
}

/// Removes `axis`, which must have extent 1. @throws shape_error otherwise.
template <expression A>
auto squeeze(A&& a, int axis) {
  constexpr int R = expr_rank_v<A>;
  static_assert(R >= 1, "metagrad: squeeze needs an expression of rank 1 or more");
  axis = normalize_axis(axis, R, "squeeze");
  Array<int, R - 1> from{};
  for (int i = 0, c = 0; c < R; ++c)
    if (c != axis) from[i++] = c;
  return AxisMapExpr<closure_t<A&&>, R - 1>(std::forward<A>(a), from, "squeeze");
}

/// Inserts an axis of extent 1 at position `axis` (0..rank; negative counts from rank + 1).
template <expression A>
auto unsqueeze(A&& a, int axis) {
  constexpr int R = expr_rank_v<A>;
  axis = normalize_axis(axis, R + 1, "unsqueeze");
  Array<int, R + 1> from{};
  for (int i = 0, c = 0; i < R + 1; ++i) from[i] = i == axis ? -1 : c++;
  return AxisMapExpr<closure_t<A&&>, R + 1>(std::forward<A>(a), from, "unsqueeze");
}

/// Broadcast (NumPy rules) to `shape` without copying. @throws shape_error when not broadcastable.
template <expression A, int N>
auto broadcast_to(A&& a, const Shape<N>& shape) {
  return BroadcastExpr<closure_t<A&&>, N>(std::forward<A>(a), shape);
}
template <expression A, int N>
auto broadcast_to(A&& a, const index_t (&dims)[N]) {
  Shape<N> s;
  for (int i = 0; i < N; ++i) s[i] = dims[i];
  return broadcast_to(std::forward<A>(a), s);
}
/// torch-style name for broadcast_to.
template <expression A, class S>
auto expand(A&& a, const S& shape) {
  return broadcast_to(std::forward<A>(a), shape);
}

/// Same elements in row-major order with new extents (one may be -1). Views a contiguous tensor without
/// copying; copies a non-contiguous one once per evaluation, as torch.reshape does.
template <expression A, int N>
auto reshape(A&& a, const Shape<N>& shape) {
  return ReshapeExpr<closure_t<A&&>, N>(std::forward<A>(a), shape);
}
template <expression A, int N>
auto reshape(A&& a, const index_t (&dims)[N]) {
  Shape<N> s;
  for (int i = 0; i < N; ++i) s[i] = dims[i];
  return reshape(std::forward<A>(a), s);
}

namespace detail {
struct SliceAxis {
  index_t start, step, count;
};
// Python slice semantics on an axis of extent n: negative positions count from the end, out-of-range
// positions clamp, an omitted start/stop (Slice::none) means the end in the step's direction.
inline SliceAxis normalize_slice(Slice s, index_t n, int axis) {
  if (s.step == 0) throw index_error("slice: step must not be zero (axis " + std::to_string(axis) + ")");
  auto fix = [&](index_t v, bool is_start) -> index_t {
    if (v == Slice::none) return s.step > 0 ? (is_start ? 0 : n) : (is_start ? n - 1 : -1);
    if (v < 0) v += n;
    if (s.step > 0) return v < 0 ? 0 : (v > n ? n : v);
    return v < -1 ? -1 : (v > n - 1 ? n - 1 : v);
  };
  const index_t start = fix(s.start, true), stop = fix(s.stop, false);
  index_t count = s.step > 0 ? (stop - start + s.step - 1) / s.step : (start - stop - s.step - 1) / (-s.step);
  if (count < 0) count = 0;
  return {count ? start : 0, s.step, count};
}
}  // namespace detail

/// One Slice per axis: x.slice({Slice{0, 2}, Slice{}, Slice{Slice::none, Slice::none, -1}}).
template <expression A, int N>
auto slice(A&& a, const Slice (&axes)[N]) {
  constexpr int R = expr_rank_v<A>;
  static_assert(N == R, "metagrad: slice({...}) needs one Slice per axis; use slice(axis, start, stop, step) for one");
  const auto s = a.shape();
  Array<index_t, R> start{}, step{};
  Shape<R> count;
  for (int d = 0; d < R; ++d) {
    const auto n = detail::normalize_slice(axes[d], s[d], d);
    start[d] = n.start;
    step[d] = n.step;
    count[d] = n.count;
  }
  SliceExpr<closure_t<A&&>> e(std::forward<A>(a), start, step, count);
  e.set_source_shape(s);
  return e;
}

/// Elements start, start + step, ... before stop along one axis (Python semantics, clamped).
template <expression A>
auto slice(A&& a, int axis, index_t start, index_t stop = Slice::none, index_t step = 1) {
  constexpr int R = expr_rank_v<A>;
  static_assert(R >= 1, "metagrad: slice needs an expression of rank 1 or more");
  axis = normalize_axis(axis, R, "slice");
  Slice axes[R];
  axes[axis] = Slice{start, stop, step};
  return slice(std::forward<A>(a), axes);
}

/// The sub-expression at index i of `axis` (rank - 1). @throws index_error when i is out of range.
template <expression A>
auto select(A&& a, int axis, index_t i) {
  constexpr int R = expr_rank_v<A>;
  static_assert(R >= 1, "metagrad: select needs an expression of rank 1 or more");
  axis = normalize_axis(axis, R, "select");
  const index_t n = a.shape()[axis];
  if (i < -n || i >= n)
    throw index_error("select: index " + std::to_string(i) + " is out of range for axis " + std::to_string(axis) +
                      " of extent " + std::to_string(n));
  if (i < 0) i += n;
  return squeeze(slice(std::forward<A>(a), axis, i, i + 1), axis);
}

namespace detail {
template <class D>
struct expr_ops {
#define METAGRAD_FORWARD_VIEW_(name)                                              \
  template <class Self, class... Args>                                            \
  static auto name(Self&& self, Args&&... args) {                                 \
    return metagrad::name(std::forward<Self>(self), std::forward<Args>(args)...); \
  }
  METAGRAD_FORWARD_VIEW_(permute)
  METAGRAD_FORWARD_VIEW_(transpose)
  METAGRAD_FORWARD_VIEW_(t)
  METAGRAD_FORWARD_VIEW_(slice)
  METAGRAD_FORWARD_VIEW_(select)
  METAGRAD_FORWARD_VIEW_(squeeze)
  METAGRAD_FORWARD_VIEW_(unsqueeze)
  METAGRAD_FORWARD_VIEW_(expand)
  METAGRAD_FORWARD_VIEW_(broadcast_to)
  METAGRAD_FORWARD_VIEW_(reshape)
#undef METAGRAD_FORWARD_VIEW_
  template <class U, class Self>
  static auto cast(Self&& self) {
    return metagrad::cast<U>(std::forward<Self>(self));
  }
};
}  // namespace detail

METAGRAD_NAMESPACE_END
