// metagrad/expr/gather.hpp — row gathers as boundary nodes: embedding(weight, indices) copies row
// indices[...] of a [V, D] table for every index, and its gradient scatters the incoming rows back, adding
// where an index repeats. Both check every index against V when evaluated and throw instead of reading or
// writing out of range. Include <metagrad/expr.hpp> instead.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "leaf.hpp"
#include "node.hpp"
#include "plan.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace detail {

// The indices of a gather, evaluated and checked: one int64 row number per position, row-major.
template <class I, int RI>
std::vector<index_t> gather_rows(const I& indices, const Shape<RI>& is, index_t rows, const char* op) {
  std::vector<index_t> out(static_cast<std::size_t>(is.numel()));
  const auto p = lower_expr(indices, is);
  Array<index_t, RI> idx{};
  for (index_t n = 0; n < is.numel(); ++n) {
    index_t rem = n;
    for (int d = RI - 1; d >= 0; --d) {
      idx[d] = rem % is[d];
      rem /= is[d];
    }
    const index_t r = static_cast<index_t>(p.at(idx));
    if (r < 0 || r >= rows)
      throw index_error(std::string(op) + ": index " + std::to_string(r) + " at position " + to_string(idx) +
                        " is out of range for a table of " + std::to_string(rows) + " rows");
    out[static_cast<std::size_t>(n)] = r;
  }
  return out;
}

// The [V, D] table as a pointer and row/column strides: read in place when it lowers to memory, else
// evaluated once into `copy`.
template <class T, class W>
const T* table_of(const W& w, const Shape<2>& ws, Tensor<T, 2>& copy, index_t& sr, index_t& sc) {
  const auto p = lower_expr(w, ws);
  if constexpr (is_leaf_plan_v<std::remove_cvref_t<decltype(p)>>) {
    sr = p.strides[0];
    sc = p.strides[1];
    return p.ptr;
  } else {
    if (!copy.defined() || !(copy.shape() == ws)) copy.allocate(ws);
    run_fill(Device::cpu(), copy.data(), copy.strides(), ws, p);
    sr = copy.strides()[0];
    sc = copy.strides()[1];
    return copy.data();
  }
}

}  // namespace detail

/// The gradient of embedding with respect to its table: a [V, D] tensor of zeros to which row n of g
/// ([..., D], one row per index) is added at row indices[n]. Repeated indices accumulate; rows equal to
/// padding_idx receive nothing. `W` is the table, read for its shape only.
template <class G, class I, class W>
class EmbeddingBackwardExpr : public ExprBase<EmbeddingBackwardExpr<G, I, W>>,
                              public BoundaryBase<typename W::value_type, 2> {
 public:
  using value_type = typename W::value_type;
  static constexpr int rank = 2;

  EmbeddingBackwardExpr(G g, I indices, W weight, std::optional<index_t> padding_idx)
      : g_(std::move(g)), idx_(std::move(indices)), w_(std::move(weight)), padding_(padding_idx) {}
  Shape<2> shape() const { return w_.shape(); }
  const W& like() const { return w_; }
  auto children() const { return detail::refs(g_, idx_); }
  bool same_params(const EmbeddingBackwardExpr& o) const { return padding_ == o.padding_; }

  /// Writes the scattered sum into dst (re-allocated when its shape differs). A serial pass over the
  /// indices: rows that repeat are added in index order, so the result does not depend on threads.
  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == 2);
    detail::require_cpu(detail::operands_device(*this, "embedding (backward)"), "embedding (backward)");
    const auto ws = w_.shape();
    const auto is = idx_.shape();
    const auto gs = g_.shape();
    constexpr int RG = G::rank;
    bool ok = gs[RG - 1] == ws[1];
    for (int d = 0; d < RG - 1; ++d) ok &= gs[d] == is[d];
    if (!ok)
      throw shape_error("embedding (gradient): the gradient of shape " + to_string(gs) + " does not match indices " +
                        to_string(is) + " and a table of shape " + to_string(ws));
    const auto rows = detail::gather_rows(idx_, is, ws[0], "embedding");
    // g as a contiguous [n, D] block (computed gradients are evaluated once).
    const auto gp = lower_expr(g_, gs);
    const value_type* gptr = nullptr;
    if constexpr (is_leaf_plan_v<std::remove_cvref_t<decltype(gp)>> &&
                  std::is_same_v<typename G::value_type, value_type>) {
      if (is_contiguous(gs, Strides<RG>(gp.strides))) gptr = gp.ptr;
    }
    if (!gptr) {
      if (!gcopy_.get().defined() || !(gcopy_.get().shape() == gs)) gcopy_.get().allocate(gs);
      run_fill(Device::cpu(), gcopy_.get().data(), gcopy_.get().strides(), gs, gp);
      gptr = gcopy_.get().data();
    }
    Tensor<value_type, 2> out(ws);  // zero-filled; dst may alias g, so it is written last
    const index_t D = ws[1];
    value_type* o = out.data();
    for (std::size_t n = 0; n < rows.size(); ++n) {
      const index_t r = rows[n];
      if (padding_ && r == *padding_) continue;
      value_type* orow = o + r * D;
      const value_type* grow = gptr + static_cast<index_t>(n) * D;
      for (index_t d = 0; d < D; ++d) orow[d] += grow[d];
    }
    if (!dst.defined() || !(dst.shape() == ws))
      dst = std::move(out);
    else
      dst.assign(out);
  }

 private:
  G g_;
  I idx_;
  W w_;
  std::optional<index_t> padding_;
  detail::Lazy<Tensor<value_type, G::rank>> gcopy_;
};

