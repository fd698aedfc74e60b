// Portable SIMD for the CPU kernels (attention's tiles, the model's sgemm): GCC vector extensions, as wide
// as the target allows (AVX-512: 16 floats, AVX/AVX2: 8, otherwise 4). One code path; the compiler lowers
// it to the target.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

namespace longctx::simd {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif

typedef float vfloat __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vint __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline vfloat load(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }
// {x, x, ...}: a plain broadcast (vfloat{} + x would add 0.0f first, which is not a no-op for -0.0f).
template <size_t... I>
inline vfloat splat_lanes(float x, std::index_sequence<I...>) {
  return vfloat{((void)I, x)...};
}
template <size_t... I>
inline vint splat_lanes(int32_t x, std::index_sequence<I...>) {
  return vint{((void)I, x)...};
}
inline vfloat splat(float x) { return splat_lanes(x, std::make_index_sequence<kLanes>{}); }
inline vint splat_int(int32_t x) { return splat_lanes(x, std::make_index_sequence<kLanes>{}); }
inline vfloat vmax(vfloat a, vfloat b) { return a > b ? a : b; }

inline vint lane_index() {
  vint v;
  for (int i = 0; i < kLanes; ++i) v[i] = i;
  return v;
}

// Tree reductions: log2(kLanes) full-width steps, each combining the vector with its lanes swapped in
// pairs of halves (lane i with lane i ^ half). The permutation is a compile-time constant, so GCC (12+) and
// Clang lower it alike (__builtin_shufflevector); older GCC takes its own __builtin_shuffle. The order of
// the additions is the same either way, so sums are bit-identical across compilers.
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define LONGCTX_SIMD_SHUFFLEVECTOR 1
#endif
#endif
template <int Half, size_t... I>
inline vfloat swap_halves(vfloat v, std::index_sequence<I...>) {
#if defined(LONGCTX_SIMD_SHUFFLEVECTOR)
  return __builtin_shufflevector(v, v, static_cast<int>(I ^ Half)...);
#else
  return __builtin_shuffle(v, vint{static_cast<int32_t>(I ^ Half)...});
#endif
}
#undef LONGCTX_SIMD_SHUFFLEVECTOR
template <int Half>
inline vfloat swap_halves(vfloat v) {
  return swap_halves<Half>(v, std::make_index_sequence<kLanes>{});
}
template <int Half = kLanes / 2>
inline float reduce_max(vfloat v) {
  if constexpr (Half == 0) {
    return v[0];
  } else {
    return reduce_max<Half / 2>(vmax(v, swap_halves<Half>(v)));
  }
}
template <int Half = kLanes / 2>
inline float reduce_sum(vfloat v) {
  if constexpr (Half == 0) {
    return v[0];
  } else {
    return reduce_sum<Half / 2>(v + swap_halves<Half>(v));
  }
}

// out[0, n) = in[0, n), a vector at a time for a multiple of the vector (the rows of the attention tiles:
// std::copy called memmove for each row, 64 bytes at D = 16, a few percent of a small model's step).
inline void copy_row(const float* in, int64_t n, float* out) {
  if (n % kLanes != 0) {
    std::memcpy(out, in, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < n; i += kLanes) store(out + i, load(in + i));
}

// 2^x, relative error ~2e-7 on [-126, 127]; exactly 0 for x <= -126.5 (and for -inf).
inline vfloat exp2(vfloat x) {
  const vfloat lo = splat(-127.0f), hi = splat(127.0f);
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const vfloat magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const vfloat t = x + magic;
  const vint n = (vint)t - (vint)magic;
  const vfloat f = x - (t - magic);  // in [-0.5, 0.5]
  // Cephes exp2f polynomial.
  vfloat p = splat(1.535336188319500e-4f);
  p = p * f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  const vint e = (n + 127) << 23;
  return p * (vfloat)e;
}

constexpr float kLog2e = 1.4426950408889634f;  // 1 / ln 2
// e^x, through exp2 (its error and its 0 below x ~ -87.7).
inline vfloat exp(vfloat x) { return exp2(x * kLog2e); }

}  // namespace longctx::simd
