// metagrad/expr/node.hpp — what every expression node shares: how operands are stored (closure
// semantics), how a Tensor leaf lowers to a LeafPlan, scalar constants, and lower_expr(), the one entry
// point that lowers any expression to a plan of a given target shape. Include <metagrad/expr.hpp>.
#pragma once

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/device.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/expr_base.hpp"
#include "../core/pack.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "plan.hpp"

METAGRAD_NAMESPACE_BEGIN

template <class T>
inline constexpr bool is_tensor_v = false;
template <class T, int R>
inline constexpr bool is_tensor_v<Tensor<T, R>> = true;

/// Leaves that a node keeps by reference when they are named (lvalues): a Tensor is read at evaluation
/// time, so `auto e = a * b; a = ...; eval(e)` sees the new a. Leaf types of later layers specialise it.
template <class T>
inline constexpr bool stored_by_reference_v = is_tensor_v<T>;

/// How a node stores an operand of (forwarding) type E: named leaves by const reference, everything else
/// (rvalue subexpressions, temporaries, named non-leaf expressions, which are small) by value, so
/// `auto h = W * x + b;` never dangles.
template <class E>
using closure_t = std::conditional_t<std::is_lvalue_reference_v<E> && stored_by_reference_v<std::remove_cvref_t<E>>,
                                     const std::remove_cvref_t<E>&, std::remove_cvref_t<E>>;

namespace detail {
/// Bitwise equality of two trivially copyable values (op functors with parameters, scalars): equal bits
/// mean equal behaviour, which is all that merging duplicate nodes needs (NaN == NaN here, and 0.0 and
/// -0.0 differ, both harmlessly).
template <class T>
bool bits_equal(const T& a, const T& b) {
  static_assert(std::is_trivially_copyable_v<T>, "metagrad: node parameters must be trivially copyable");
  if constexpr (std::is_empty_v<T>)
    return true;
  else
    return std::memcmp(&a, &b, sizeof(T)) == 0;
}
}  // namespace detail

/// A constant broadcast to any shape.
template <dtype T>
class ScalarExpr : public ExprBase<ScalarExpr<T>> {
 public:
  using value_type = T;
  static constexpr int rank = 0;
  explicit ScalarExpr(T v) : value_(v) {}
  Shape<0> shape() const { return {}; }
  T value() const { return value_; }
  bool same_params(const ScalarExpr& o) const { return detail::bits_equal(value_, o.value_); }
  template <int RT>
  ScalarPlan<T, RT> lower(const Shape<RT>&) const {
    return {value_};
  }

 private:
  T value_;
};

template <class T>
inline constexpr bool is_scalar_expr_v = false;
template <class T>
inline constexpr bool is_scalar_expr_v<ScalarExpr<T>> = true;

namespace detail {

/// Strides of a rank-RC layout read at a rank-RT target, right-aligned; broadcast axes get stride 0.
template <int RC, int RT>
Array<index_t, RT> broadcast_strides(const Shape<RC>& shape, const Strides<RC>& strides, const Shape<RT>& target,
                                     bool& same_layout) {
  static_assert(RC <= RT, "metagrad: an operand cannot have a higher rank than the result it is broadcast to");
  Array<index_t, RT> s{};
  same_layout = true;
  for (int d = 0; d < RT; ++d) {
    const int c = d - (RT - RC);
    if (c < 0) {
      same_layout &= target[d] == 1;
      continue;
    }
    const bool bcast = shape[c] == 1 && target[d] != 1;
    s[d] = shape[c] == 1 ? 0 : strides[c];
    same_layout &= !bcast;
  }
  return s;
}

/// LeafPlan for memory at `ptr` with the given layout, read at `target`.
template <class T, int RC, int RT>
LeafPlan<T, RT> lower_leaf(const T* ptr, const Shape<RC>& shape, const Strides<RC>& strides, const Shape<RT>& target) {
  bool same = false;
  auto s = broadcast_strides(shape, strides, target, same);
  return {ptr, s, same && is_contiguous(shape, strides)};
}

}  // namespace detail