/// embedding(weight, indices): for indices of shape [...], the [..., D] rows weight[indices[...], :] of a
/// [V, D] table. Differentiable with respect to the table (EmbeddingBackwardExpr).
template <class W, class I>
class EmbeddingExpr : public ExprBase<EmbeddingExpr<W, I>>, public BoundaryBase<typename W::value_type, I::rank + 1> {
 public:
  using value_type = typename W::value_type;
  static constexpr int rank = I::rank + 1;
  using self_differentiating_tag = void;

  EmbeddingExpr(W weight, I indices, std::optional<index_t> padding_idx)
      : w_(std::move(weight)), idx_(std::move(indices)), padding_(padding_idx) {}

  const W& weight() const { return w_; }
  const I& indices() const { return idx_; }
  auto children() const { return detail::refs(w_, idx_); }
  bool same_params(const EmbeddingExpr& o) const { return padding_ == o.padding_; }

  Shape<rank> shape() const {
    const auto is = idx_.shape();
    Shape<rank> s;
    for (int d = 0; d < I::rank; ++d) s[d] = is[d];
    s[rank - 1] = w_.shape()[1];
    return s;
  }

  /// Copies the selected rows into dst (re-allocated when its shape differs).
  /// @throws index_error naming embedding, the index, its position and V for an index outside [0, V).
  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst) const {
    static_assert(RD == rank);
    detail::require_cpu(detail::operands_device(*this, "embedding"), "embedding");
    const auto ws = w_.shape();
    const auto is = idx_.shape();
    const auto rows = detail::gather_rows(idx_, is, ws[0], "embedding");
    index_t sr = 0, sc = 0;
    const value_type* table = detail::table_of(w_, ws, wcopy_.get(), sr, sc);
    const auto os = shape();
    // Written through a fresh buffer when dst overlaps the table (x = embedding(x, ...)) or is strided.
    bool direct = dst.defined() && dst.shape() == os && dst.is_contiguous();
    if (direct && os.numel() > 0 && ws.numel() > 0) {
      const auto r = offset_range(Array<index_t, 2>{{ws[0], ws[1]}}, Strides<2>{{sr, sc}});
      const char* tlo = reinterpret_cast<const char*>(table + r.lo);
      const char* thi = reinterpret_cast<const char*>(table + r.hi + 1);
      const char* dlo = reinterpret_cast<const char*>(dst.data());
      const char* dhi = reinterpret_cast<const char*>(dst.data() + os.numel());
      direct = thi <= dlo || tlo >= dhi;
    }
    Tensor<value_type, rank> fresh;
    if (!direct) fresh.allocate(os);
    value_type* out = direct ? dst.data() : fresh.data();
    const index_t D = ws[1];
    for (std::size_t n = 0; n < rows.size(); ++n) {
      const value_type* src = table + rows[n] * sr;
      value_type* o = out + static_cast<index_t>(n) * D;
      for (index_t d = 0; d < D; ++d) o[d] = src[d * sc];
    }
    if (direct) return;
    if (!dst.defined() || !(dst.shape() == os))
      dst = std::move(fresh);
    else
      dst.assign(fresh);
  }

  /// The adjoint of the table: g's rows scattered (added) into zeros of the table's shape.
  template <class G>
  auto backward(std::integral_constant<int, 0>, const G& g) const {
    return EmbeddingBackwardExpr<G, I, W>(g, idx_, w_, padding_);
  }

 private:
  W w_;
  I idx_;
  std::optional<index_t> padding_;
  detail::Lazy<Tensor<value_type, 2>> wcopy_;
};

/// embedding(weight, indices): row indices[...] of the [V, D] table for every index, shape [..., D]. Indices
/// are int32 or int64 of any rank; with padding_idx, that row gets no gradient (its forward value is
/// returned as stored, as in PyTorch).
/// @pre weight of rank 2 with a floating dtype, integer indices (compile-time checks).
/// @throws index_error (when evaluated) naming embedding, the index and V for an index outside [0, V).
template <expression Wt, expression Ix>
auto embedding(Wt&& weight, Ix&& indices, std::optional<index_t> padding_idx = std::nullopt) {
  static_assert(expr_rank_v<Wt> == 2, "metagrad: embedding takes a [V, D] table");
  static_assert(floating_dtype<expr_value_t<Wt>>, "metagrad: embedding tables need a float or double dtype");
  static_assert(integer_dtype<expr_value_t<Ix>>, "metagrad: embedding indices need an int32 or int64 dtype");
  using WE = std::remove_cvref_t<decltype(detail::operand_value<closure_t<Wt&&>>(weight))>;
  using IE = std::remove_cvref_t<decltype(detail::operand_value<closure_t<Ix&&>>(indices))>;
  return EmbeddingExpr<WE, IE>(detail::operand_value<closure_t<Wt&&>>(weight),
                               detail::operand_value<closure_t<Ix&&>>(indices), padding_idx);
}

METAGRAD_NAMESPACE_END
