// metagrad/core/shape.hpp — fixed-rank extents and strides (Shape<Rank>), the device-safe Array used by
// kernels, contiguous strides and NumPy broadcasting. Include <metagrad/core.hpp> instead.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "config.hpp"
#include "error.hpp"

METAGRAD_NAMESPACE_BEGIN

/// Signed element index and extent type of the public API (64-bit; kernels narrow it to 32 bits when the
/// sizes allow).
using index_t = std::int64_t;

/// A fixed-size array usable in device code (std::array's members are not METAGRAD_HD). Rank 0 keeps one
/// unused slot so the type is never empty.
template <class T, int N>
struct Array {
  T v[N > 0 ? N : 1];
  METAGRAD_HD METAGRAD_INLINE constexpr T& operator[](int i) { return v[i]; }
  METAGRAD_HD METAGRAD_INLINE constexpr const T& operator[](int i) const { return v[i]; }
  static constexpr int size() { return N; }
  constexpr bool operator==(const Array& o) const {
    for (int i = 0; i < N; ++i)
      if (v[i] != o.v[i]) return false;
    return true;
  }
};

/// Extents of a tensor of static rank Rank (run-time sizes).
template <int Rank>
struct Shape : Array<index_t, Rank> {
  static_assert(Rank >= 0, "metagrad: a tensor rank cannot be negative");
  static constexpr int rank = Rank;

  constexpr Shape() : Array<index_t, Rank>{} {}
  constexpr Shape(std::initializer_list<index_t> dims) : Array<index_t, Rank>{} {
    if (static_cast<int>(dims.size()) != Rank)
      throw shape_error("Shape: " + std::to_string(dims.size()) + " extents given for a rank-" + std::to_string(Rank) +
                        " shape");
    int i = 0;
    for (index_t d : dims) {
      if (d < 0) throw shape_error("Shape: negative extent " + std::to_string(d));
      this->v[i++] = d;
    }
  }
  constexpr explicit Shape(const Array<index_t, Rank>& a) : Array<index_t, Rank>(a) {}

  /// Number of elements (1 for rank 0).
  constexpr index_t numel() const {
    index_t n = 1;
    for (int i = 0; i < Rank; ++i) n *= this->v[i];
    return n;
  }
  constexpr bool operator==(const Shape& o) const { return Array<index_t, Rank>::operator==(o); }
};

template <int Rank>
using Strides = Array<index_t, Rank>;

/// "[2, 3, 4]".
template <int Rank>
std::string to_string(const Array<index_t, Rank>& s) {
  std::string r = "[";
  for (int i = 0; i < Rank; ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

/// Row-major (C-order) strides, in elements.
template <int Rank>
constexpr Strides<Rank> contiguous_strides(const Shape<Rank>& s) {
  Strides<Rank> st{};
  index_t acc = 1;
  for (int i = Rank - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

/// True when (shape, strides) is C-contiguous; extents of 1 may carry any stride.
template <int Rank>
constexpr bool is_contiguous(const Shape<Rank>& s, const Strides<Rank>& st) {
  index_t acc = 1;
  for (int i = Rank - 1; i >= 0; --i) {
    if (s[i] != 1 && st[i] != acc) return false;
    acc *= s[i];
  }
  return true;
}

/// Element offsets [lo, hi] of the first and last elements a (shape, strides) layout reaches; strides may
/// be negative. @pre every extent is at least 1.
struct OffsetRange {
  index_t lo = 0, hi = 0;
};
template <int Rank>
constexpr OffsetRange offset_range(const Array<index_t, Rank>& shape, const Strides<Rank>& strides) {
  OffsetRange r;
  for (int d = 0; d < Rank; ++d) {
    const index_t span = (shape[d] - 1) * strides[d];
    (span < 0 ? r.lo : r.hi) += span;
  }
  return r;
}

/// NumPy broadcasting of two shapes, right-aligned; throws shape_error naming `op` and both shapes.
template <int RA, int RB>
Shape<(RA > RB ? RA : RB)> broadcast_shapes(const Shape<RA>& a, const Shape<RB>& b, const char* op) {
  constexpr int R = RA > RB ? RA : RB;
  Shape<R> out;
  for (int i = 0; i < R; ++i) {
    const int ia = i - (R - RA), ib = i - (R - RB);
    const index_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1)
      throw shape_error(std::string(op) + ": shapes " + to_string(a) + " and " + to_string(b) +
                        " cannot be broadcast together (axis " + std::to_string(i) + ": " + std::to_string(da) +
                        " vs " + std::to_string(db) + ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

/// Throws shape_error unless `from` broadcasts to exactly `to` (the rule of assignment and broadcast_to).
template <int RF, int RT>
void check_broadcastable_to(const Shape<RF>& from, const Shape<RT>& to, const char* op) {
  bool ok = RF <= RT;
  for (int i = 0; ok && i < RF; ++i) {
    const index_t f = from[i], t = to[i + (RT - RF)];
    ok = f == t || f == 1;
  }
  if (!ok)
    throw shape_error(std::string(op) + ": shape " + to_string(from) + " cannot be broadcast to " + to_string(to));
}

/// Normalises a possibly negative axis against `rank`; throws index_error naming `op` when out of range.
inline int normalize_axis(int axis, int rank, const char* op) {
  if (axis < -rank || axis >= rank)
    throw index_error(std::string(op) + ": axis " + std::to_string(axis) + " is out of range for rank " +
                      std::to_string(rank));
  return axis < 0 ? axis + rank : axis;
}

METAGRAD_NAMESPACE_END