/// Lowers any expression to a plan of rank RT that yields its elements broadcast to `target`. A tensor is a
/// leaf. A node with a `lower(target)` member lowers itself (elementwise nodes into fused plans, views into
/// index maps). A boundary node without one (matmul, conv, reductions, ...) is materialised: its value is
/// computed once per evaluation into its own cache, or read from the slot a Program bound, then read as a
/// leaf; that is BoundaryBase::materialise, so such a node only says how to evaluate itself (eval_into).
/// @pre the expression's shape broadcasts to `target` (callers check and throw shape_error).
template <class E, int RT>
auto lower_expr(const E& e, const Shape<RT>& target) {
  if constexpr (is_tensor_v<E>) {
    return detail::lower_leaf(e.data(), e.shape(), e.strides(), target);
  } else if constexpr (requires { e.lower(target); }) {
    return e.lower(target);
  } else {
    const auto& v = e.materialise(e);
    return detail::lower_leaf(v.data(), v.shape(), v.strides(), target);
  }
}

/// The plan type of E lowered at rank RT.
template <class E, int RT>
using plan_t = decltype(lower_expr(std::declval<const E&>(), std::declval<const Shape<RT>&>()));

/// Wraps a plan of a non-leaf at its own shape so it can be read at `target` (broadcasting); leaf plans
/// are re-strided instead. Used by nodes whose own shape is not passed down (views, boundaries).
template <class P, int RC, int RT>
auto broadcast_plan(const P& p, const Shape<RC>& own, const Shape<RT>& target) {
  if constexpr (is_constant_plan_v<P>) {
    return ScalarPlan<typename P::value_type, RT>{p.at(Array<index_t, RC>{})};
  } else if constexpr (is_leaf_plan_v<P>) {
    bool same = false;
    auto s = detail::broadcast_strides(own, p.strides, target, same);
    return LeafPlan<typename P::value_type, RT>{p.ptr, s, same && p.flat_ok};
  } else {
    AxisMapPlan<P, RT> m{p, {}, own, true};
    for (int d = 0; d < RC; ++d) {
      const int t = d + (RT - RC);
      m.map[d] = own[d] == 1 && target[t] != 1 ? -1 : t;
      m.order_kept &= own[d] == target[t];
    }
    for (int d = 0; d < RT - RC; ++d) m.order_kept &= target[d] == 1;
    return m;
  }
}

namespace detail {
/// Per-object scratch state held behind a pointer and made on first use: copies start empty (a node's
/// cache is never shared with its copies) and an expression object pays 8 bytes for it, not a Tensor's ~100
/// (gradient expressions hold thousands of nodes, and big node objects overflow the stack while built).
template <class T>
class Lazy {
 public:
  Lazy() = default;
  Lazy(const Lazy&) {}
  Lazy& operator=(const Lazy&) { return *this; }
  T& get() const {
    if (!p_) p_ = std::make_unique<T>();
    return *p_;
  }

 private:
  mutable std::unique_ptr<T> p_;
};
}  // namespace detail

/// What every boundary node (reduction, matmul, ...) shares: the tensor it materialises into when it is
/// evaluated on its own, and the slot a compiled Program binds it to, from which it is then only read.
/// A copy starts unbound and with no cache of its own, so copies never write into each other's memory.
template <class T, int R>
class BoundaryBase {
 public:
  BoundaryBase() = default;
  BoundaryBase(const BoundaryBase&) {}
  BoundaryBase& operator=(const BoundaryBase&) { return *this; }

  /// Makes this node read `t` (filled by the Program) instead of evaluating itself; nullptr unbinds.
  void bind_slot(const Tensor<T, R>* t) const { slot_ = t; }
  const Tensor<T, R>* bound_slot() const { return slot_; }

  /// The node's value: the bound slot, or a fresh evaluation (self.eval_into) into the node's own cache.
  /// lower_expr() reads a boundary node through it.
  template <class Self>
  const Tensor<T, R>& materialise(const Self& self) const {
    if (slot_) return *slot_;
    auto& c = cache_.get();
    self.eval_into(c);
    return c;
  }

 private:
  mutable const Tensor<T, R>* slot_ = nullptr;
  detail::Lazy<Tensor<T, R>> cache_;
};

