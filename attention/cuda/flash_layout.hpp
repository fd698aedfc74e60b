// Where the rows of one block of the tensor-core kernels are (compiled for the device by the kernels and
// for the host by the distributed driver and the tests, so the index arithmetic is checked without a
// GPU), and the layout of a spanning branch's gathered rows. No CUDA header.
//
// A block works on one (batch, segment, head) of a branch in its sparse space: query t is the branch's
// selected row q_base + t of the segment, key t its selected row t (so causal keeps key <= q_base + t).
// Row indexes address [*, D] tensors (times D) and lse / delta (as is).
#pragma once

#include <cstdint>
#include <vector>

#include "attention/schedule.hpp"

namespace longctx::cuda {

// Rows t in [0, n) of a segment with t mod r == o.
LONGCTX_HOST_DEVICE inline int64_t selected(int64_t n, int64_t r, int64_t o) { return n > o ? (n - o + r - 1) / r : 0; }

// The kernels' tiles (flash_device.cuh and the block bodies), here so that the host emulation in the tests walks the same ones.
// Forward: a block of 4 warps takes 128 query rows (32 per warp, two m16 tiles, so each K / V fragment read
// from shared memory feeds two products) and steps over the keys 32 at a time (64 spills registers at
// D = 128: 128 accumulators + 64 scores per thread). Backward: a block of 8 warps
// owns 128 keys (16 per warp, its dK / dV in registers) and steps over the queries 64 at a time; dQ goes out
// by atomic adds, once per (key block, query step), so larger key blocks mean fewer of them.
constexpr int kFwdThreads = 128, kFwdBlockQ = 128, kFwdBlockK = 32;
constexpr int kBwdThreads = 256, kBwdBlockK = 128, kBwdBlockQ = 64;

// The most rows of one segment a branch may select per head (n_q, n_k are int). The kernels' loop bounds add
// up to one tile of rows (at most kMaxTileRows, here and in flash_blocks_wgmma.cuh) to such a count, and
// round the sum up to whole tiles, so the limit stays 2 * kMaxTileRows below 2^31 (from a review: it was
// 2^31 - 1, where a causal tile's last visible key wrapped negative and its queries saw no key, exit 0).
constexpr int kMaxTileRows = 128;
constexpr int64_t kMaxSelectedRows = INT32_MAX - 2 * kMaxTileRows;
static_assert(kFwdBlockQ <= kMaxTileRows && kFwdBlockK <= kMaxTileRows && kBwdBlockK <= kMaxTileRows &&
              kBwdBlockQ <= kMaxTileRows);

struct FlashProblem {
  int64_t q_first = 0, q_stride = 0, k_first = 0, k_stride = 0;
  int n_q = 0, n_k = 0, q_base = 0;

