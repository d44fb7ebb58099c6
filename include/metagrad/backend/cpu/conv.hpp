// metagrad/backend/cpu/conv.hpp — the CPU answer to run_conv2d(Conv2dCall) (expr/conv.hpp): 2-D convolution
// forward, backward-data and backward-weight, by oneDNN when the build has it (METAGRAD_WITH_DNNL) and by
// im2col + GEMM (cpu::gemm: CBLAS or the built-in kernel) always. Both are callable directly
// (cpu::conv2d_im2col, cpu::conv2d_onednn) and cpu::set_conv_algorithm() pins one, for tests and benchmarks.
// A forward call's bias and activation (expr/conv_bias.hpp) are fused in both: oneDNN's bias argument and
// eltwise post-op, or a loop over each GEMM's output while it is in cache. Include <metagrad/metagrad.hpp>
// instead.
//
// im2col: for each image and group, the input patches are unrolled into a [C_in/g kH kW, OH OW] matrix
// (zeros where the window reaches into the padding), and the convolution is one GEMM with the weights
// viewed as [C_out/g, C_in/g kH kW]. Backward-data is the transposed GEMM followed by col2im (patches
// added back into the input's shape); backward-weight is a GEMM of the output adjoint with the unrolled
// input, summed over the batch. A 1x1 convolution with stride 1 and no padding needs no unrolling. Small
// images run side by side on the CPU threads (one GEMM per image on each thread); images too large for
// that run one after another, each GEMM threaded.
//
// oneDNN: a primitive per (pass, geometry, thread count), created on first use and cached per thread, so
// a training loop creates none after its first step. The operands stay in metagrad's plain NCHW / OIHW
// layouts; the primitive works on the blocked layouts oneDNN picks for speed (format_tag::any), with
// reorders in and out: with plain layouts this oneDNN (2.6) falls back to its slower GEMM convolution.
// oneDNN here runs on OpenMP and reads the thread count (set_num_threads) when a primitive is created,
// hence the thread count in the cache key.
#pragma once

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/error.hpp"
#include "../../expr/conv.hpp"
#include "gemm.hpp"
#include "parallel.hpp"

// nvcc 13's front end stops with an internal error inside <oneapi/dnnl/dnnl.hpp>, so a translation unit
// compiled by nvcc runs its CPU convolutions with im2col + GEMM (host translation units keep oneDNN).
#if defined(METAGRAD_WITH_DNNL) && METAGRAD_WITH_DNNL && !defined(__CUDACC__)
#include <oneapi/dnnl/dnnl.hpp>
#define METAGRAD_CONV_HAVE_DNNL_ 1
#else
#define METAGRAD_CONV_HAVE_DNNL_ 0
#endif

