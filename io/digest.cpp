// Content digests: see digest.hpp.
#include "io/digest.hpp"

#include <cstdio>
#include <cstring>

namespace longctx::io {
namespace {

uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Sums element_digest over `count` elements whose bits `bits_of(i)` gives; threads for large counts (the sum
// is the same in any order).
template <class BitsOf>
uint64_t sum_digests(int64_t count, int64_t first, BitsOf bits_of) {
  uint64_t sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum) if (count > (int64_t{1} << 16))
  for (int64_t i = 0; i < count; ++i) sum += element_digest(static_cast<uint64_t>(first + i), bits_of(i));
  return sum;
}

}  // namespace

uint64_t element_digest(uint64_t flat_index, uint32_t bits) { return splitmix64(splitmix64(flat_index) ^ bits); }

uint64_t float_digest(const float* values, int64_t count, int64_t first) {
  return sum_digests(count, first, [values](int64_t i) {
    uint32_t bits = 0;
    std::memcpy(&bits, values + i, sizeof bits);
    return bits;
  });
}

uint64_t byte_digest(const uint8_t* values, int64_t count, int64_t first) {
  return sum_digests(count, first, [values](int64_t i) { return static_cast<uint32_t>(values[i]); });
}

uint64_t id_digest(const uint8_t* ids, int64_t count, int64_t first) { return byte_digest(ids, count, first); }

uint64_t id_digest(const uint16_t* ids, int64_t count, int64_t first) {
  return sum_digests(count, first, [ids](int64_t i) { return static_cast<uint32_t>(ids[i]); });
}

uint64_t id_digest(const int32_t* ids, int64_t count, int64_t first) {
  return sum_digests(count, first, [ids](int64_t i) { return static_cast<uint32_t>(ids[i]); });
}

uint64_t id_digest(const int64_t* ids, int64_t count, int64_t first) {
  return sum_digests(count, first, [ids](int64_t i) { return static_cast<uint32_t>(ids[i]); });
}

std::string digest_text(uint64_t digest) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%016llx", static_cast<unsigned long long>(digest));
  return text;
}

int64_t digest_attribute_value(uint64_t digest) {
  int64_t value = 0;
  std::memcpy(&value, &digest, sizeof value);
  return value;
}

}  // namespace longctx::io
