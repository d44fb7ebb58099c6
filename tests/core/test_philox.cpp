// Tests of metagrad/core/philox.hpp: the Random123 known-answer vectors, the stream and element layout against
// an independent Python implementation, and the statistics of the uniform, normal and integer draws.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <metagrad/core/philox.hpp>
#include <vector>

namespace mg = metagrad;

namespace {

constexpr std::uint64_t kN = 1'000'000;

bool same(const mg::Philox4& a, std::uint32_t w0, std::uint32_t w1, std::uint32_t w2, std::uint32_t w3) {
  return a.v[0] == w0 && a.v[1] == w1 && a.v[2] == w2 && a.v[3] == w3;
}

// Pearson's chi-square of observed counts against equal expected counts.
double chi_square(const std::vector<std::uint64_t>& counts, double total) {
  const double expected = total / static_cast<double>(counts.size());
  double chi2 = 0;
  for (std::uint64_t c : counts) chi2 += (static_cast<double>(c) - expected) * (static_cast<double>(c) - expected);
  return chi2 / expected;
}

// Two-sided bounds of chi-square with 99 degrees of freedom at p = 1e-6 on each side (Wilson–Hilferty), so a
// correct generator fails one of these checks about once in half a million runs; the seeds are fixed anyway.
constexpr double kChi2Lo99 = 45.7;
constexpr double kChi2Hi99 = 181.0;

struct Moments {
  double mean, var, skew, kurt;
};

template <class F>
Moments moments(std::uint64_t n, F&& f) {
  double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
  std::vector<double> x(n);
  for (std::uint64_t i = 0; i < n; ++i) x[i] = static_cast<double>(f(i)), s1 += x[i];
  const double mean = s1 / static_cast<double>(n);
  for (double v : x) {
    const double d = v - mean;
    s2 += d * d, s3 += d * d * d, s4 += d * d * d * d;
  }
  const double var = s2 / static_cast<double>(n);
  return {mean, var, s3 / static_cast<double>(n) / std::pow(var, 1.5), s4 / static_cast<double>(n) / (var * var)};
}

}  // namespace