METAGRAD_NAMESPACE_BEGIN
namespace cpu {

/// Which implementation run_conv2d uses on the CPU. `automatic` picks per pass and shape (oneDNN where it
/// is available and measured faster, im2col + GEMM otherwise and always for double).
enum class ConvAlgorithm { automatic, im2col, onednn };

namespace detail {
inline ConvAlgorithm& conv_algorithm_setting() {
  static ConvAlgorithm a = ConvAlgorithm::automatic;
  return a;
}
}  // namespace detail

/// Whether this build can run convolutions with oneDNN (METAGRAD_WITH_DNNL).
inline constexpr bool have_onednn() { return METAGRAD_CONV_HAVE_DNNL_ != 0; }

/// Pins the CPU convolution implementation for the whole process (tests, benchmarks); `automatic` restores the
/// default. With `onednn`, a convolution oneDNN cannot run (double, or only its reference implementation
/// available) still runs with im2col.
/// @throws metagrad::error when asked for oneDNN in a build without it.
inline void set_conv_algorithm(ConvAlgorithm a) {
  if (a == ConvAlgorithm::onednn && !have_onednn())
    throw error("set_conv_algorithm: this build has no oneDNN (configure with METAGRAD_WITH_DNNL=ON)");
  detail::conv_algorithm_setting() = a;
}
inline ConvAlgorithm conv_algorithm() { return detail::conv_algorithm_setting(); }

namespace detail {

inline index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

/// A growable per-thread buffer of T (slot `which`), reused across calls so steady state allocates nothing.
template <class T>
T* conv_scratch(std::size_t n, int which) {
  thread_local std::vector<T> bufs[2];
  auto& b = bufs[which];
  if (b.size() < n) b.resize(n);
  return b.data();
}

/// The range [o0, o1) of output positions o whose input position o s + off lies in [0, in).
inline void valid_range(index_t in, index_t out, index_t s, index_t off, index_t& o0, index_t& o1) {
  o0 = off >= 0 ? 0 : ceil_div(-off, s);
  o1 = in - off <= 0 ? 0 : ceil_div(in - off, s);
  o0 = std::min(o0, out);
  o1 = std::clamp(o1, o0, out);
}

/// Unrolls one image's group of `cg` channels (x: [cg, h, w]) into col: [cg kh kw, oh ow].
template <class T>
void im2col(const T* x, const Conv2dGeometry& g, index_t cg, T* col) {
  const index_t ohw = g.oh * g.ow, sh = g.stride.h, sw = g.stride.w;
  for (index_t c = 0; c < cg; ++c)
    for (index_t p = 0; p < g.kh; ++p)
      for (index_t q = 0; q < g.kw; ++q) {
        T* row = col + ((c * g.kh + p) * g.kw + q) * ohw;
        const index_t xoff = q * g.dilation.w - g.padding.w;
        index_t ox0, ox1;
        valid_range(g.w, g.ow, sw, xoff, ox0, ox1);
        for (index_t oy = 0; oy < g.oh; ++oy) {
          T* r = row + oy * g.ow;
          const index_t iy = oy * sh - g.padding.h + p * g.dilation.h;
          if (iy < 0 || iy >= g.h) {
            std::fill(r, r + g.ow, T(0));
            continue;
          }
          const T* xr = x + (c * g.h + iy) * g.w + xoff;
          std::fill(r, r + ox0, T(0));
          if (sw == 1)
            std::copy(xr + ox0, xr + ox1, r + ox0);
          else
            for (index_t ox = ox0; ox < ox1; ++ox) r[ox] = xr[ox * sw];
          std::fill(r + ox1, r + g.ow, T(0));
        }
      }
}

/// Adds col ([cg kh kw, oh ow]) back into one image's group of channels dx ([cg, h, w]); dx is zeroed first.
template <class T>
void col2im(const T* col, const Conv2dGeometry& g, index_t cg, T* dx) {
  const index_t ohw = g.oh * g.ow, sh = g.stride.h, sw = g.stride.w;
  std::fill(dx, dx + cg * g.h * g.w, T(0));
  for (index_t c = 0; c < cg; ++c)
    for (index_t p = 0; p < g.kh; ++p)
      for (index_t q = 0; q < g.kw; ++q) {
        const T* row = col + ((c * g.kh + p) * g.kw + q) * ohw;
        const index_t xoff = q * g.dilation.w - g.padding.w;
        index_t ox0, ox1;
        valid_range(g.w, g.ow, sw, xoff, ox0, ox1);
        for (index_t oy = 0; oy < g.oh; ++oy) {
          const index_t iy = oy * sh - g.padding.h + p * g.dilation.h;
          if (iy < 0 || iy >= g.h) continue;
          const T* r = row + oy * g.ow;
          T* xr = dx + (c * g.h + iy) * g.w + xoff;
          if (sw == 1) {
            METAGRAD_SIMD_LOOP
            for (index_t ox = ox0; ox < ox1; ++ox) xr[ox] += r[ox];
          } else {
            for (index_t ox = ox0; ox < ox1; ++ox) xr[ox * sw] += r[ox];
          }
        }
      }
}

/// One GEMM on the calling thread (the CBLAS runs products this small on the calling thread too; see
/// gemm_batch_side_by_side), or threaded when `threaded`.
template <class T>
void conv_gemm(bool threaded, bool ta, bool tb, index_t M, index_t N, index_t K, const T* A, index_t lda, const T* B,
               index_t ldb, T beta, T* C, index_t ldc) {
  if (threaded) return gemm(ta, tb, M, N, K, T(1), A, lda, B, ldb, beta, C, ldc);
#if defined(METAGRAD_WITH_BLAS)
  if (gemm_fits_blas_int(M, N, K, lda, ldb, ldc))
    return gemm_cblas(ta, tb, M, N, K, T(1), A, lda, B, ldb, beta, C, ldc);
#endif
  gemm_builtin_run(1, ta, tb, M, N, K, T(1), A, lda, B, ldb, beta, C, ldc);
}

/// Calls f(n, threaded) for every image n: side by side on the CPU threads when one image's GEMM is too small
/// to use several threads (f then runs its GEMMs single-threaded), else one image after another.
template <class F>
void for_each_image(const Conv2dGeometry& g, double gemm_work, F&& f) {
  if (gemm_batch_side_by_side(gemm_work)) {
    parallel_for(
        g.n,
        [&](index_t n0, index_t n1) {
          for (index_t n = n0; n < n1; ++n) f(n, false);
        },
        std::max<index_t>(1, static_cast<index_t>(gemm_work * static_cast<double>(g.groups)) / 8), 1);
  } else {
    for (index_t n = 0; n < g.n; ++n) f(n, true);
  }
}

/// y = act(y + bias[o]) over `channels` output channels of one image ([channels, ohw] from y), the first
/// being channel o0: the epilogue of a fused convolution, run while the GEMM's output is still in cache.
/// ReLU is written x < 0 ? 0 : x, as the elementwise relu, so that NaN passes through the same way.
template <class T>
void conv_epilogue(T* y, index_t channels, index_t ohw, const T* bias, index_t o0, Activation act) {
  for (index_t o = 0; o < channels; ++o) {
    T* r = y + o * ohw;
    const T b = bias ? bias[o0 + o] : T(0);
    if (act == Activation::relu) {
      METAGRAD_SIMD_LOOP
      for (index_t i = 0; i < ohw; ++i) {
        const T v = r[i] + b;
        r[i] = v < T(0) ? T(0) : v;
      }
    } else {
      METAGRAD_SIMD_LOOP
      for (index_t i = 0; i < ohw; ++i) r[i] += b;
    }
  }
}

template <class T>
void im2col_forward(const Conv2dCall<T>& c) {
  const Conv2dGeometry& g = c.geom;
  const index_t cg = g.c_in_per_group(), og = g.c_out_per_group(), kk = cg * g.kh * g.kw, ohw = g.oh * g.ow;
  const bool pointwise = g.kh == 1 && g.kw == 1 && g.stride == Size2(1) && g.padding == Size2(0);
  const bool epilogue = c.bias != nullptr || c.activation != Activation::identity;
  for_each_image(g, double(og) * double(ohw) * double(kk), [&](index_t n, bool threaded) {
    T* col = pointwise ? nullptr : conv_scratch<T>(static_cast<std::size_t>(kk * ohw), 0);
    for (index_t gr = 0; gr < g.groups; ++gr) {
      const T* x = c.x + (n * g.c_in + gr * cg) * g.h * g.w;
      T* y = c.out + (n * g.c_out + gr * og) * ohw;
      if (!pointwise) im2col(x, g, cg, col);
      conv_gemm<T>(threaded, false, false, og, ohw, kk, c.w + gr * og * kk, kk, pointwise ? x : col, ohw, T(0), y, ohw);
      if (epilogue) conv_epilogue(y, og, ohw, c.bias, gr * og, c.activation);
    }
  });
}

template <class T>
void im2col_backward_data(const Conv2dCall<T>& c) {
  const Conv2dGeometry& g = c.geom;
  const index_t cg = g.c_in_per_group(), og = g.c_out_per_group(), kk = cg * g.kh * g.kw, ohw = g.oh * g.ow;
  const bool pointwise = g.kh == 1 && g.kw == 1 && g.stride == Size2(1) && g.padding == Size2(0);
  for_each_image(g, double(og) * double(ohw) * double(kk), [&](index_t n, bool threaded) {
    T* col = pointwise ? nullptr : conv_scratch<T>(static_cast<std::size_t>(kk * ohw), 0);
    for (index_t gr = 0; gr < g.groups; ++gr) {
      T* dx = c.out + (n * g.c_in + gr * cg) * g.h * g.w;
      conv_gemm<T>(threaded, true, false, kk, ohw, og, c.w + gr * og * kk, kk, c.dy + (n * g.c_out + gr * og) * ohw,
                   ohw, T(0), pointwise ? dx : col, ohw);
      if (!pointwise) col2im(col, g, cg, dx);
    }
  });
}

template <class T>
void im2col_backward_weight(const Conv2dCall<T>& c) {
  const Conv2dGeometry& g = c.geom;
  const index_t cg = g.c_in_per_group(), og = g.c_out_per_group(), kk = cg * g.kh * g.kw, ohw = g.oh * g.ow;
  const bool pointwise = g.kh == 1 && g.kw == 1 && g.stride == Size2(1) && g.padding == Size2(0);
  const index_t wn = g.c_out * kk;
  // Images [n0, n1) added into dst (overwritten by the first one).
  auto accumulate = [&](index_t n0, index_t n1, T* dst, bool threaded) {
    T* col = pointwise ? nullptr : conv_scratch<T>(static_cast<std::size_t>(kk * ohw), 0);
    for (index_t n = n0; n < n1; ++n)
      for (index_t gr = 0; gr < g.groups; ++gr) {
        const T* x = c.x + (n * g.c_in + gr * cg) * g.h * g.w;
        if (!pointwise) im2col(x, g, cg, col);
        conv_gemm<T>(threaded, false, true, og, kk, ohw, c.dy + (n * g.c_out + gr * og) * ohw, ohw, pointwise ? x : col,
                     ohw, n == n0 ? T(0) : T(1), dst + gr * og * kk, kk);
      }
  };
  const double work = double(og) * double(ohw) * double(kk);
  const index_t parts = std::min<index_t>(num_threads(), g.n);
  if (!gemm_batch_side_by_side(work) || parts <= 1) {
    accumulate(0, g.n, c.out, !gemm_batch_side_by_side(work));
    return;
  }
  // Contiguous runs of images per thread, each summed into its own partial (the first into the output), then
  // the partials added: the result depends on the thread count, never on timing.
  T* partial = conv_scratch<T>(static_cast<std::size_t>((parts - 1) * wn), 1);
  parallel_for(
      parts,
      [&](index_t t0, index_t t1) {
        for (index_t t = t0; t < t1; ++t)
          accumulate(g.n * t / parts, g.n * (t + 1) / parts, t == 0 ? c.out : partial + (t - 1) * wn, false);
      },
      parallel_grain, 1);
  for (index_t t = 1; t < parts; ++t) {
    const T* p = partial + (t - 1) * wn;
    METAGRAD_SIMD_LOOP
    for (index_t i = 0; i < wn; ++i) c.out[i] += p[i];
  }
}

/// @throws metagrad::error when a backward pass carries a bias or an activation (they belong to the forward
///         pass; a backend never drops them silently).
template <class T>
void check_forward_only_epilogue(const Conv2dCall<T>& c) {
  if (c.pass != ConvPass::forward && (c.bias != nullptr || c.activation != Activation::identity))
    throw error(std::string("conv2d: a bias or activation was given to a ") +
                (c.pass == ConvPass::backward_data ? "backward-data" : "backward-weight") +
                " pass; they belong to the forward pass only");
}
}  // namespace detail

/// Runs a convolution pass with im2col + GEMM (CBLAS or the built-in kernel), whatever the build has; a
/// forward pass adds call.bias and applies call.activation in the loop after each GEMM.
/// @pre the call's pointers and geometry are valid (expr/conv.hpp checks the shapes), every extent is >= 1.
/// @throws metagrad::error for a bias or activation on a backward pass.
template <class T>
void conv2d_im2col(const Conv2dCall<T>& c) {
  detail::check_forward_only_epilogue(c);
  switch (c.pass) {
    case ConvPass::forward:
      return detail::im2col_forward(c);
    case ConvPass::backward_data:
      return detail::im2col_backward_data(c);
    case ConvPass::backward_weight:
      return detail::im2col_backward_weight(c);
  }
}

#if METAGRAD_CONV_HAVE_DNNL_
namespace detail {

inline dnnl::engine& dnnl_cpu_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

/// One oneDNN convolution pass for one geometry and thread count, with its memories, reorders and
/// scratchpad, ready to run on new data pointers without creating anything. A forward pass may carry a bias
/// (the primitive's bias argument) and a ReLU (an eltwise post-op): one primitive, no second pass over y.
class DnnlConv {
 public:
  DnnlConv(ConvPass pass, const Conv2dGeometry& g, int threads, bool bias = false,
           Activation act = Activation::identity)
      : pass_(pass), geom_(g), threads_(threads), bias_(bias), act_(act) {
    try {
      build();
      ok_ = impl_.find("ref") == std::string::npos;  // the reference kernels are slower than im2col
    } catch (const dnnl::error&) {
      ok_ = false;  // a geometry this oneDNN does not take: im2col runs it
    }
  }
  bool matches(ConvPass pass, const Conv2dGeometry& g, int threads, bool bias, Activation act) const {
    return pass == pass_ && g == geom_ && threads == threads_ && bias == bias_ && act == act_;
  }
  bool ok() const { return ok_; }
  const std::string& impl() const { return impl_; }

