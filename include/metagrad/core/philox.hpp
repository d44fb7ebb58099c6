// metagrad/core/philox.hpp — the Philox-4x32-10 counter-based generator (Salmon, Moraes, Dror and Shaw,
// "Parallel Random Numbers: As Easy as 1, 2, 3", SC'11; the algorithm of Random123 and cuRAND), the
// (seed, stream) streams built on it, and the functions that turn its words into uniform, normal and
// integer draws. Every element of a random tensor is a pure function of (seed, stream, index), so it is the
// same for any thread count and on CPU and GPU. Include <metagrad/core.hpp> instead.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "config.hpp"

METAGRAD_NAMESPACE_BEGIN

/// The 64-bit key of one Philox-4x32 bijection, as two 32-bit words.
struct PhiloxKey {
  std::uint32_t k0, k1;
};

/// The 128-bit counter Philox-4x32 encrypts, as four 32-bit words (c0 least significant).
struct PhiloxCounter {
  std::uint32_t c0, c1, c2, c3;
};

/// One Philox-4x32 output block: four independent, uniformly distributed 32-bit words.
struct Philox4 {
  std::uint32_t v[4];
};

namespace detail {

// Multipliers and Weyl key increments of Salmon et al. 2011 (Random123 philox.h, PHILOX_M4x32_* and
// PHILOX_W32_*); the increments are the golden ratio and sqrt(3) - 1 in 0.32 fixed point.
inline constexpr std::uint32_t kPhiloxM0 = 0xD2511F53u;
inline constexpr std::uint32_t kPhiloxM1 = 0xCD9E8D57u;
inline constexpr std::uint32_t kPhiloxW0 = 0x9E3779B9u;
inline constexpr std::uint32_t kPhiloxW1 = 0xBB67AE85u;

// The high and low halves of a 32x32 product. On a GPU, __umulhi and a plain multiply map to one IMAD each; a
// uint64_t product there can be widened by the optimiser into an emulated 64-bit multiply. Constant evaluation
// takes the portable path, so the known-answer vectors can be checked at compile time on host and device.
METAGRAD_HD METAGRAD_INLINE constexpr std::uint32_t mulhilo32(std::uint32_t a, std::uint32_t b, std::uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  if (!__builtin_is_constant_evaluated()) {
    lo = a * b;
    return __umulhi(a, b);
  }
#endif
  const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  lo = static_cast<std::uint32_t>(p);
  return static_cast<std::uint32_t>(p >> 32);
}

METAGRAD_HD METAGRAD_INLINE constexpr Philox4 philox4x32_round(Philox4 c, PhiloxKey k) {
  std::uint32_t lo0 = 0, lo1 = 0;
  const std::uint32_t hi0 = mulhilo32(kPhiloxM0, c.v[0], lo0);
  const std::uint32_t hi1 = mulhilo32(kPhiloxM1, c.v[2], lo1);
  return Philox4{{hi1 ^ c.v[1] ^ k.k0, lo1, hi0 ^ c.v[3] ^ k.k1, lo0}};
}

// The high 64 bits of a 64x64 product from four 32-bit partial products; the middle sum stays below 3 * 2^32,
// so it cannot overflow. Kept callable on its own so the tests can check it against __int128.
METAGRAD_HD METAGRAD_INLINE constexpr std::uint64_t mulhi64_portable(std::uint64_t a, std::uint64_t b) {
  const std::uint64_t a_lo = a & 0xFFFFFFFFu, a_hi = a >> 32;
  const std::uint64_t b_lo = b & 0xFFFFFFFFu, b_hi = b >> 32;
  const std::uint64_t ll = a_lo * b_lo, lh = a_lo * b_hi, hl = a_hi * b_lo, hh = a_hi * b_hi;
  const std::uint64_t mid = (ll >> 32) + (lh & 0xFFFFFFFFu) + (hl & 0xFFFFFFFFu);
  return hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

METAGRAD_HD METAGRAD_INLINE std::uint64_t mulhi64(std::uint64_t a, std::uint64_t b) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return __umul64hi(a, b);
#elif defined(__SIZEOF_INT128__)
  __extension__ using U128 = unsigned __int128;
  return static_cast<std::uint64_t>((static_cast<U128>(a) * b) >> 64);
#else
  return mulhi64_portable(a, b);
#endif
}

// Word k of a block by selects rather than v[k]: a run-time index into a register array sends the block to
// local memory on a GPU, while a chain of selects stays in registers and does not branch.
METAGRAD_HD METAGRAD_INLINE constexpr std::uint32_t philox_word(const Philox4& b, std::uint32_t k) {
  return k == 0 ? b.v[0] : k == 1 ? b.v[1] : k == 2 ? b.v[2] : b.v[3];
}

// Words (0, 1) when half is 0 and (2, 3) when it is 1, the first as the high half.
METAGRAD_HD METAGRAD_INLINE constexpr std::uint64_t philox_dword(const Philox4& b, std::uint32_t half) {
  const std::uint32_t hi = half ? b.v[2] : b.v[0];
  const std::uint32_t lo = half ? b.v[3] : b.v[1];
  return (static_cast<std::uint64_t>(hi) << 32) | lo;
}

// The real types the element functions draw; deliberately not floating_dtype, which may grow half types that
// would need their own conversions.
template <class T>
concept philox_real = std::is_same_v<T, float> || std::is_same_v<T, double>;

METAGRAD_HD METAGRAD_INLINE constexpr std::uint32_t lo32(std::uint64_t x) { return static_cast<std::uint32_t>(x); }
METAGRAD_HD METAGRAD_INLINE constexpr std::uint32_t hi32(std::uint64_t x) {
  return static_cast<std::uint32_t>(x >> 32);
}

}  // namespace detail

