// metagrad/core/pack.hpp — a lean heterogeneous pack (an aggregate of indexed members) and unpack(f, t),
// the two tuple tools the graph walks use in place of std::tuple, std::tuple_cat and std::apply. Why: a
// compiled training step instantiates them over thousands of expression types, and the standard ones bring
// their constraint machinery with every instantiation (std::apply's noexcept test, std::tuple's
// converting-constructor checks, std::invoke), each an instantiation of libstdc++'s __conditional_t. nvcc's
// device pass handles those in time quadratic in their number: the LeNet training step's device compile went
// past 10 minutes and 10 GB (bench/README.md, "nvcc's front end and compiled gradients"). A Pack is built by
// aggregate initialisation and read by get_indexed<I>, with nothing else to instantiate.
// Include <metagrad/core.hpp> instead.
#pragma once

#include <array>
#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

#include "config.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace detail {

/// Member I of a pack.
template <std::size_t I, class T>
struct Indexed {
  T value;
};

/// An aggregate holding one T of each type, reached by index: `get_indexed<I>(p)`.
template <class Seq, class... T>
struct IndexedPack;
template <std::size_t... I, class... T>
struct IndexedPack<std::index_sequence<I...>, T...> : Indexed<I, T>... {
  static constexpr std::size_t size = sizeof...(T);
};

/// The pack of T... (values, never references).
template <class... T>
using Pack = IndexedPack<std::index_sequence_for<T...>, T...>;

template <std::size_t I, class T>
METAGRAD_HD constexpr T& get_indexed(Indexed<I, T>& h) {
  return h.value;
}
template <std::size_t I, class T>
METAGRAD_HD constexpr const T& get_indexed(const Indexed<I, T>& h) {
  return h.value;
}

template <class P>
inline constexpr std::size_t pack_size_v = std::remove_cvref_t<P>::size;

/// The operands of a node, by reference: what children() returns (a Pack of const references).
template <class... A>
auto refs(const A&... a) {
  using R = Pack<const A&...>;
  return R{{a}...};
}

template <std::size_t I, class T>
T pack_element_of(const Indexed<I, T>&);  // declared only: pack_element_t's deduction
/// The type of member I of pack P (a reference type for refs()).
template <std::size_t I, class P>
using pack_element_t = decltype(pack_element_of<I>(std::declval<const P&>()));

/// A pack of copies of `v...`.
template <class... T>
auto make_pack(T&&... v) {
  using R = Pack<std::remove_cvref_t<T>...>;
  return R{{std::forward<T>(v)}...};
}

/// The members of `a` followed by those of `b`. (The result type is spelled inside: nvcc's front end
/// rejects Pack<A..., B...> as a declared return type, "unexpected function type".)
template <std::size_t... I, class... A, std::size_t... J, class... B>
auto pack_cat(const IndexedPack<std::index_sequence<I...>, A...>& a,
              const IndexedPack<std::index_sequence<J...>, B...>& b) {
  using R = Pack<A..., B...>;
  return R{{get_indexed<I>(a)}..., {get_indexed<J>(b)}...};
}
inline Pack<> pack_cat() { return {}; }
template <class P>
P pack_cat(const P& p) {
  return p;
}

// Where member K of a concatenation of packs of sizes N... comes from: pack which[K], member at[K].
template <std::size_t... N>
struct CatIndex {
  static constexpr std::size_t total = (N + ... + 0);
  static constexpr auto table() {
    std::array<std::size_t, total + 1> which{}, at{};
    const std::size_t sizes[] = {N..., 0};
    std::size_t k = 0;
    for (std::size_t j = 0; j < sizeof...(N); ++j)
      for (std::size_t i = 0; i < sizes[j]; ++i, ++k) {
        which[k] = j;
        at[k] = i;
      }
    return std::pair{which, at};
  }
  static constexpr auto which = table().first;
  static constexpr auto at = table().second;
};

/// A list of types (an empty tag), and the concatenation of such lists by a fold over operator|: flat, no
/// recursion, so its template depth stays constant however long the lists (autodiff's walks use it too).
template <class... T>
struct types {};
template <class... A, class... B>
auto operator|(types<A...>, types<B...>) -> types<A..., B...>;
/// The concatenation of type lists L... (types<...> each).
template <class... L>
struct cat {
  using type = decltype((types<>{} | ... | L{}));
};

template <class P>
struct pack_types;
template <class Seq, class... T>
struct pack_types<IndexedPack<Seq, T...>> {
  using type = types<T...>;
};
template <class L>
struct pack_of_types;
template <class... T>
struct pack_of_types<types<T...>> {
  using type = Pack<T...>;
};

/// The members of every pack, in order, copied once: a pairwise fold would copy the growing result at
/// every step (a dozen copies of a gradient's contributions when one pack in a dozen is not empty, all on
/// the stack).
template <class P, class Q, class R, class... S>
auto pack_cat(const P& p, const Q& q, const R& r, const S&... s) {
  using Out =
      typename pack_of_types<typename cat<typename pack_types<P>::type, typename pack_types<Q>::type,
                                          typename pack_types<R>::type, typename pack_types<S>::type...>::type>::type;
  using C = CatIndex<P::size, Q::size, R::size, S::size...>;
  const auto all = refs(p, q, r, s...);
  return [&]<std::size_t... K>(std::index_sequence<K...>) {
    return Out{{get_indexed<C::at[K]>(get_indexed<C::which[K]>(all))}...};
  }
  (std::make_index_sequence<C::total>{});
}

template <class F, class Tuple, std::size_t... I>
decltype(auto) unpack_tuple(F& f, const Tuple& t, std::index_sequence<I...>) {
  return f(std::get<I>(t)...);
}

/// f(members of t...), for a Pack or a std::tuple (what children() returns). Unlike std::apply it calls f
/// directly and asks nothing of it (no noexcept test, no std::invoke), so each use is one instantiation.
template <class F, std::size_t... I, class... T>
decltype(auto) unpack(F&& f, const IndexedPack<std::index_sequence<I...>, T...>& p) {
  return f(get_indexed<I>(p)...);
}
template <class F, class... T>
decltype(auto) unpack(F&& f, const std::tuple<T...>& t) {
  return unpack_tuple(f, t, std::index_sequence_for<T...>{});
}

}  // namespace detail
METAGRAD_NAMESPACE_END
