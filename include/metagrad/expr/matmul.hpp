// metagrad/expr/matmul.hpp — matrix products as a boundary node. matmul(a, b) multiplies the last two axes
// and broadcasts the leading (batch) axes, NumPy style. A transposed operand (a.t(), transpose(x, -1, -2))
// becomes a GEMM transpose flag, a scalar factor (s * matmul(a, b)) becomes alpha and an accumulation
// (c += matmul(a, b)) becomes beta = 1: one GEMM call, no copies. The GEMM itself is the backend's
// (CBLAS when found, else a built-in blocked kernel; cuBLAS on CUDA). Include <metagrad/expr.hpp> instead.
#pragma once

#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "node.hpp"
#include "plan.hpp"

METAGRAD_NAMESPACE_BEGIN

/// One (strided-batched) GEMM: for each of `batch` items, C = alpha op(A) op(B) + beta C, row-major, with
/// element strides sa/sb/sc between items (0 repeats an operand). The backends answer run_gemm(call),
/// found by argument-dependent lookup, so this layer names no backend.
template <class T>
struct GemmCall {
  index_t batch;
  bool trans_a, trans_b;
  index_t m, n, k;
  T alpha;
  const T* a;
  index_t lda, stride_a;
  const T* b;
  index_t ldb, stride_b;
  T beta;
  T* c;
  index_t ldc, stride_c;
  Device device;  // where a, b and c live
};

namespace detail {
/// How a strided matrix (rows x cols, strides sr, sc) is handed to a GEMM: as stored (ld = row stride) or
/// transposed (ld = column stride); `ok` is false when neither works (the caller copies it first).
struct MatrixLayout {
  bool ok, trans;
  index_t ld;
};
inline MatrixLayout matrix_layout(index_t rows, index_t cols, index_t sr, index_t sc) {
  if (rows <= 1 && cols <= 1) return {true, false, cols > 0 ? cols : 1};
  if ((sc == 1 || cols == 1) && (rows == 1 || sr >= (cols > 1 ? cols : 1))) return {true, false, rows == 1 ? cols : sr};
  if ((sr == 1 || rows == 1) && (cols == 1 || sc >= (rows > 1 ? rows : 1))) return {true, true, cols == 1 ? rows : sc};
  return {false, false, 0};
}
}  // namespace detail

