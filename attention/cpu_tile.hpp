// FlashAttention-style tile kernels on packed row-major tiles of selected rows: the single-threaded
// building blocks of the CPU backend (cpu_attention.cpp) and of the sequence-parallel code, which runs
// them on gathered key rows. A tile is m_q query rows and m_k key rows of one head:
//   q, o, dout, dq: [m_q, D];  k, v, dk, dv: [m_k, D];  lse, delta, key_limit: [m_q]
// key_limit (nullable) gives, per query row, how many LEADING keys it may see (a causal prefix);
// nullptr means all m_k. Row i with key_limit 0 sees nothing: o = 0, lse = -inf.
// Scores are scale * <q_i, k_j>; lse is the natural log. Nothing larger than one block of scores
// (kBlockQ x kBlockK in cpu_tile.cpp) is ever materialised; the workspace holds packed copies of K and V
// (O(m_k D)) and per-block scratch.
#pragma once

#include <array>
#include <cstdint>
#include <memory>

namespace longctx {

// The kernels' blocks: query rows and keys (cpu_tile.cpp says why these sizes). Keys cut into tiles at
// multiples of kTileBlockK form the same key blocks as one larger tile.
inline constexpr int64_t kTileBlockQ = 48;
inline constexpr int64_t kTileBlockK = 128;

// Grow-only, 64-byte aligned scratch, one per thread. Contents are unspecified between calls.
class TileWorkspace {
 public:
  float* floats(int slot, int64_t count);      // slot in [0, kSlots)
  int64_t* indices(int slot, int64_t count);   // slot in [0, kSlots)
  static constexpr int kSlots = 12;

 private:
  struct Free {
    void operator()(void* p) const;
  };
  struct Block {
    std::unique_ptr<unsigned char[], Free> data;
    int64_t bytes = 0;
  };
  void* bytes(std::array<Block, kSlots>& blocks, int slot, int64_t count);
  std::array<Block, kSlots> float_blocks_;
  std::array<Block, kSlots> index_blocks_;
};

// o = softmax(scale q k^T, per-row prefix mask) v, normalised; lse per row (-inf if it saw no key).
void flash_forward_tile(const float* q, const float* k, const float* v, int64_t m_q, int64_t m_k, int64_t head_dim,
                        const int64_t* key_limit, float scale, float* o, float* lse, TileWorkspace& ws);

// Adds this tile's share of the exact gradients (spec "Backward"), given the FINAL lse of each query row
// (over every branch and every key tile it sees) and delta = <dout, o_final> per row:
//   P = exp(scale q k^T - lse); dv += P^T dout; dS = P (dout v^T - delta); dq += scale dS k; dk += scale dS^T q
// dq may be nullptr (a split backward's key pass), or dk and dv both (its query pass): their products are
// skipped, and the outputs asked for get the same values, bit for bit, as when all three are.
void flash_backward_tile(const float* q, const float* k, const float* v, const float* dout, const float* lse,
                         const float* delta, int64_t m_q, int64_t m_k, int64_t head_dim, const int64_t* key_limit,
                         float scale, float* dq, float* dk, float* dv, TileWorkspace& ws);

// out[i] = <a_i, b_i> for `rows` rows of `dim` floats (delta = rowsum(dout * o) of the backward), threaded.
void row_dots(const float* a, const float* b, int64_t rows, int64_t dim, float* out);

// Log-sum-exp merge of a partial result into a running one, row by row (-inf safe on either side):
//   lse_acc' = log(e^lse_acc + e^lse_part);  o_acc' = (e^lse_acc o_acc + e^lse_part o_part) / e^lse_acc'
// o_part and lse_part are packed [rows, D] and [rows]; row i of the accumulator is at
// o_acc + i * o_acc_stride and lse_acc + i * lse_acc_stride (strided rows of a [B,N,H,D] tensor).
void merge_into(float* o_acc, float* lse_acc, const float* o_part, const float* lse_part, int64_t rows,
                int64_t head_dim, int64_t o_acc_stride, int64_t lse_acc_stride);

}  // namespace longctx
