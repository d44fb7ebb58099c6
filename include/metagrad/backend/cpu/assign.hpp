// metagrad/backend/cpu/assign.hpp — evaluation of an expression into a Tensor (construction,
// assignment, compound assignment, eval): shape checks, destination passing for boundary nodes, and
// aliasing (in place when the destination is only read element-for-element, else via a temporary).
// Include <metagrad/metagrad.hpp> instead.
#pragma once

#include <ostream>
#include <string>
#include <utility>

#include "../../core/error.hpp"
#include "../../core/print.hpp"
#include "../../core/tensor.hpp"
#include "../../expr/node.hpp"
#include "../../ops/arithmetic.hpp"
#include "../dispatch.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace detail {

/// True when a plan reads the memory of `dst` other than exactly element-for-element.
template <class Plan, class T, int R>
bool reads_other_elements_of(const Plan& plan, const Tensor<T, R>& dst) {
  if (!dst.defined() || dst.numel() == 0) return false;
  const auto r = offset_range(dst.shape(), dst.strides());
  const char* dlo = reinterpret_cast<const char*>(dst.data() + r.lo);
  const char* dhi = reinterpret_cast<const char*>(dst.data() + r.hi + 1);
  bool hazard = false;
  plan.visit_leaves(
      [&](const void* ptr, const void* lo, const void* hi, const auto& strides, bool remapped) {
        const char* l = static_cast<const char*>(lo);
        const char* h = static_cast<const char*>(hi);
        if (h <= dlo || l >= dhi) return;
        bool same = !remapped && ptr == static_cast<const void*>(dst.data());
        if constexpr (std::remove_cvref_t<decltype(strides)>::size() == R)
          for (int d = 0; d < R; ++d) same &= strides[d] == dst.strides()[d] || dst.shape()[d] == 1;
        else
          same = false;
        hazard |= !same;
      },
      false, dst.shape());
  return hazard;
}

template <class T, int R>
struct assigner<Tensor<T, R>> {
  using Dst = Tensor<T, R>;

  /// dst = e: in place when dst already has e's shape, else into new storage (then re-seats dst).
  template <class E>
  static void assign(Dst& dst, const E& e) {
    const auto es = e.shape();
    Shape<R> s;
    for (int d = 0; d < R; ++d) s[d] = d < R - E::rank ? 1 : es[d - (R - E::rank)];
    if (dst.defined() && dst.shape() == s) {
      write(dst, e);
    } else {
      // A new tensor lives where the expression's data does (the destination's device for one that reads
      // no tensor).
      const Device dev = expr_device(e, "assign").value_or(dst.defined() ? dst.device() : Device::cpu());
      Dst fresh;
      fresh.allocate(s, dev);
      write(fresh, e);
      dst = std::move(fresh);
    }
  }

  /// dst.assign(e): into dst's existing memory; e must broadcast to dst's shape.
  template <class E>
  static void assign_inplace(Dst& dst, const E& e) {
    if (!dst.defined()) throw shape_error("assign: the destination tensor is empty (default-constructed)");
    check_broadcastable_to(e.shape(), dst.shape(), "assign");
    write(dst, e);
  }

  template <class Plan>
  static void run_copy(Dst& dst, const Plan& plan) {
    run_fill(dst.device(), dst.data(), dst.strides(), dst.shape(), plan);
  }

  template <class E>
  static void write(Dst& dst, const E& e) {
    // An expression over another device's tensors is evaluated there, then copied across (a host tensor
    // assigned a CUDA expression, or the reverse).
    if (const auto ed = expr_device(e, "assign"); ed && *ed != dst.device()) {
      Dst tmp;
      tmp.allocate(dst.shape(), *ed);
      write(tmp, e);
      if (dst.is_contiguous()) {
        copy_bytes(dst.data(), dst.device(), tmp.data(), *ed, static_cast<std::size_t>(dst.numel()) * sizeof(T));
      } else {
        const Dst moved = tmp.to(dst.device());
        run_copy(dst, lower_expr(moved, dst.shape()));
      }
      return;
    }
    if constexpr (requires {
                    e.rhs().accumulate_into(dst);
                    e.lhs().data();
                  }) {
      // dst = dst + boundary (what dst += matmul(a, b) becomes): accumulate in the library call (beta = 1).
      if constexpr (std::is_same_v<std::remove_cvref_t<decltype(e.op())>, ops::Add> &&
                    std::is_same_v<std::remove_cvref_t<decltype(e.lhs())>, Dst> &&
                    std::remove_cvref_t<decltype(e.rhs())>::rank == R) {
        const auto& l = e.lhs();
        if (l.data() == dst.data() && l.shape() == dst.shape() && l.strides() == dst.strides() &&
            e.rhs().shape() == dst.shape()) {
          e.rhs().accumulate_into(dst);
          return;
        }
      }
    }
    if constexpr (boundary_expression<E>) {
      // A node a Program has already evaluated into its slot is read, not evaluated again.
      bool fused = false;  // a sum_to that is its operand this run has nothing in its slot
      if constexpr (requires { e.materialised(); }) fused = !e.materialised();
      if (const auto* slot = e.bound_slot(); slot && !fused) {
        if constexpr (E::rank == R) {
          if (slot->data() != dst.data()) run_copy(dst, lower_expr(*slot, dst.shape()));
          return;
        }
      }
    }
    if constexpr (E::rank == R && requires { e.eval_into(dst); }) {
      if (e.shape() == dst.shape()) {  // destination passing: a boundary node at the root writes directly
        e.eval_into(dst);
        return;
      }
    }
    const auto plan = lower_expr(e, dst.shape());
    if (reads_other_elements_of(plan, dst)) {
      Dst tmp;
      tmp.allocate(dst.shape(), dst.device());
      run_fill(dst.device(), tmp.data(), tmp.strides(), tmp.shape(), plan);
      run_copy(dst, lower_expr(tmp, dst.shape()));
    } else {
      run_copy(dst, plan);
    }
  }
};

}  // namespace detail

/// Evaluates an expression into a new tensor of its own shape and dtype (one fused pass).
template <expression E>
auto eval(const E& e) {
  using ER = std::remove_cvref_t<E>;
  return Tensor<typename ER::value_type, ER::rank>(e);
}

/// A contiguous tensor with the expression's values: the tensor itself when it already is contiguous
/// (no copy), otherwise one fused pass.
template <expression E>
auto contiguous(const E& e) {
  using ER = std::remove_cvref_t<E>;
  if constexpr (is_tensor_v<ER>) {
    if (e.is_contiguous()) return e;
    return e.clone();
  } else {
    return eval(e);
  }
}

/// The text form of an expression (evaluated first), as for a tensor.
template <expression E>
requires(!is_tensor_v<std::remove_cvref_t<E>>) std::string to_string(const E& e) { return to_string(eval(e)); }

/// Prints an expression by evaluating it first.
template <expression E>
requires(!is_tensor_v<std::remove_cvref_t<E>>) std::ostream& operator<<(std::ostream& os, const E& e) {
  return os << eval(e);
}

METAGRAD_NAMESPACE_END
