// Tests of core/pack.hpp: the lean pack the graph walks use instead of std::tuple / std::apply, and the
// reading of a node's children() whether it returns detail::refs or a std::tie.
#include <doctest/doctest.h>

#include <metagrad/metagrad.hpp>
#include <string>
#include <tuple>
#include <type_traits>

namespace mg = metagrad;
namespace md = metagrad::detail;

TEST_CASE("pack: make_pack, get_indexed, pack_size_v and pack_cat keep order and values") {
  const auto a = md::make_pack(1, std::string("two"));
  const auto b = md::make_pack(3.5);
  static_assert(md::pack_size_v<decltype(a)> == 2);
  static_assert(md::pack_size_v<md::Pack<>> == 0);
  const auto c = md::pack_cat(a, b);
  static_assert(std::is_same_v<std::remove_cvref_t<decltype(c)>, md::Pack<int, std::string, double>>);
  CHECK(md::get_indexed<0>(c) == 1);
  CHECK(md::get_indexed<1>(c) == "two");
  CHECK(md::get_indexed<2>(c) == 3.5);
  const auto d = md::pack_cat(md::Pack<>{}, b, md::Pack<>{}, a);
  static_assert(md::pack_size_v<decltype(d)> == 3);
  CHECK(md::get_indexed<0>(d) == 3.5);
  CHECK(md::get_indexed<2>(d) == "two");
  static_assert(md::pack_size_v<decltype(md::pack_cat())> == 0);
}

TEST_CASE("pack: refs holds references and unpack calls f with the members, for a Pack and a std::tuple") {
  int x = 1;
  double y = 2;
  const auto r = md::refs(x, y);
  static_assert(std::is_same_v<md::pack_element_t<0, decltype(r)>, const int&>);
  static_assert(std::is_same_v<md::pack_element_t<1, decltype(r)>, const double&>);
  x = 5;  // a reference, not a copy
  CHECK(&md::get_indexed<0>(r) == &x);
  CHECK(md::unpack([](const int& a, const double& b) { return a + b; }, r) == doctest::Approx(7.0));
  const std::tuple<const int&, const double&> t = std::tie(x, y);
  CHECK(md::unpack([](const int& a, const double& b) { return a * b; }, t) == doctest::Approx(10.0));
  int calls = 0;
  md::unpack([&](const auto&... v) { calls = static_cast<int>(sizeof...(v)); }, md::Pack<>{});
  CHECK(calls == 0);
}

TEST_CASE("pack: children_t reads refs() and std::tie children alike") {
  mg::Tensor<double, 1> t = mg::from_vector<double>({1, 2, 3});
  auto e = mg::exp(t) + t;
  using E = decltype(e);
  using C = md::children_t<E>;
  static_assert(md::pack_size_v<C> == 2);
  static_assert(
      std::is_same_v<md::as_pack<std::tuple<const int&, const double&>>::type, md::Pack<const int&, const double&>>);
  static_assert(md::pack_size_v<md::children_t<mg::Tensor<double, 1>>> == 0);
  CHECK(&md::child<1>(e) == &e.rhs());
}