/// Philox-4x32 with `Rounds` rounds: a keyed bijection of the 128-bit counter. Ten rounds is the standard
/// generator (Crush-resistant with a safety margin); other counts exist for the Random123 test vectors.
template <int Rounds>
METAGRAD_HD METAGRAD_INLINE constexpr Philox4 philox4x32_r(PhiloxCounter ctr, PhiloxKey key) {
  static_assert(Rounds >= 1 && Rounds <= 16, "Philox-4x32 is defined for 1 to 16 rounds");
  Philox4 x{{ctr.c0, ctr.c1, ctr.c2, ctr.c3}};
  for (int r = 0; r < Rounds; ++r) {
    x = detail::philox4x32_round(x, key);
    // The key bump after the last round is dead and folds away.
    key.k0 += detail::kPhiloxW0;
    key.k1 += detail::kPhiloxW1;
  }
  return x;
}

/// Philox-4x32-10: encrypts `ctr` under `key` and returns four uniformly distributed 32-bit words. It is bit
/// for bit the generator of Random123 (`philox4x32`) and cuRAND (`curandStatePhilox4_32_10_t`).
METAGRAD_HD METAGRAD_INLINE constexpr Philox4 philox4x32_10(PhiloxCounter ctr, PhiloxKey key) {
  return philox4x32_r<10>(ctr, key);
}

/// A random stream: the key is the seed, split into (low, high) words, and block b of the stream is the
/// counter (b low, b high, stream low, stream high). Streams with different `stream` values never share a
/// counter, so 2^64 streams of 2^64 blocks each come from one seed without overlap. Callers give each random
/// tensor its own stream (for example a node tag and a training step packed into 64 bits); the element
/// functions below then make element i of that tensor a pure function of (seed, stream, i).
struct PhiloxStream {
  std::uint64_t seed;
  std::uint64_t stream;

  /// The Philox key this stream encrypts under.
  METAGRAD_HD METAGRAD_INLINE constexpr PhiloxKey key() const { return {detail::lo32(seed), detail::hi32(seed)}; }

  /// Block `block_index` of the stream: four fresh 32-bit words.
  METAGRAD_HD METAGRAD_INLINE constexpr Philox4 block(std::uint64_t block_index) const {
    return philox4x32_10(
        {detail::lo32(block_index), detail::hi32(block_index), detail::lo32(stream), detail::hi32(stream)}, key());
  }
};

