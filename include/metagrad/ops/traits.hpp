// metagrad/ops/traits.hpp — type helpers shared by the scalar functors of ops/. Include <metagrad/expr.hpp>.
#pragma once

#include <type_traits>

#include "../core/config.hpp"
#include "../core/dtype.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace ops {

/// The floating type a mathematical function of T computes in: double stays double, everything else
/// (float, integers, bool) computes in float, as torch does for integer tensors.
template <class T>
using float_of_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T>
inline constexpr bool is_bool_v = std::is_same_v<T, bool>;

}  // namespace ops
METAGRAD_NAMESPACE_END
