// Content digests of checkpoint datasets. Fletcher32 checks each chunk against the checksum stored with it,
// so a chunk zeroed together with its checksum (a file system that lost the blocks, a sparse copy, a tool
// that rewrote the chunk) reads back without an error. Each /model, /optimizer and /state dataset of a
// checkpoint therefore carries attribute `digest` (int64 holding the bits of a uint64), in its checksummed
// object header: the sum mod 2^64, over the dataset's elements, of element_digest(flat index, the element's
// bits). A sum of per-element terms can be computed by any split of the rows and added up (an all-reduce),
// and every element's term depends on both its place and its bits, so zeros, a shifted block or two
// swapped values all change it (the chance that damage leaves it unchanged is about 2^-64).
#pragma once

#include <cstdint>
#include <string>

namespace longctx::io {

// The name of the attribute.
inline constexpr const char* kDigestAttribute = "digest";

// One element's term: splitmix64's finaliser of its flat index, mixed again with its bits.
uint64_t element_digest(uint64_t flat_index, uint32_t bits);

// The digest's part over `count` elements at flat indices first, first + 1, ...: float32 by their bits,
// bytes by their value. (A digest is defined for float32 and uint8 datasets only, what checkpoints hold.)
uint64_t float_digest(const float* values, int64_t count, int64_t first);
uint64_t byte_digest(const uint8_t* values, int64_t count, int64_t first);

// A token dataset's /tokens (token_dataset.hpp) carries the same attribute: the sum over its tokens of
// element_digest(flat index, the id), whatever width it is stored in (an id stored as uint8 or uint16 has
// the same term), so it names the token stream a run trained on. These are its parts.
uint64_t id_digest(const uint8_t* ids, int64_t count, int64_t first);
uint64_t id_digest(const uint16_t* ids, int64_t count, int64_t first);
uint64_t id_digest(const int32_t* ids, int64_t count, int64_t first);
// Ids as an import reads them (int64, each already checked to lie in [0, 2^31)).
uint64_t id_digest(const int64_t* ids, int64_t count, int64_t first);

// "0x0123456789abcdef", as messages and `data inspect` show a digest.
std::string digest_text(uint64_t digest);

// The attribute's value (the uint64's bits); h5::Object::read_bits64_attribute reads it back, and a
// digest another tool stored as uint64 too.
int64_t digest_attribute_value(uint64_t digest);

}  // namespace longctx::io