static_assert(std::is_trivially_copyable_v<PhiloxKey> && std::is_trivially_copyable_v<PhiloxCounter>);
static_assert(std::is_trivially_copyable_v<Philox4> && std::is_trivially_copyable_v<PhiloxStream>);

// ---------------------------------------------------------------------------------------------------------------
// Distributions on raw words. All conversions are exact (no rounding up to 1), so the half-open ranges hold.

/// A float in [0, 1) from the top 24 bits of `x`: (x >> 8) * 2^-24, an even grid of 2^24 values.
METAGRAD_HD METAGRAD_INLINE constexpr float uniform_float(std::uint32_t x) {
  return static_cast<float>(x >> 8) * 0x1.0p-24f;
}

/// A float in (0, 1]: ((x >> 8) + 1) * 2^-24. Safe to take the logarithm of; the smallest value is 2^-24.
METAGRAD_HD METAGRAD_INLINE constexpr float uniform_float_open(std::uint32_t x) {
  return static_cast<float>((x >> 8) + 1u) * 0x1.0p-24f;
}

/// A double in [0, 1) from the top 53 bits of the 64-bit word (hi, lo): an even grid of 2^53 values.
METAGRAD_HD METAGRAD_INLINE constexpr double uniform_double(std::uint32_t hi, std::uint32_t lo) {
  const std::uint64_t x = (static_cast<std::uint64_t>(hi) << 32) | lo;
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

/// A double in (0, 1] from the top 53 bits of (hi, lo); the smallest value is 2^-53.
METAGRAD_HD METAGRAD_INLINE constexpr double uniform_double_open(std::uint32_t hi, std::uint32_t lo) {
  const std::uint64_t x = (static_cast<std::uint64_t>(hi) << 32) | lo;
  return static_cast<double>((x >> 11) + 1u) * 0x1.0p-53;
}

/// Two independent standard normals.
template <class T>
struct NormalPair {
  T z0, z1;
};

/// Box–Muller in float: u1 = uniform_float_open(w0), u2 = uniform_float(w1), r = sqrt(-2 ln u1),
/// z0 = r cos(2 pi u2), z1 = r sin(2 pi u2). Because u1 >= 2^-24, |z| <= sqrt(48 ln 2) ~ 5.77: the tail beyond
/// is cut off (probability 8e-9). CPU and GPU use their own libm, so results may differ in the last ulp or two.
METAGRAD_HD METAGRAD_INLINE NormalPair<float> normal_pair_float(std::uint32_t w0, std::uint32_t w1) {
  const float u1 = uniform_float_open(w0);
  const float u2 = uniform_float(w1);
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  // sincospi(2 u2) needs no argument reduction, so it skips sincos's slow path and its local-memory buffer.
  const float r = ::sqrtf(-2.0f * ::logf(u1));
  float s, c;
  ::sincospif(2.0f * u2, &s, &c);
  return {r * c, r * s};
#else
  const float r = std::sqrt(-2.0f * std::log(u1));
  const float theta = 6.28318530717958647692f * u2;
  return {r * std::cos(theta), r * std::sin(theta)};
#endif
}

/// Box–Muller in double on one block: u1 = uniform_double_open(w0, w1), u2 = uniform_double(w2, w3). The tail is
/// cut at sqrt(106 ln 2) ~ 8.57.
METAGRAD_HD METAGRAD_INLINE NormalPair<double> normal_pair_double(std::uint32_t w0, std::uint32_t w1, std::uint32_t w2,
                                                                  std::uint32_t w3) {
  const double u1 = uniform_double_open(w0, w1);
  const double u2 = uniform_double(w2, w3);
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  const double r = ::sqrt(-2.0 * ::log(u1));
  double s, c;
  ::sincospi(2.0 * u2, &s, &c);
  return {r * c, r * s};
#else
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double theta = 6.28318530717958647692 * u2;
  return {r * std::cos(theta), r * std::sin(theta)};
#endif
}

/// An integer in [lo, hi) from a 64-bit word by Lemire's multiply-shift, lo + floor(x * n / 2^64) with
/// n = hi - lo: no division, no rejection loop, no branch. Each value is hit by floor or ceil of 2^64 / n words,
/// so the relative bias is below n / 2^64 (under 2^-32 for any n up to 2^32). Any range representable in
/// int64 works, [INT64_MIN, INT64_MAX) included. @pre lo < hi (lo == hi returns lo).
METAGRAD_HD METAGRAD_INLINE std::int64_t uniform_int(std::uint64_t x, std::int64_t lo, std::int64_t hi) {
  // Unsigned arithmetic: hi - lo may exceed INT64_MAX, and the sum wraps back into range modulo 2^64.
  const std::uint64_t n = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo);
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(lo) + detail::mulhi64(x, n));
}

