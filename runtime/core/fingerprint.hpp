// A cheap fingerprint of bytes (64-bit FNV-1a), to tell two copies of an input apart: the ranks compare
// a few sampled rows of what each of them reads (main.cpp), so a stale node-local copy of the same shape
// is refused before any work. Not a cryptographic hash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace longctx {

class Fingerprint {
 public:
  Fingerprint& add(const void* data, size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < bytes; ++i) hash_ = (hash_ ^ p[i]) * 1099511628211ull;
    return *this;
  }
  std::string hex() const {
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash_));
    return text;
  }

 private:
  uint64_t hash_ = 14695981039346656037ull;
};

}  // namespace longctx