  /// in0, in1 and out as in Arg order: forward (x, w -> y), backward data (dy, w -> dx), backward weight
  /// (dy, x -> dw); `bias` ([c_out]) for a forward pass built with one.
  void run(const float* in0, const float* in1, float* out, const float* bias = nullptr) {
    args_[0].user.set_data_handle(const_cast<float*>(in0));
    args_[1].user.set_data_handle(const_cast<float*>(in1));
    args_[2].user.set_data_handle(out);
    if (bias_) bias_mem_.set_data_handle(const_cast<float*>(bias));
    for (int i = 0; i < 2; ++i)
      if (args_[i].reordered) execute(args_[i].reorder, args_[i].user, args_[i].prim);
    check(dnnl_primitive_execute(prim_.get(), stream_.get(), n_exec_, exec_));
    if (args_[2].reordered) execute(args_[2].reorder, args_[2].prim, args_[2].user);
    check(dnnl_stream_wait(stream_.get()));
  }

 private:
  using md = dnnl::memory::desc;
  using tag = dnnl::memory::format_tag;
  struct Arg {
    dnnl::memory user, prim;
    dnnl::primitive reorder;
    bool reordered = false;
  };

  static void check(dnnl_status_t s) {
    if (s != dnnl_success) throw error("conv2d: a oneDNN primitive failed (status " + std::to_string(int(s)) + ")");
  }
  void execute(const dnnl::primitive& p, const dnnl::memory& from, const dnnl::memory& to) {
    const dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, from.get()}, {DNNL_ARG_TO, to.get()}};
    check(dnnl_primitive_execute(p.get(), stream_.get(), 2, a));
  }