  LONGCTX_HOST_DEVICE int64_t q_row(int t) const { return q_first + static_cast<int64_t>(t) * q_stride; }
  LONGCTX_HOST_DEVICE int64_t k_row(int t) const { return k_first + static_cast<int64_t>(t) * k_stride; }
};

// The loop bounds and masks the kernels use (shared with the host emulation in the tests):
// forward: the keys [0, forward_key_end) a query tile [t0, t0 + rows) may see;
LONGCTX_HOST_DEVICE inline int forward_key_end(const FlashProblem& p, int t0, int rows, bool causal) {
  const int last_visible = p.q_base + t0 + rows;  // one past the largest sparse index of the tile's queries
  return causal && last_visible < p.n_k ? last_visible : p.n_k;
}
// whether key `key` is hidden from query t (past the selection, or after it when causal);
LONGCTX_HOST_DEVICE inline bool key_hidden(const FlashProblem& p, int key, int t, bool causal) {
  return key >= p.n_k || (causal && key > p.q_base + t);
}
// whether a key tile [key0, key0 + cols) can hide any key from queries [t0, t0 + rows);
LONGCTX_HOST_DEVICE inline bool tile_needs_mask(const FlashProblem& p, int key0, int cols, int t0, bool causal) {
  return key0 + cols > p.n_k || (causal && key0 + cols - 1 > p.q_base + t0);
}
// backward: the first query step (of `rows` queries) that sees key tile k0.
LONGCTX_HOST_DEVICE inline int backward_first_step(const FlashProblem& p, int k0, int rows, bool causal) {
  return causal && k0 > p.q_base ? (k0 - p.q_base) / rows : 0;
}

// A local branch (segment length w' = `segment`, dilation r) of a [B, N, H, D] tensor: batch b, segment s,
// head h. False when the head selects no row of that segment.
LONGCTX_HOST_DEVICE inline bool local_problem(int64_t b, int64_t s, int h, int64_t seq_len, int64_t segment,
                                              int64_t r, int heads, HeadOffsets offsets, FlashProblem& p) {
  const int64_t begin = s * segment;
  const int64_t n_rows = seq_len - begin < segment ? seq_len - begin : segment;
  const int64_t o = head_offset(h, r, heads, offsets);
  if (o >= n_rows) return false;
  p.q_first = p.k_first = (b * seq_len + begin + o) * heads + h;
  p.q_stride = p.k_stride = r * heads;
  p.n_q = p.n_k = static_cast<int>(selected(n_rows, r, o));
  p.q_base = 0;
  return true;
}

// Fused launches (all of a schedule's local branches in one launch) order their writes per chunk of
// kOrderChunk positions (flash_device.cuh, BranchOrder): how many rows a branch selects in a chunk and
// how many of a block's rows fall in one.
constexpr int64_t kOrderChunk = 256;

// Positions in [lo, hi) of one sequence of seq_len that a local branch (segment length `segment` =
// min(w, N), dilation r) selects for a head with offset o.
LONGCTX_HOST_DEVICE inline int64_t selected_between(int64_t lo, int64_t hi, int64_t seq_len, int64_t segment,
                                                    int64_t r, int64_t o) {
  int64_t count = 0;
  for (int64_t begin = lo / segment * segment; begin < hi && begin < seq_len; begin += segment) {
    const int64_t end = begin + segment < seq_len ? begin + segment : seq_len;
    const int64_t from = (lo > begin ? lo : begin) - begin, to = (hi < end ? hi : end) - begin;
    if (to > from) count += selected(to, r, o) - selected(from, r, o);
  }
  return count;
}

// Of `count` rows at positions first, first + r, first + 2 r, ...: how many lie before x (rows_before) and
// in [lo, hi) (rows_between).
LONGCTX_HOST_DEVICE inline int64_t rows_before(int64_t first, int64_t r, int64_t count, int64_t x) {
  if (x <= first) return 0;
  const int64_t n = (x - first + r - 1) / r;
  return n < count ? n : count;
}
LONGCTX_HOST_DEVICE inline int64_t rows_between(int64_t first, int64_t r, int64_t count, int64_t lo, int64_t hi) {
  return rows_before(first, r, count, hi) - rows_before(first, r, count, lo);
}

// Keys of head h in a spanning branch's gathered tiles: the segment's selected rows, g L long.
LONGCTX_HOST_DEVICE inline int64_t span_keys(int h, int64_t local_len, int group, int64_t r, int heads,
                                             HeadOffsets offsets) {
  return selected(group * local_len, r, head_offset(h, r, heads, offsets));
}

// A spanning branch: this rank is member m of the g ranks (L rows each) that share one segment. Queries
// are this rank's selected rows of [B, L, H, D]; keys the group's, in the tiles [B][H][keys of h][D].
// False when head h selects no row of the segment.
LONGCTX_HOST_DEVICE inline bool spanning_problem(int64_t b, int h, int64_t local_len, int m, int group, int64_t r,
                                                 int heads, HeadOffsets offsets, FlashProblem& p) {
  const int64_t L = local_len;
  const int64_t o = head_offset(h, r, heads, offsets);
  p.n_k = static_cast<int>(selected(group * L, r, o));
  if (p.n_k == 0) return false;
  p.q_base = static_cast<int>(selected(m * L, r, o));
  p.n_q = static_cast<int>(selected((m + 1) * L, r, o)) - p.q_base;
  const int64_t first_row = ((o - m * L) % r + r) % r;  // this rank's first selected local row
  p.q_first = (b * L + first_row) * heads + h;
  p.q_stride = r * heads;
  int64_t keys_all = 0, keys_before = 0;
  for (int hh = 0; hh < heads; ++hh) {
    const int64_t n = span_keys(hh, L, group, r, heads, offsets);
    keys_all += n;
    if (hh < h) keys_before += n;
  }
  p.k_first = b * keys_all + keys_before;
  p.k_stride = 1;
  return true;
}

// The host side of a spanning branch: rows(m, h) selected rows of member m for head h; the packed block
// each member sends ([K: B][H][rows][D] then V, elements) and the gathered tiles ([B][H][keys][D]).
struct SpanLayout {
  int group = 1, member = 0;
  int64_t batch = 0, heads = 0, head_dim = 0, local_len = 0, dilation = 1;
  std::vector<int64_t> offset;  // o(h, r)
  std::vector<int64_t> rows;    // [m * H + h]
  std::vector<int64_t> keys;    // [h]

