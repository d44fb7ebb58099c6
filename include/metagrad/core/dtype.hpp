// metagrad/core/dtype.hpp — the element types a tensor may hold, their names, and the promotion rule of
// mixed-type arithmetic. Include <metagrad/core.hpp> instead.
#pragma once

#include <cstdint>
#include <type_traits>

#include "config.hpp"

METAGRAD_NAMESPACE_BEGIN

/// Run-time tag of an element type.
enum class DType : std::uint8_t { f32, f64, i32, i64, b8, u8 };

/// The element types a Tensor may hold: float, double, int32, int64, bool and uint8 (raw bytes: images,
/// data sets kept compact and converted in the fused input pipeline).
template <class T>
concept dtype = std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, std::int32_t> ||
    std::is_same_v<T, std::int64_t> || std::is_same_v<T, bool> || std::is_same_v<T, std::uint8_t>;

template <class T>
concept floating_dtype = std::is_same_v<T, float> || std::is_same_v<T, double>;

template <class T>
concept integer_dtype = std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::int64_t>;

template <dtype T>
inline constexpr DType dtype_of = std::is_same_v<T, float>          ? DType::f32
                                  : std::is_same_v<T, double>       ? DType::f64
                                  : std::is_same_v<T, std::int32_t> ? DType::i32
                                  : std::is_same_v<T, std::int64_t> ? DType::i64
                                  : std::is_same_v<T, std::uint8_t> ? DType::u8
                                                                    : DType::b8;

/// NumPy-style name of a dtype ("float32", "int64", "bool", ...).
constexpr const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32:
      return "float32";
    case DType::f64:
      return "float64";
    case DType::i32:
      return "int32";
    case DType::i64:
      return "int64";
    case DType::b8:
      return "bool";
    case DType::u8:
      return "uint8";
  }
  return "?";
}

template <dtype T>
constexpr const char* dtype_name() {
  return dtype_name(dtype_of<T>);
}

namespace detail {
template <class T>
inline constexpr int dtype_rank = std::is_same_v<T, bool>           ? 0
                                  : std::is_same_v<T, std::uint8_t> ? 1
                                  : std::is_same_v<T, std::int32_t> ? 2
                                  : std::is_same_v<T, std::int64_t> ? 3
                                  : std::is_same_v<T, float>        ? 4
                                                                    : 5;
}  // namespace detail

/// Result type of arithmetic between A and B: the wider of the two in the order
/// bool < uint8 < int32 < int64 < float < double (int64 with float gives float, as in NumPy's float32 rule for
/// tensors). A plain C++ scalar adopts the tensor's type instead (see the operators).
template <dtype A, dtype B>
using promote_t = std::conditional_t<(detail::dtype_rank<A> >= detail::dtype_rank<B>), A, B>;

METAGRAD_NAMESPACE_END