  void build() {
    using dnnl::memory;
    const auto& g = geom_;
    auto& eng = dnnl_cpu_engine();
    const memory::dims xd{g.n, g.c_in, g.h, g.w}, yd{g.n, g.c_out, g.oh, g.ow};
    const memory::dims wd = g.groups > 1 ? memory::dims{g.groups, g.c_out / g.groups, g.c_in / g.groups, g.kh, g.kw}
                                         : memory::dims{g.c_out, g.c_in, g.kh, g.kw};
    const tag wtag = g.groups > 1 ? tag::goihw : tag::oihw;
    const auto f32 = memory::data_type::f32;
    const md x_any(xd, f32, tag::any), w_any(wd, f32, tag::any), y_any(yd, f32, tag::any);
    const md x_user(xd, f32, tag::nchw), w_user(wd, f32, wtag), y_user(yd, f32, tag::nchw);
    // oneDNN counts dilation from 0 and wants the right padding that makes the output extent exact (it may be
    // smaller than the left one when the last window does not reach the end).
    const memory::dims strides{g.stride.h, g.stride.w}, dil{g.dilation.h - 1, g.dilation.w - 1};
    const memory::dims pl{g.padding.h, g.padding.w};
    const memory::dims pr{(g.oh - 1) * g.stride.h + (g.kh - 1) * g.dilation.h + 1 - g.h - g.padding.h,
                          (g.ow - 1) * g.stride.w + (g.kw - 1) * g.dilation.w + 1 - g.w - g.padding.w};
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (act_ == Activation::relu) {
      dnnl::post_ops po;
      po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
      attr.set_post_ops(po);
    }
    const auto alg = dnnl::algorithm::convolution_direct;
    // The bias stays in metagrad's plain [c_out] layout: oneDNN reads it as it is, no reorder.
    const md b_user(memory::dims{g.c_out}, f32, tag::x);
    const dnnl::convolution_forward::primitive_desc fwd(
        bias_ ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, x_any, w_any, b_user, y_any,
                                                strides, dil, pl, pr)
              : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, x_any, w_any, y_any, strides,
                                                dil, pl, pr),
        attr, eng);
    int arg_ids[3] = {};
    md user[3], want[3], scratch;
    if (pass_ == ConvPass::forward) {
      prim_ = dnnl::convolution_forward(fwd);
      impl_ = fwd.impl_info_str();
      user[0] = x_user, want[0] = fwd.src_desc(), arg_ids[0] = DNNL_ARG_SRC;
      user[1] = w_user, want[1] = fwd.weights_desc(), arg_ids[1] = DNNL_ARG_WEIGHTS;
      user[2] = y_user, want[2] = fwd.dst_desc(), arg_ids[2] = DNNL_ARG_DST;
      scratch = fwd.scratchpad_desc();
    } else if (pass_ == ConvPass::backward_data) {
      const dnnl::convolution_backward_data::primitive_desc pd(
          dnnl::convolution_backward_data::desc(alg, x_any, w_any, y_any, strides, dil, pl, pr), attr, eng, fwd);
      prim_ = dnnl::convolution_backward_data(pd);
      impl_ = pd.impl_info_str();
      user[0] = y_user, want[0] = pd.diff_dst_desc(), arg_ids[0] = DNNL_ARG_DIFF_DST;
      user[1] = w_user, want[1] = pd.weights_desc(), arg_ids[1] = DNNL_ARG_WEIGHTS;
      user[2] = x_user, want[2] = pd.diff_src_desc(), arg_ids[2] = DNNL_ARG_DIFF_SRC;
      scratch = pd.scratchpad_desc();
    } else {
      const dnnl::convolution_backward_weights::primitive_desc pd(
          dnnl::convolution_backward_weights::desc(alg, x_any, w_any, y_any, strides, dil, pl, pr), attr, eng, fwd);
      prim_ = dnnl::convolution_backward_weights(pd);
      impl_ = pd.impl_info_str();
      user[0] = y_user, want[0] = pd.diff_dst_desc(), arg_ids[0] = DNNL_ARG_DIFF_DST;
      user[1] = x_user, want[1] = pd.src_desc(), arg_ids[1] = DNNL_ARG_SRC;
      user[2] = w_user, want[2] = pd.diff_weights_desc(), arg_ids[2] = DNNL_ARG_DIFF_WEIGHTS;
      scratch = pd.scratchpad_desc();
    }
    stream_ = dnnl::stream(eng);
    for (int i = 0; i < 3; ++i) {
      Arg& a = args_[i];
      a.user = memory(user[i], eng, nullptr);
      a.reordered = user[i] != want[i];
      if (a.reordered) {
        a.prim = memory(want[i], eng);
        a.reorder =
            i < 2 ? dnnl::primitive(dnnl::reorder(a.user, a.prim)) : dnnl::primitive(dnnl::reorder(a.prim, a.user));
      } else {
        a.prim = a.user;
      }
      exec_[i] = {arg_ids[i], a.prim.get()};
    }
    scratchpad_ = memory(scratch, eng);
    exec_[3] = {DNNL_ARG_SCRATCHPAD, scratchpad_.get()};
    n_exec_ = 4;
    if (bias_) {
      bias_mem_ = memory(b_user, eng, nullptr);
      exec_[n_exec_++] = {DNNL_ARG_BIAS, bias_mem_.get()};
    }
  }

  ConvPass pass_;
  Conv2dGeometry geom_;
  int threads_;
  bool bias_;
  Activation act_;
  bool ok_ = false;
  std::string impl_;
  dnnl::primitive prim_;
  dnnl::stream stream_;
  Arg args_[3];
  dnnl::memory scratchpad_, bias_mem_;
  dnnl_exec_arg_t exec_[5] = {};
  int n_exec_ = 4;
};

