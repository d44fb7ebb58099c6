// metagrad/core/tensor.hpp — Tensor<T, Rank>: an n-dimensional array of static rank and run-time extents
// on shared, reference-counted storage (offset + strides, so views and copies of the handle cost
// nothing). A Tensor is also the leaf expression every fused expression reads. Include
// <metagrad/core.hpp> instead.
#pragma once

#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "config.hpp"
#include "device.hpp"
#include "dtype.hpp"
#include "error.hpp"
#include "expr_base.hpp"
#include "shape.hpp"
#include "storage.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace detail {
// Defined by the CPU backend (backend/cpu/assign.hpp): evaluates an expression into a tensor.
template <class Dst>
struct assigner;

// Nested std::initializer_list of depth Rank, for Tensor<float, 2> m = {{1, 2}, {3, 4}}.
template <class T, int Rank>
struct nested_list {
  using type = std::initializer_list<typename nested_list<T, Rank - 1>::type>;
};
template <class T>
struct nested_list<T, 0> {
  using type = T;
};

template <class T, int Rank, class L>
void flatten_list(const L& list, Shape<Rank>& shape, std::vector<T>& out, int depth, bool first) {
  if constexpr (std::is_same_v<L, T>) {
    out.push_back(list);
  } else {
    const auto n = static_cast<index_t>(list.size());
    if (first && shape[depth] == 0) shape[depth] = n;
    if (shape[depth] != n)
      throw shape_error("Tensor: ragged initializer list (axis " + std::to_string(depth) + " has " + std::to_string(n) +
                        " elements where " + std::to_string(shape[depth]) + " were expected)");
    bool f = first;
    for (const auto& sub : list) {
      flatten_list<T, Rank>(sub, shape, out, depth + 1, f);
      f = false;
    }
  }
}
}  // namespace detail

/// An n-dimensional array of `T` (float, double, int32_t, int64_t or bool) with static rank `Rank`.
///
/// Tensor is a handle, like torch::Tensor: copying a Tensor shares its storage; clone() makes an
/// independent copy. Assigning an expression (`y = a * b + c`) evaluates it in one fused pass into y's
/// memory when y already has the expression's shape, otherwise into new storage. Assigning another
/// Tensor of the same type re-seats the handle; `y.assign(x)` copies values instead.
template <dtype T, int Rank>
class Tensor : public ExprBase<Tensor<T, Rank>> {
 public:
  using value_type = T;
  static constexpr int rank = Rank;

  /// An empty tensor: no storage, all extents 0 (rank 0: one element would be needed, so also empty).
  Tensor() = default;

  /// A zero-filled tensor of the given shape.
  explicit Tensor(const Shape<Rank>& shape, Device device = Device::cpu()) { allocate(shape, device, true); }

  /// A tensor from (nested) braces: Tensor<float, 2> m = {{1, 2}, {3, 4}}.
  Tensor(typename detail::nested_list<T, Rank>::type list) requires(Rank > 0) {
    std::vector<T> flat;
    Shape<Rank> s;
    detail::flatten_list<T, Rank>(list, s, flat, 0, true);
    allocate(s, Device::cpu(), false);
    std::copy(flat.begin(), flat.end(), data_);
  }

  /// Evaluates an expression into a new tensor in one fused pass.
  template <expression E>
  requires(!std::is_same_v<std::remove_cvref_t<E>, Tensor>)
      Tensor(const E& e) {  // NOLINT(google-explicit-constructor): `Tensor y = expr;` is the intended use
    check_assignable<E>();
    detail::assigner<Tensor>::assign(*this, e);
  }

  Tensor(const Tensor&) = default;
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(const Tensor&) = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  /// Evaluates `e` into this tensor: in place when the shapes agree (views of this storage see the new
  /// values), else into new storage. Reads of this tensor inside `e` are handled: `y = y + 1` runs in
  /// place, `x = x.t()` goes through a temporary.
  template <expression E>
  requires(!std::is_same_v<std::remove_cvref_t<E>, Tensor>) Tensor& operator=(const E& e) {
    check_assignable<E>();
    detail::assigner<Tensor>::assign(*this, e);
    return *this;
  }