/// alpha * (a @ b): contraction of a's last axis with b's second-to-last; batch axes broadcast.
template <class A, class B>
class MatmulExpr : public ExprBase<MatmulExpr<A, B>>,
                   public BoundaryBase<typename std::remove_cvref_t<A>::value_type,
                                       (std::remove_cvref_t<A>::rank > std::remove_cvref_t<B>::rank
                                            ? std::remove_cvref_t<A>::rank
                                            : std::remove_cvref_t<B>::rank)> {
  using AE = std::remove_cvref_t<A>;
  using BE = std::remove_cvref_t<B>;
  static constexpr int RA = AE::rank;
  static constexpr int RB = BE::rank;

 public:
  using value_type = typename AE::value_type;
  static constexpr int rank = RA > RB ? RA : RB;
  static constexpr int batch_rank = rank - 2;
  static_assert(RA >= 2 && RB >= 2,
                "metagrad: matmul needs operands of rank 2 or more; make a vector a matrix with unsqueeze");
  static_assert(std::is_same_v<value_type, typename BE::value_type>,
                "metagrad: matmul needs both operands of the same dtype; convert one with cast<T>()");
  static_assert(std::is_same_v<value_type, float> || std::is_same_v<value_type, double>,
                "metagrad: matmul is defined for float and double");

  MatmulExpr(A a, B b, value_type alpha) : a_(std::forward<A>(a)), b_(std::forward<B>(b)), alpha_(alpha) {}

  const AE& lhs() const { return a_; }
  const BE& rhs() const { return b_; }
  value_type alpha() const { return alpha_; }
  auto children() const { return detail::refs(a_, b_); }
  bool same_params(const MatmulExpr& o) const { return detail::bits_equal(alpha_, o.alpha_); }
  /// The same product scaled by s (folds into the GEMM's alpha).
  MatmulExpr scaled(value_type s) const& { return MatmulExpr(a_, b_, alpha_ * s); }
  MatmulExpr scaled(value_type s) && { return MatmulExpr(std::forward<A>(a_), std::forward<B>(b_), alpha_ * s); }

  /// @throws shape_error naming matmul and both shapes when the inner extents or batch axes disagree.
  Shape<rank> shape() const { return out_shape(a_.shape(), b_.shape()); }

  /// dst = alpha a @ b (beta = 0), or dst = alpha a @ b + beta dst. dst is (re)allocated when its shape
  /// differs and beta == 0.
  template <int RD>
  void eval_into(Tensor<value_type, RD>& dst, value_type beta = 0) const {
    static_assert(RD == rank);
    const auto as = a_.shape();
    const auto bs = b_.shape();
    const auto os = out_shape(as, bs);
    const Device dev = detail::operands_device(*this, "matmul").value_or(Device::cpu());
    if (dst.defined() && dst.device() != dev)
      throw device_error("matmul: the operands are on " + dev.str() + " but the destination is on " +
                         dst.device().str());
    if (!dst.defined() || !(dst.shape() == os)) {
      if (beta != value_type(0))
        throw shape_error("matmul: cannot accumulate into a tensor of shape " +
                          (dst.defined() ? to_string(dst.shape()) : std::string("(empty)")) +
                          "; the product has shape " + to_string(os));
      dst.allocate(os, dev);
    }
    if (os.numel() == 0) return;
    const Operand pa = prepare(a_, as, opa_.get(), dev);
    const Operand pb = prepare(b_, bs, opb_.get(), dev);
    // The destination must be row-major within each matrix for the GEMM; otherwise use a temporary.
    const bool direct = (os[rank - 1] == 1 || dst.strides()[rank - 1] == 1) &&
                        (os[rank - 2] == 1 || dst.strides()[rank - 2] >= os[rank - 1]) && !overlaps(dst, pa, pb);
    if (direct) {
      run(pa, pb, os, dst.data(), dst.strides(), beta, dev);
    } else {
      Tensor<value_type, rank> tmp;
      tmp.allocate(os, dev);
      if (beta != value_type(0)) tmp.assign(dst);
      run(pa, pb, os, tmp.data(), tmp.strides(), beta, dev);
      dst.assign(tmp);
    }
  }

  /// dst += alpha a @ b as one GEMM with beta = 1. @pre dst has the product's shape.
  template <int RD>
  void accumulate_into(Tensor<value_type, RD>& dst) const {
    eval_into(dst, value_type(1));
  }

 private:
  // An operand ready for GEMM: base pointer, its matrix layout and its batch strides (right-aligned to
  // the output's batch axes, 0 where broadcast).
  struct Operand {
    const value_type* ptr;
    detail::MatrixLayout layout;
    index_t rows, cols;
    Array<index_t, (batch_rank > 0 ? batch_rank : 1)> bstride;
    const void* lo;
    const void* hi;
  };

  template <class X, int RX>
  static Operand prepare(const X& x, const Shape<RX>& xs, Tensor<value_type, RX>& copy, Device dev) {
    auto p = lower_expr(x, xs);
    Operand o{};
    o.rows = xs[RX - 2];
    o.cols = xs[RX - 1];
    const value_type* ptr = nullptr;
    Strides<RX> st{};
    bool usable = false;
    if constexpr (is_leaf_plan_v<decltype(p)>) {
      ptr = p.ptr;
      for (int d = 0; d < RX; ++d) st[d] = xs[d] == 1 ? 0 : p.strides[d];
      o.layout = detail::matrix_layout(o.rows, o.cols, st[RX - 2], st[RX - 1]);
      usable = o.layout.ok;
      for (int d = 0; d < RX; ++d) usable &= st[d] >= 0;
    }
    if (!usable) {
      // A computed operand (or an unusable layout) is evaluated once into a contiguous buffer. A computed
      // operand seen through a transpose of its last two axes (the gradients' t(h)) is evaluated as it is
      // and handed over with a transpose flag: never a transposed copy.
      bool swapped = false;
      if constexpr (requires {
                      x.axes();
                      x.operand();
                    }) {
        if constexpr (std::remove_cvref_t<decltype(x.operand())>::rank == RX) {
          const auto& ax = x.axes();
          swapped = RX >= 2 && ax[RX - 1] == RX - 2 && ax[RX - 2] == RX - 1;
          for (int d = 0; d < RX - 2; ++d) swapped &= ax[d] == d;
          if (swapped) {
            Shape<RX> is = xs;
            is[RX - 2] = xs[RX - 1];
            is[RX - 1] = xs[RX - 2];
            detail::prepare_destination(copy, is, dev);
            run_fill(dev, copy.data(), copy.strides(), is, lower_expr(x.operand(), is));
            st = copy.strides();
            std::swap(st[RX - 2], st[RX - 1]);
          }
        }
      }
      if (!swapped) {
        detail::prepare_destination(copy, xs, dev);
        run_fill(dev, copy.data(), copy.strides(), xs, p);
        st = copy.strides();
      }
      ptr = copy.data();
      for (int d = 0; d < RX; ++d)
        if (xs[d] == 1) st[d] = 0;
      o.layout = detail::matrix_layout(o.rows, o.cols, st[RX - 2], st[RX - 1]);
    }
    o.ptr = ptr;
    for (int d = 0; d < batch_rank; ++d) {
      const int c = d - (batch_rank - (RX - 2));
      o.bstride[d] = c < 0 ? 0 : st[c];
    }
    const auto r = offset_range(xs, st);
    o.lo = ptr + r.lo;
    o.hi = ptr + r.hi + 1;
    return o;
  }

  template <int RD>
  static bool overlaps(const Tensor<value_type, RD>& dst, const Operand& a, const Operand& b) {
    const auto r = offset_range(dst.shape(), dst.strides());
    const char* lo = reinterpret_cast<const char*>(dst.data() + r.lo);
    const char* hi = reinterpret_cast<const char*>(dst.data() + r.hi + 1);
    auto hit = [&](const Operand& o) {
      return !(static_cast<const char*>(o.hi) <= lo || static_cast<const char*>(o.lo) >= hi);
    };
    return hit(a) || hit(b);
  }

  void run(const Operand& pa, const Operand& pb, const Shape<rank>& os, value_type* out, const Strides<rank>& ost,
           value_type beta, Device dev) const {
    const index_t m = os[rank - 2], n = os[rank - 1], k = pa.cols;
    const index_t ldc = m == 1 ? n : ost[rank - 2];
    if constexpr (batch_rank == 0) {
      run_gemm(GemmCall<value_type>{1, pa.layout.trans, pb.layout.trans, m, n, k, alpha_, pa.ptr, pa.layout.ld, 0,
                                    pb.ptr, pb.layout.ld, 0, beta, out, ldc, 0, dev});
    } else {
      // The innermost batch axis becomes the GEMM batch; the others are looped over.
      constexpr int last = batch_rank - 1;
      index_t outer = 1;
      for (int d = 0; d < last; ++d) outer *= os[d];
      for (index_t o = 0; o < outer; ++o) {
        index_t rem = o, offa = 0, offb = 0, offc = 0;
        for (int d = last - 1; d >= 0; --d) {
          const index_t i = rem % os[d];
          rem /= os[d];
          offa += i * pa.bstride[d];
          offb += i * pb.bstride[d];
          offc += i * (os[d] == 1 ? 0 : ost[d]);
        }
        run_gemm(GemmCall<value_type>{os[last], pa.layout.trans, pb.layout.trans, m, n, k, alpha_, pa.ptr + offa,
                                      pa.layout.ld, pa.bstride[last], pb.ptr + offb, pb.layout.ld, pb.bstride[last],
                                      beta, out + offc, ldc, ost[last], dev});
      }
    }
  }

  static Shape<rank> out_shape(const Shape<RA>& as, const Shape<RB>& bs) {
    if (as[RA - 1] != bs[RB - 2])
      throw shape_error("matmul: the inner extents of " + to_string(as) + " and " + to_string(bs) + " disagree (" +
                        std::to_string(as[RA - 1]) + " vs " + std::to_string(bs[RB - 2]) + ")");
    Shape<rank> s;
    for (int d = 0; d < batch_rank; ++d) {
      const int ca = d - (batch_rank - (RA - 2)), cb = d - (batch_rank - (RB - 2));
      const index_t ea = ca < 0 ? 1 : as[ca], eb = cb < 0 ? 1 : bs[cb];
      if (ea != eb && ea != 1 && eb != 1)
        throw shape_error("matmul: the batch axes of " + to_string(as) + " and " + to_string(bs) + " do not broadcast");
      s[d] = ea == 1 ? eb : ea;
    }
    s[rank - 2] = as[RA - 2];
    s[rank - 1] = bs[RB - 1];
    return s;
  }

  A a_;
  B b_;
  value_type alpha_;
  detail::Lazy<Tensor<value_type, RA>> opa_;
  detail::Lazy<Tensor<value_type, RB>> opb_;
};

/// alpha * (a @ b). Both operands float or double, rank >= 2; batch axes broadcast.
template <expression A, expression B>
auto matmul(A&& a, B&& b, double alpha = 1.0) {
  using T = expr_value_t<A>;
  return MatmulExpr<closure_t<A&&>, closure_t<B&&>>(std::forward<A>(a), std::forward<B>(b), static_cast<T>(alpha));
}

// s * matmul(a, b) and matmul(a, b) * s fold s into the GEMM's alpha when the product is a temporary. A
// named product (auto z = matmul(a, b); z * s) stays one node that other uses share, and the factor is an
// elementwise multiply: folding it would make a second GEMM.
template <class S, class A, class B>
requires std::is_arithmetic_v<S>
auto operator*(S s, MatmulExpr<A, B>&& m) {
  return std::move(m).scaled(static_cast<typename MatmulExpr<A, B>::value_type>(s));
}
template <class S, class A, class B>
requires std::is_arithmetic_v<S>
auto operator*(MatmulExpr<A, B>&& m, S s) {
  return std::move(m).scaled(static_cast<typename MatmulExpr<A, B>::value_type>(s));
}

METAGRAD_NAMESPACE_END