/// The oneDNN pass for (pass, geometry, thread count, bias, activation), created on first use. The cache is
/// per thread (a primitive's memories hold the data pointers of one run at a time) and keeps the 64 most
/// recent.
inline DnnlConv& dnnl_conv(ConvPass pass, const Conv2dGeometry& g, bool bias = false,
                           Activation act = Activation::identity) {
  thread_local std::vector<std::unique_ptr<DnnlConv>> cache;
  const int threads = num_threads();
  for (std::size_t i = 0; i < cache.size(); ++i)
    if (cache[i]->matches(pass, g, threads, bias, act)) {
      // Move to the front, so lookups in a steady loop stop at the first few entries.
      if (i > 0)
        std::rotate(cache.begin(), cache.begin() + static_cast<std::ptrdiff_t>(i),
                    cache.begin() + static_cast<std::ptrdiff_t>(i) + 1);
      return *cache.front();
    }
  if (cache.size() >= 64) cache.pop_back();
  cache.insert(cache.begin(), std::make_unique<DnnlConv>(pass, g, threads, bias, act));
  return *cache.front();
}

}  // namespace detail

/// Runs a float convolution pass with oneDNN, a forward pass with call.bias and call.activation in the same
/// primitive. Returns false (and computes nothing) when oneDNN has no implementation for it but its
/// reference one, or rejects the geometry.
/// @pre as conv2d_im2col.
/// @throws metagrad::error for a bias or activation on a backward pass.
inline bool conv2d_onednn(const Conv2dCall<float>& c) {
  detail::check_forward_only_epilogue(c);
  auto& p = detail::dnnl_conv(c.pass, c.geom, c.bias != nullptr, c.activation);
  if (!p.ok()) return false;
  switch (c.pass) {
    case ConvPass::forward:
      p.run(c.x, c.w, c.out, c.bias);
      break;
    case ConvPass::backward_data:
      p.run(c.dy, c.w, c.out);
      break;
    case ConvPass::backward_weight:
      p.run(c.dy, c.x, c.out);
      break;
  }
  return true;
}