  /// Writes `e` into this tensor's existing memory; e must broadcast to this tensor's shape.
  /// @throws shape_error otherwise.
  template <expression E>
  Tensor& assign(const E& e) {
    check_assignable<E>();
    detail::assigner<Tensor>::assign_inplace(*this, e);
    return *this;
  }

  template <class E>
  Tensor& operator+=(const E& e) {
    return assign(*this + e);
  }
  template <class E>
  Tensor& operator-=(const E& e) {
    return assign(*this - e);
  }
  template <class E>
  Tensor& operator*=(const E& e) {
    return assign(*this * e);
  }
  template <class E>
  Tensor& operator/=(const E& e) {
    return assign(*this / e);
  }

  // --- shape and memory -------------------------------------------------------------------------

  const Shape<Rank>& shape() const { return shape_; }
  /// Extent of `axis` (negative counts from the end). @throws index_error when out of range.
  index_t size(int axis) const { return shape_[normalize_axis(axis, Rank, "Tensor::size")]; }
  index_t numel() const { return storage_ ? shape_.numel() : 0; }
  const Strides<Rank>& strides() const { return strides_; }
  T* data() { return data_; }
  const T* data() const { return data_; }
  Device device() const { return device_; }
  DType dtype() const { return dtype_of<T>; }
  /// False for a default-constructed tensor.
  bool defined() const { return storage_ != nullptr; }
  bool is_contiguous() const { return metagrad::is_contiguous(shape_, strides_); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  // --- element access ---------------------------------------------------------------------------

  /// Element at the given indices (negative indices count from the end).
  /// @throws index_error when an index is out of range.
  /// @throws device_error on a CUDA tensor (copy it with to(Device::cpu()) first).
  template <class... I>
  requires(std::is_integral_v<I>&&...) T& operator()(I... idx) { return data_[offset_of(idx...)]; }
  template <class... I>
  requires(std::is_integral_v<I>&&...) const T& operator()(I... idx) const { return data_[offset_of(idx...)]; }

  /// The only element of a one-element tensor. @throws shape_error otherwise.
  T item() const {
    if (numel() != 1)
      throw shape_error("Tensor::item: needs exactly one element, tensor has shape " + to_string(shape_));
    if (!device_.is_cpu()) {
      T v{};
      detail::copy_bytes(&v, Device::cpu(), data_, device_, sizeof(T));
      return v;
    }
    return *data_;
  }

  /// An independent, contiguous copy.
  Tensor clone() const {
    Tensor out;
    if (defined()) {
      out.allocate(shape_, device_, false);
      detail::assigner<Tensor>::assign_inplace(out, *this);
    }
    return out;
  }

  /// A copy converted to element type U (C++ conversion rules; to<bool>() tests != 0).
  template <metagrad::dtype U>
  Tensor<U, Rank> to() const {
    return Tensor<U, Rank>(detail::expr_ops<Tensor>::template cast<U>(*this));
  }

  /// A contiguous copy on `device` (this tensor itself when it is already there). Host-to-device copies
  /// go through pinned staging buffers; the call returns when the copy is complete.
  /// @throws device_error for a CUDA device in a file not compiled by nvcc, or one that does not exist.
  Tensor to(Device device) const {
    if (device == device_ || !defined()) return *this;
    if (!device.is_cpu()) (void)detail::device_hooks_for(device, "Tensor::to");  // names this call when absent
    const Tensor src = is_contiguous() ? *this : clone();
    Tensor out;
    out.allocate(shape_, device, false);
    detail::copy_bytes(out.data(), device, src.data(), device_, static_cast<std::size_t>(numel()) * sizeof(T));
    return out;
  }

  /// Vector of all elements in row-major order (copied to the host from a device).
  std::vector<T> to_vector() const {
    if (!device_.is_cpu()) return to(Device::cpu()).to_vector();
    const Tensor c = is_contiguous() ? *this : clone();
    return std::vector<T>(c.data_, c.data_ + c.numel());
  }

  /// A tensor viewing existing storage with the given layout (no copy). Used by views that fold into
  /// strides and by the backends; `offset` and `strides` are in elements.
  /// @pre the layout stays inside the storage.
  static Tensor from_storage(std::shared_ptr<Storage> storage, index_t offset, const Shape<Rank>& shape,
                             const Strides<Rank>& strides) {
    Tensor t;
    t.device_ = storage->device();
    t.data_ = static_cast<T*>(storage->data()) + offset;
    t.storage_ = std::move(storage);
    t.shape_ = shape;
    t.strides_ = strides;
    return t;
  }

  /// A contiguous tensor over memory the caller owns (host, or device memory with Device::cuda), like
  /// torch::from_blob: no copy, nothing freed. @pre `data` holds shape.numel() elements and outlives the
  /// tensor and its copies.
  static Tensor from_blob(T* data, const Shape<Rank>& shape, Device device = Device::cpu()) {
    auto st = std::make_shared<Storage>(static_cast<void*>(data), static_cast<std::size_t>(shape.numel()) * sizeof(T),
                                        device, nullptr);
    return from_storage(std::move(st), 0, shape, contiguous_strides(shape));
  }

  /// Gives this tensor fresh, contiguous storage of `shape` (contents unspecified unless zero_fill).
  void allocate(const Shape<Rank>& shape, Device device = Device::cpu(), bool zero_fill = false) {
    storage_ = std::make_shared<Storage>(static_cast<std::size_t>(shape.numel()) * sizeof(T), device);
    data_ = static_cast<T*>(storage_->data());
    shape_ = shape;
    strides_ = contiguous_strides(shape);
    device_ = device;
    if (zero_fill && shape.numel() > 0) {
      if (device.is_cpu())
        std::fill(data_, data_ + shape.numel(), T{});
      else
        detail::device_hooks_for(device, "Tensor").fill_zero(data_, storage_->bytes(), device);
    }
  }

 private:
  template <class E>
  static constexpr void check_assignable() {
    static_assert(expr_rank_v<E> <= Rank,
                  "metagrad: the expression has a higher rank than the tensor it is assigned to; reshape or "
                  "reduce it first");
    static_assert(std::is_same_v<expr_value_t<E>, T>,
                  "metagrad: dtype mismatch between the expression and the tensor it is assigned to; convert "
                  "explicitly with cast<T>(expr)");
  }

  template <class... I>
  index_t offset_of(I... idx) const {
    static_assert(sizeof...(I) == Rank, "metagrad: the number of indices must equal the tensor's rank");
    const index_t ids[] = {static_cast<index_t>(idx)..., 0};
    index_t off = 0;
    for (int d = 0; d < Rank; ++d) {
      index_t i = ids[d];
      if (i < -shape_[d] || i >= shape_[d])
        throw index_error("Tensor: index " + std::to_string(i) + " is out of range for axis " + std::to_string(d) +
                          " of shape " + to_string(shape_));
      if (i < 0) i += shape_[d];
      off += i * strides_[d];
    }
    if (!storage_) throw index_error("Tensor: element access on an empty tensor");
    if (!device_.is_cpu())
      throw device_error("Tensor: element access on " + device_.str() +
                         " memory from the host; copy the tensor with to(Device::cpu()) first");
    return off;
  }

  std::shared_ptr<Storage> storage_;
  T* data_ = nullptr;
  Shape<Rank> shape_{};
  Strides<Rank> strides_{};
  Device device_ = Device::cpu();
};

METAGRAD_NAMESPACE_END