// ---------------------------------------------------------------------------------------------------------------
// Element functions. Element i reads only the block and words below, so it never depends on which other
// elements were drawn, in what order, or by which thread. Different kinds of draw from one stream share words:
// give each random tensor its own stream.
//
//   draw                      block   words
//   rand_u32, float uniform   i / 4   i % 4
//   rand_u64, double uniform  i / 2   (0, 1) for even i, (2, 3) for odd i, high word first
//   rand_int                  i / 2   as rand_u64
//   float normal              i / 4   pair (0, 1) for i % 4 in {0, 1}, pair (2, 3) for i % 4 in {2, 3};
//                                     z0 (cosine) for even i, z1 (sine) for odd i
//   double normal             i / 2   all four; z0 for even i, z1 for odd i

/// Word i of the stream: 32 uniformly distributed bits.
METAGRAD_HD METAGRAD_INLINE constexpr std::uint32_t rand_u32(const PhiloxStream& s, std::uint64_t i) {
  return detail::philox_word(s.block(i >> 2), static_cast<std::uint32_t>(i & 3u));
}

/// 64 uniformly distributed bits for element i.
METAGRAD_HD METAGRAD_INLINE constexpr std::uint64_t rand_u64(const PhiloxStream& s, std::uint64_t i) {
  return detail::philox_dword(s.block(i >> 1), static_cast<std::uint32_t>(i & 1u));
}

/// Element i of a uniform [0, 1) tensor of float (24 random bits) or double (53 random bits).
template <detail::philox_real T>
METAGRAD_HD METAGRAD_INLINE constexpr T rand_uniform(const PhiloxStream& s, std::uint64_t i) {
  if constexpr (std::is_same_v<T, float>) {
    return uniform_float(rand_u32(s, i));
  } else {
    const std::uint64_t x = rand_u64(s, i);
    return uniform_double(detail::hi32(x), detail::lo32(x));
  }
}

/// Element i of a standard normal tensor of float or double (Box–Muller; see normal_pair_float/_double for the
/// tail cut-off). Elements 2k and 2k + 1 are the two halves of one Box–Muller pair, hence independent.
template <detail::philox_real T>
METAGRAD_HD METAGRAD_INLINE T rand_normal(const PhiloxStream& s, std::uint64_t i) {
  if constexpr (std::is_same_v<T, float>) {
    const Philox4 b = s.block(i >> 2);
    const bool second_pair = (i & 2u) != 0;
    const NormalPair<float> z = normal_pair_float(second_pair ? b.v[2] : b.v[0], second_pair ? b.v[3] : b.v[1]);
    return (i & 1u) ? z.z1 : z.z0;
  } else {
    const Philox4 b = s.block(i >> 1);
    const NormalPair<double> z = normal_pair_double(b.v[0], b.v[1], b.v[2], b.v[3]);
    return (i & 1u) ? z.z1 : z.z0;
  }
}

/// Element i of a tensor of integers uniform on [lo, hi) (see uniform_int for the bias bound).
/// @pre lo < hi.
METAGRAD_HD METAGRAD_INLINE std::int64_t rand_int(const PhiloxStream& s, std::uint64_t i, std::int64_t lo,
                                                  std::int64_t hi) {
  return uniform_int(rand_u64(s, i), lo, hi);
}

METAGRAD_NAMESPACE_END