/// The name of the oneDNN implementation that runs a pass ("jit:avx512_core", ...), or "" when none does.
inline std::string conv2d_onednn_impl(ConvPass pass, const Conv2dGeometry& g, bool bias = false,
                                      Activation act = Activation::identity) {
  auto& p = detail::dnnl_conv(pass, g, bias, act);
  return p.ok() ? p.impl() : std::string();
}
#endif

namespace detail {
/// The automatic choice between oneDNN and im2col, from bench_conv on LeNet's shapes at batch 64 (AMD EPYC
/// Zen 4, one thread, microseconds): conv1 (1 -> 6 channels, 28 x 28, 5 x 5, padding 2): forward 426 im2col
/// vs 553 oneDNN, forward + weight gradient 850 vs 992, backward-data 5400 in oneDNN; conv2 (6 -> 16, 14 x 14,
/// 5 x 5): forward 682 vs 286, forward + both gradients 2333 vs 1619. With one input channel per group the
/// unrolled matrix is small and oneDNN's blocked kernels have nothing to block over.
inline bool prefer_onednn(const Conv2dCall<float>& c) { return c.geom.c_in_per_group() > 1; }
}  // namespace detail

/// The CPU answer to the convolution hook of expr/conv.hpp (backend/dispatch.hpp calls it for calls on the
/// CPU): oneDNN for float when the build has it and the algorithm setting allows (see set_conv_algorithm),
/// im2col + GEMM otherwise; both honour a forward pass's bias and activation.
/// @throws metagrad::error for a bias or activation on a backward pass.
template <class T>
void run_conv2d(const Conv2dCall<T>& c) {
  detail::check_forward_only_epilogue(c);
#if METAGRAD_CONV_HAVE_DNNL_
  if constexpr (std::is_same_v<T, float>) {
    const auto a = conv_algorithm();
    if (a == ConvAlgorithm::onednn || (a == ConvAlgorithm::automatic && detail::prefer_onednn(c)))
      if (conv2d_onednn(c)) return;
  }
#endif
  conv2d_im2col(c);
}

}  // namespace cpu

METAGRAD_NAMESPACE_END

#undef METAGRAD_CONV_HAVE_DNNL_