TEST_CASE("philox: Random123 known-answer vectors") {
  // Random123 tests/kat_vectors (github.com/DEShawResearch/random123), lines "philox4x32 R ctr[4] key[2] out[4]";
  // also reproduced by an independent Python implementation written from Salmon et al. 2011.
  SUBCASE("ten rounds") {
    CHECK(same(mg::philox4x32_10({0, 0, 0, 0}, {0, 0}), 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8));
    CHECK(same(mg::philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}),
               0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd));
    CHECK(same(mg::philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
               0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1));
  }
  SUBCASE("seven rounds, which pins the key schedule round by round") {
    CHECK(same(mg::philox4x32_r<7>({0, 0, 0, 0}, {0, 0}), 0x5f6fb709, 0x0d893f64, 0x4f121f81, 0x4f730a48));
    CHECK(same(mg::philox4x32_r<7>({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}),
               0x5207ddc2, 0x45165e59, 0x4d8ee751, 0x8c52f662));
    CHECK(same(mg::philox4x32_r<7>({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
               0x4dfccaba, 0x190a87f0, 0xc47362ba, 0xb6b5242a));
  }
  SUBCASE("at compile time") {
    constexpr mg::Philox4 x = mg::philox4x32_10({0, 0, 0, 0}, {0, 0});
    static_assert(x.v[0] == 0x6627e8d5 && x.v[3] == 0x9b00dbd8);
  }
}

TEST_CASE("philox: stream layout") {
  constexpr std::uint64_t seed = 0x0123456789abcdefull, stream = 0xfedcba9876543210ull;
  const mg::PhiloxStream s{seed, stream};

  SUBCASE("key is the seed, counter is (block low, block high, stream low, stream high)") {
    CHECK(s.key().k0 == 0x89abcdefu);
    CHECK(s.key().k1 == 0x01234567u);
    const mg::Philox4 direct =
        mg::philox4x32_10({0x55667788u, 0x11223344u, 0x76543210u, 0xfedcba98u}, {0x89abcdefu, 0x01234567u});
    const mg::Philox4 b = s.block(0x1122334455667788ull);
    CHECK(same(b, direct.v[0], direct.v[1], direct.v[2], direct.v[3]));
  }
  SUBCASE("blocks match the independent Python implementation") {
    CHECK(same(s.block(5), 0x59d891d4, 0xb8fbd93d, 0xc1942aeb, 0x809c4b45));
    CHECK(same(s.block(0x1122334455667788ull), 0x7fa77140, 0xb9611ec1, 0xd90cd420, 0x119570ec));
  }
  SUBCASE("element draws match the independent Python implementation") {
    const std::uint64_t idx[] = {0, 1, 2, 3, 5, 6, 7, 1000003};
    const std::uint32_t u32[] = {0xaef2adf7, 0xf69b5950, 0x3ceb44f4, 0x89b6573a,
                                 0x4671fd85, 0x74decae0, 0x4b77ec76, 0xb86ba70a};
    const std::uint64_t u64[] = {0xaef2adf7f69b5950, 0x3ceb44f489b6573a, 0xec2ab39f4671fd85, 0x74decae04b77ec76,
                                 0x51cdda2848cc01cd, 0x93f3ffb3e57c34a2, 0x1b39e857288d28b3, 0x91aea7693200e74f};
    const std::int64_t ints[] = {366, -525, 845, -87, -361, 155, -788, 138};
    const std::int64_t wide[] = {3382957550614567247,  -4833693957978958023, 7794239601781112196,  -801980618937734027,
                                 -3328764683002052148, 1437773854175671457,  -7261517463118075726, 1274139814844753742};
    const double unif_d[] = {0.6833904962901277,  0.23796492548145776, 0.9225265754561817,  0.4565245435328219,
                             0.31954730494980765, 0.5779418768120059,  0.10635234954729766, 0.5690712577652479};
    const double norm_d[] = {0.0659196286130465, 0.8700760279317823, -0.38670425365297173, 0.10834210172566197,
                             0.5300764651624422, 0.8219428559308097, 0.6488250076979157,   -0.5015645134648893};
    const double norm_f[] = {0.8494835120681132,  -0.199387685342559,   -1.646565606066372, -0.40010705902920995,
                             0.39658016256406464, -0.34785530535471654, 1.2030055219377018, -0.8648591677760542};
    constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
    constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    for (int k = 0; k < 8; ++k) {
      CAPTURE(k);
      const std::uint64_t i = idx[k];
      CHECK(mg::rand_u32(s, i) == u32[k]);
      CHECK(mg::rand_u64(s, i) == u64[k]);
      CHECK(mg::rand_int(s, i, -1000, 1000) == ints[k]);
      CHECK(mg::rand_int(s, i, kMin, kMax) == wide[k]);
      CHECK(mg::rand_uniform<double>(s, i) == unif_d[k]);
      CHECK(mg::rand_uniform<float>(s, i) == static_cast<float>((u32[k] >> 8) * 0x1.0p-24));
      CHECK(mg::rand_normal<double>(s, i) == doctest::Approx(norm_d[k]).epsilon(1e-13));
      CHECK(mg::rand_normal<float>(s, i) == doctest::Approx(norm_f[k]).epsilon(4e-6));
    }
  }
}

TEST_CASE("philox: word-to-number conversions") {
  SUBCASE("uniform_float is [0, 1) on a 2^-24 grid") {
    CHECK(mg::uniform_float(0) == 0.0f);
    CHECK(mg::uniform_float(0xff) == 0.0f);
    CHECK(mg::uniform_float(0x100) == 0x1.0p-24f);
    CHECK(mg::uniform_float(0xffffffffu) == 1.0f - 0x1.0p-24f);
    CHECK(mg::uniform_float(0xffffffffu) < 1.0f);
  }
  SUBCASE("uniform_float_open is (0, 1]") {
    CHECK(mg::uniform_float_open(0) == 0x1.0p-24f);
    CHECK(mg::uniform_float_open(0xffffffffu) == 1.0f);
    CHECK(std::isfinite(std::log(mg::uniform_float_open(0))));
  }
  SUBCASE("uniform_double is [0, 1) on a 2^-53 grid, high word first") {
    CHECK(mg::uniform_double(0, 0) == 0.0);
    CHECK(mg::uniform_double(0, 0x7ff) == 0.0);
    CHECK(mg::uniform_double(0, 0x800) == 0x1.0p-53);
    CHECK(mg::uniform_double(0x80000000u, 0) == 0.5);
    CHECK(mg::uniform_double(0xffffffffu, 0xffffffffu) == 1.0 - 0x1.0p-53);
  }
  SUBCASE("uniform_double_open is (0, 1]") {
    CHECK(mg::uniform_double_open(0, 0) == 0x1.0p-53);
    CHECK(mg::uniform_double_open(0xffffffffu, 0xffffffffu) == 1.0);
  }
  SUBCASE("Box-Muller extremes stay finite and inside the documented cut-off") {
    const auto f = mg::normal_pair_float(0, 0);
    CHECK(f.z0 == doctest::Approx(std::sqrt(48 * std::log(2.0))).epsilon(1e-6));
    CHECK(f.z1 == 0.0f);
    const auto d = mg::normal_pair_double(0, 0, 0, 0);
    CHECK(d.z0 == doctest::Approx(std::sqrt(106 * std::log(2.0))).epsilon(1e-12));
    const auto one = mg::normal_pair_double(0xffffffffu, 0xffffffffu, 0x40000000u, 0);
    CHECK(one.z0 == 0.0);
    CHECK(one.z1 == 0.0);
  }
  SUBCASE("uniform_int maps the word range onto [lo, hi) monotonically") {
    CHECK(mg::uniform_int(0, -5, 5) == -5);
    CHECK(mg::uniform_int(~0ull, -5, 5) == 4);
    CHECK(mg::uniform_int(0x8000000000000000ull, -5, 5) == 0);
    CHECK(mg::uniform_int(~0ull, 7, 7) == 7);
    constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
    constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    CHECK(mg::uniform_int(0, kMin, kMax) == kMin);
    CHECK(mg::uniform_int(~0ull, kMin, kMax) == kMax - 1);
  }
  SUBCASE("mulhi64 agrees with the portable four-product form") {
    const std::uint64_t edge[] = {0, 1, 2, 0xffffffffull, 0x100000000ull, 0x8000000000000000ull, ~0ull};
    for (std::uint64_t a : edge)
      for (std::uint64_t b : edge) CHECK(mg::detail::mulhi64(a, b) == mg::detail::mulhi64_portable(a, b));
    CHECK(mg::detail::mulhi64_portable(~0ull, ~0ull) == ~0ull - 1);
    const mg::PhiloxStream s{99, 0};
    bool ok = true;
    for (std::uint64_t i = 0; i < 100'000; i += 2) {
      const std::uint64_t a = mg::rand_u64(s, i), b = mg::rand_u64(s, i + 1);
      ok = ok && mg::detail::mulhi64(a, b) == mg::detail::mulhi64_portable(a, b);
    }
    CHECK(ok);
  }
}

TEST_CASE_TEMPLATE("philox: rand_uniform is uniform on [0, 1)", T, float, double) {
  const mg::PhiloxStream s{0x5eed, 17};
  std::vector<std::uint64_t> bins(100, 0);
  T lo = 1, hi = 0;
  const Moments m = moments(kN, [&](std::uint64_t i) {
    const T u = mg::rand_uniform<T>(s, i);
    lo = std::min(lo, u), hi = std::max(hi, u);
    ++bins[static_cast<std::size_t>(u * 100)];
    return u;
  });
  CHECK(lo >= T(0));
  CHECK(hi < T(1));
  // Standard errors: mean sqrt(1/12n), variance sqrt((1/80 - 1/144)/n); five of them either way.
  CHECK(std::abs(m.mean - 0.5) < 5 * std::sqrt(1.0 / 12 / kN));
  CHECK(std::abs(m.var - 1.0 / 12) < 5 * std::sqrt((1.0 / 80 - 1.0 / 144) / kN));
  const double chi2 = chi_square(bins, kN);
  CAPTURE(chi2);
  CHECK(chi2 > kChi2Lo99);
  CHECK(chi2 < kChi2Hi99);
  // Neighbouring elements share a block; their correlation must vanish all the same.
  double lag = 0;
  for (std::uint64_t i = 0; i + 1 < kN; ++i)
    lag += (double(mg::rand_uniform<T>(s, i)) - 0.5) * (double(mg::rand_uniform<T>(s, i + 1)) - 0.5);
  CHECK(std::abs(lag / (kN - 1) * 12) < 5 / std::sqrt(double(kN)));
}

TEST_CASE_TEMPLATE("philox: rand_normal is standard normal", T, float, double) {
  const mg::PhiloxStream s{0xabcdef, 3};
  std::vector<std::uint64_t> bins(100, 0);
  const std::vector<double> tail_at = {1, 2, 3, 4};
  std::vector<std::uint64_t> tails(tail_at.size(), 0);
  bool finite = true;
  double max_abs = 0;
  const Moments m = moments(kN, [&](std::uint64_t i) {
    const double z = mg::rand_normal<T>(s, i);
    finite = finite && std::isfinite(z);
    max_abs = std::max(max_abs, std::abs(z));
    for (std::size_t k = 0; k < tail_at.size(); ++k) tails[k] += std::abs(z) > tail_at[k];
    // The normal CDF makes the draws uniform, so their histogram is flat if the shape is right.
    const double p = 0.5 * std::erfc(-z / std::sqrt(2.0));
    ++bins[std::min<std::size_t>(99, static_cast<std::size_t>(p * 100))];
    return z;
  });
  CHECK(finite);
  CHECK(max_abs <= (std::is_same_v<T, float> ? 5.78 : 8.58));
  // Standard errors for n normals: mean 1/sqrt(n), variance sqrt(2/n), skewness sqrt(6/n), kurtosis sqrt(24/n).
  const double n = kN;
  CHECK(std::abs(m.mean) < 5 / std::sqrt(n));
  CHECK(std::abs(m.var - 1) < 5 * std::sqrt(2 / n));
  CHECK(std::abs(m.skew) < 5 * std::sqrt(6 / n));
  CHECK(std::abs(m.kurt - 3) < 5 * std::sqrt(24 / n));
  for (std::size_t k = 0; k < tail_at.size(); ++k) {
    const double p = std::erfc(tail_at[k] / std::sqrt(2.0));
    CAPTURE(tail_at[k]);
    CAPTURE(tails[k]);
    CHECK(std::abs(double(tails[k]) - n * p) < 5 * std::sqrt(n * p * (1 - p)) + 1);
  }
  const double chi2 = chi_square(bins, n);
  CAPTURE(chi2);
  CHECK(chi2 > kChi2Lo99);
  CHECK(chi2 < kChi2Hi99);
  // The two halves of a Box-Muller pair (elements 2k, 2k + 1) are uncorrelated.
  double pair = 0;
  for (std::uint64_t i = 0; i < kN; i += 2) pair += double(mg::rand_normal<T>(s, i)) * mg::rand_normal<T>(s, i + 1);
  CHECK(std::abs(pair / (n / 2)) < 5 / std::sqrt(n / 2));
}

TEST_CASE("philox: rand_int is uniform on [lo, hi)") {
  const mg::PhiloxStream s{2024, 5};
  SUBCASE("100 values pass chi-square and stay in range") {
    std::vector<std::uint64_t> bins(100, 0);
    bool in_range = true;
    for (std::uint64_t i = 0; i < kN; ++i) {
      const std::int64_t v = mg::rand_int(s, i, -50, 50);
      in_range = in_range && v >= -50 && v < 50;
      if (in_range) ++bins[static_cast<std::size_t>(v + 50)];
    }
    REQUIRE(in_range);
    const double chi2 = chi_square(bins, kN);
    CAPTURE(chi2);
    CHECK(chi2 > kChi2Lo99);
    CHECK(chi2 < kChi2Hi99);
  }
  SUBCASE("small, one-value and empty ranges") {
    std::uint64_t count[3] = {0, 0, 0};
    bool ok = true;
    for (std::uint64_t i = 0; i < 30'000; ++i) {
      const std::int64_t v = mg::rand_int(s, i, -3, 0);
      ok = ok && v >= -3 && v < 0;
      if (ok) ++count[v + 3];
      ok = ok && mg::rand_int(s, i, 41, 42) == 41 && mg::rand_int(s, i, 9, 9) == 9;
    }
    REQUIRE(ok);
    for (std::uint64_t c : count) CHECK(std::abs(double(c) - 10'000) < 5 * std::sqrt(30'000 * 2.0 / 9));
  }
  SUBCASE("huge ranges have the right mean") {
    constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
    constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    const std::int64_t big = 1'000'000'000'000;
    double sum_big = 0, sum_wide = 0;
    bool ok = true;
    for (std::uint64_t i = 0; i < kN; ++i) {
      const std::int64_t v = mg::rand_int(s, i, -big, big);
      const std::int64_t w = mg::rand_int(s, i, kMin, kMax);
      ok = ok && v >= -big && v < big && w < kMax;
      sum_big += double(v) / double(big), sum_wide += std::ldexp(double(w), -63);
    }
    REQUIRE(ok);
    // Both are uniform on about [-1, 1) after scaling: standard error of the mean sqrt(1/3n).
    CHECK(std::abs(sum_big / kN) < 5 * std::sqrt(1.0 / 3 / kN));
    CHECK(std::abs(sum_wide / kN) < 5 * std::sqrt(1.0 / 3 / kN));
  }
}

TEST_CASE("philox: element i is a pure function of (seed, stream, i)") {
  const mg::PhiloxStream s{7, 11};
  constexpr std::uint64_t n = 10'007;
  std::vector<float> uf(n), nf(n);
  std::vector<double> ud(n), nd(n);
  std::vector<std::int64_t> ri(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    uf[i] = mg::rand_uniform<float>(s, i), ud[i] = mg::rand_uniform<double>(s, i);
    nf[i] = mg::rand_normal<float>(s, i), nd[i] = mg::rand_normal<double>(s, i);
    ri[i] = mg::rand_int(s, i, -7, 1000);
  }
  auto matches = [&](std::uint64_t i) {
    return uf[i] == mg::rand_uniform<float>(s, i) && ud[i] == mg::rand_uniform<double>(s, i) &&
           nf[i] == mg::rand_normal<float>(s, i) && nd[i] == mg::rand_normal<double>(s, i) &&
           ri[i] == mg::rand_int(s, i, -7, 1000);
  };
  SUBCASE("in reverse order") {
    bool ok = true;
    for (std::uint64_t i = n; i-- > 0;) ok = ok && matches(i);
    CHECK(ok);
  }
  SUBCASE("split over any number of threads, blocked or strided") {
    for (std::uint64_t threads : {1u, 2u, 3u, 7u, 64u, 1000u}) {
      CAPTURE(threads);
      bool ok = true;
      for (std::uint64_t t = threads; t-- > 0;) {
        const std::uint64_t begin = n * t / threads, end = n * (t + 1) / threads;
        for (std::uint64_t i = begin; i < end; ++i) ok = ok && matches(i);
        for (std::uint64_t i = t; i < n; i += threads) ok = ok && matches(i);
      }
      CHECK(ok);
    }
  }
  SUBCASE("from a copy of the stream") {
    const mg::PhiloxStream copy = s;
    CHECK(mg::rand_u32(copy, 1234) == mg::rand_u32(s, 1234));
  }
}

TEST_CASE("philox: distinct seeds and streams give distinct sequences") {
  const std::vector<mg::PhiloxStream> streams = {{0, 0},          {1, 0},     {0, 1},     {1, 1},  {1ull << 32, 0},
                                                 {0, 1ull << 32}, {~0ull, 0}, {0, ~0ull}, {42, 7}, {7, 42}};
  constexpr std::uint64_t n = 4096;
  std::vector<std::vector<std::uint32_t>> words;
  for (const auto& s : streams) {
    words.emplace_back(n);
    for (std::uint64_t i = 0; i < n; ++i) words.back()[i] = mg::rand_u32(s, i);
  }
  for (std::size_t a = 0; a < streams.size(); ++a)
    for (std::size_t b = a + 1; b < streams.size(); ++b) {
      std::uint64_t equal = 0;
      for (std::uint64_t i = 0; i < n; ++i) equal += words[a][i] == words[b][i];
      CAPTURE(a);
      CAPTURE(b);
      // Expected 4096 / 2^32 coincidences: essentially none.
      CHECK(equal <= 1);
    }
  SUBCASE("neighbouring seeds and streams are uncorrelated") {
    const mg::PhiloxStream base{1000, 1000}, next_seed{1001, 1000}, next_stream{1000, 1001};
    double c_seed = 0, c_stream = 0;
    for (std::uint64_t i = 0; i < kN; ++i) {
      const double u = mg::rand_uniform<double>(base, i) - 0.5;
      c_seed += u * (mg::rand_uniform<double>(next_seed, i) - 0.5);
      c_stream += u * (mg::rand_uniform<double>(next_stream, i) - 0.5);
    }
    CHECK(std::abs(c_seed / kN * 12) < 5 / std::sqrt(double(kN)));
    CHECK(std::abs(c_stream / kN * 12) < 5 / std::sqrt(double(kN)));
  }
}