  SpanLayout() = default;
  SpanLayout(int64_t B, int64_t H, int64_t D, int64_t L, int64_t r, int g, int m, HeadOffsets offsets)
      : group(g), member(m), batch(B), heads(H), head_dim(D), local_len(L), dilation(r) {
    offset.resize(static_cast<size_t>(H));
    rows.assign(static_cast<size_t>(g * H), 0);
    keys.assign(static_cast<size_t>(H), 0);
    for (int64_t h = 0; h < H; ++h) {
      const int64_t o = head_offset(h, r, H, offsets);
      offset[static_cast<size_t>(h)] = o;
      keys[static_cast<size_t>(h)] = selected(g * L, r, o);
      for (int mm = 0; mm < g; ++mm)
        rows[static_cast<size_t>(mm * H + h)] = selected((mm + 1) * L, r, o) - selected(mm * L, r, o);
    }
  }

  int64_t rows_of(int m, int64_t h) const { return rows[static_cast<size_t>(m * heads + h)]; }
  int64_t member_rows(int m) const {
    int64_t total = 0;
    for (int64_t h = 0; h < heads; ++h) total += rows_of(m, h);
    return total;
  }
  int64_t keys_all() const {
    int64_t total = 0;
    for (int64_t n : keys) total += n;
    return total;
  }
  // Elements of member m's block (K and V).
  int64_t block_elements(int m) const { return 2 * batch * member_rows(m) * head_dim; }
  // Element offset of (b, h) inside one half (K or V) of member m's block.
  int64_t block_offset(int m, int64_t b, int64_t h) const {
    int64_t before = b * member_rows(m);
    for (int64_t hh = 0; hh < h; ++hh) before += rows_of(m, hh);
    return before * head_dim;
  }
  // Element offset of (b, h) in the tiles, and of member m's first row there (position order).
  int64_t tile_offset(int64_t b, int64_t h) const {
    int64_t before = b * keys_all();
    for (int64_t hh = 0; hh < h; ++hh) before += keys[static_cast<size_t>(hh)];
    return before * head_dim;
  }
  int64_t tile_offset(int m, int64_t b, int64_t h) const {
    return tile_offset(b, h) + selected(m * local_len, dilation, offset[static_cast<size_t>(h)]) * head_dim;
  }
  // Member m's (default: this rank's) first selected local row of head h.
  int64_t first_row(int m, int64_t h) const {
    const int64_t o = offset[static_cast<size_t>(h)];
    return ((o - m * local_len) % dilation + dilation) % dilation;
  }
  int64_t first_row(int64_t h) const { return first_row(member, h); }
  // visit(m, b, h, local row of member m, element offset in the tiles) for every gathered row, member by
  // member: where each row of the tiles comes from (and its gradient goes back to).
  template <class Visit>
  void for_each_gathered_row(Visit&& visit) const {
    for (int m = 0; m < group; ++m)
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t h = 0; h < heads; ++h)
          for (int64_t t = 0; t < rows_of(m, h); ++t)
            visit(m, b, h, first_row(m, h) + t * dilation, tile_offset(m, b, h) + t * head_dim);
  }
};

}  // namespace longctx::cuda