namespace detail {
/// Whether two nodes of the same type compute the same value: same parameters (axes, scalars, op
/// parameters) and equal children, down to the leaves (the same Input/Param/tensor).
template <class E>
bool same_node(const E& a, const E& b) {
  if (&a == &b) return true;
  if constexpr (is_tensor_v<E>) {
    return false;  // distinct tensor objects may be re-assigned independently
  } else if constexpr (requires { a.identity(); }) {
    return a.identity() == b.identity();
  } else {
    if constexpr (requires { a.same_params(b); }) {
      if (!a.same_params(b)) return false;
    }
    if constexpr (requires { a.like(); }) {  // the expression a node takes its shape from
      if (!same_node(a.like(), b.like())) return false;
    }
    if constexpr (requires { a.children(); }) {
      return detail::unpack(
          [&](const auto&... ca) {
            return detail::unpack([&](const auto&... cb) { return (same_node(ca, cb) && ...); }, b.children());
          },
          a.children());
    } else if constexpr (requires { a.same_params(b); }) {
      return true;  // a leaf compared by its parameters (a scalar constant)
    } else {
      return false;  // a leaf without identity (a random draw): never merged
    }
  }
}

}  // namespace detail

template <class E>
concept boundary_expression = requires(const E& e) {
  e.bound_slot();
};

// --- devices ----------------------------------------------------------------------------------------

namespace detail {
/// Folds `d` into `acc`. @throws device_error naming `what` when an expression reads two devices.
inline void merge_device(std::optional<Device>& acc, const std::optional<Device>& d, const char* what) {
  if (!d) return;
  if (!acc) {
    acc = d;
  } else if (*acc != *d) {
    throw device_error(std::string(what) + ": the expression reads tensors on " + acc->str() + " and on " + d->str() +
                       "; move them to one device with to(device) first");
  }
}

/// The device of every tensor an expression reads (nullopt when it reads none: constants, random draws).
/// A boundary node a Program has already evaluated answers with its slot, so the walk stops there.
/// @throws device_error when the tensors are on different devices.
template <class E>
std::optional<Device> expr_device(const E& e, const char* what = "evaluate") {
  if constexpr (is_tensor_v<E>) {
    return e.defined() ? std::optional<Device>(e.device()) : std::nullopt;
  } else if constexpr (requires { e.value().device(); }) {
    return e.value().device();
  } else {
    std::optional<Device> acc;
    if constexpr (boundary_expression<E>) {
      if (const auto* s = e.bound_slot(); s && s->defined()) return s->device();
    }
    if constexpr (requires {
                    e.takes_first();
                    e.first_branch();
                    e.second_branch();
                  }) {  // a run-time choice reads only the branch it takes
      return e.takes_first() ? expr_device(e.first_branch(), what) : expr_device(e.second_branch(), what);
    } else if constexpr (requires { e.children(); })
      detail::unpack([&](const auto&... c) { (merge_device(acc, expr_device(c, what), what), ...); }, e.children());
    return acc;
  }
}

/// The device of the operands of a node (its children only; its own slot is not consulted).
template <class E>
std::optional<Device> operands_device(const E& e, const char* what) {
  std::optional<Device> acc;
  if constexpr (requires { e.children(); })
    detail::unpack([&](const auto&... c) { (merge_device(acc, expr_device(c, what), what), ...); }, e.children());
  return acc;
}

/// The device of the first tensor found in an expression, ignoring the slots of boundary nodes (a walk
/// down the first operand with a tensor, not of the whole tree): how a Program picks its device.
template <class E>
std::optional<Device> first_device(const E& e) {
  if constexpr (is_tensor_v<E>) {
    return e.defined() ? std::optional<Device>(e.device()) : std::nullopt;
  } else if constexpr (requires { e.value().device(); }) {
    return e.value().device();
  } else if constexpr (requires { e.children(); }) {
    return detail::unpack(
        [](const auto&... c) {
          std::optional<Device> d;
          ((d = d ? d : first_device(c)), ...);
          return d;
        },
        e.children());
  } else {
    return std::nullopt;
  }
}

/// Gives `dst` storage of `shape` on `device` unless it already has both.
template <class T, int R>
void prepare_destination(Tensor<T, R>& dst, const Shape<R>& shape, Device device) {
  if (!dst.defined() || !(dst.shape() == shape) || dst.device() != device) dst.allocate(shape, device);
}

/// @throws device_error naming `op` when `device` is not the CPU: the op has no device code in this release.
inline void require_cpu(const std::optional<Device>& device, const char* op) {
  if (device && !device->is_cpu())
    throw device_error(std::string(op) + " on " + device->str() +
                       ": this operation runs on the CPU only in this release; move its operands with "
                       "to(Device::cpu())");
}
}  // namespace detail

METAGRAD_NAMESPACE_END
