// Portable SIMD for the tile kernels: GCC/Clang vector extensions, as wide as the target allows
// (AVX-512: 16 floats, AVX/AVX2: 8, otherwise 4). One code path; the compiler lowers it to the target.
// Internal to attention/.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

namespace longctx::simd {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr int kRegisters = 32;
#elif defined(__AVX__)
constexpr int kLanes = 8;
constexpr int kRegisters = 16;
#else
constexpr int kLanes = 4;
constexpr int kRegisters = 16;
#endif

typedef float vfloat __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vint __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline vfloat load(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }
inline vfloat splat(float x) { return vfloat{} + x; }
inline vint splat_int(int32_t x) { return vint{} + x; }
inline vfloat vmax(vfloat a, vfloat b) { return a > b ? a : b; }

inline float reduce_max(vfloat v) {
  float m = v[0];
  for (int i = 1; i < kLanes; ++i) m = v[i] > m ? v[i] : m;
  return m;
}
inline float reduce_sum(vfloat v) {
  float s = 0;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}
inline vint lane_index() {
  vint v;
  for (int i = 0; i < kLanes; ++i) v[i] = i;
  return v;
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

}  // namespace longctx::simd
