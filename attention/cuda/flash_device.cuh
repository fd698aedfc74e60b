// The building blocks of the tensor-core kernels (device code; flash_kernels.cuh has the overview): tile
// constants, the element types' conversions and mma.sync, ldmatrix / cp.async, the launch arguments and
// their block decoding, the fused launch's branch order, and the softmax steps and epilogues that the mma.sync
// (flash_blocks_mma.cuh) and wgmma (flash_blocks_wgmma.cuh) block bodies share.
//
// Warp-level mma.sync m16n8k16 (bf16 / fp16 in, fp32 accumulate), ldmatrix from shared memory rows padded
// by 16 bytes (conflict-free), cp.async double buffering. Fragment layouts (PTX ISA, "mma.m16n8k16"): with
// g = lane / 4 and c = lane % 4, A (16x16, row) holds a0 = (g, 2c..2c+1), a1 = (g+8, 2c..), a2 = (g, 2c+8..),
// a3 = (g+8, 2c+8..); B (16x8, col) holds b0 = (k 2c..2c+1, n g), b1 = (k 2c+8.., n g); C (16x8) holds
// c0, c1 = (g, 2c..2c+1), c2, c3 = (g+8, 2c..2c+1). So the C tiles of columns 16j..16j+15 are, packed in
// pairs, the A fragment of k-chunk j: scores become the next product's operand without leaving registers.
#pragma once

#ifndef LONGCTX_GPU_EMULATION
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "attention/attention.hpp"
#include "attention/cuda/flash_layout.hpp"
#include "runtime/core/error.hpp"

// The emulated build gets its own namespace, so its host copies never meet the library's kernels.
#ifdef LONGCTX_GPU_EMULATION
#define LONGCTX_KERNELS kernels_emulated
#else
#define LONGCTX_KERNELS kernels
#endif

namespace longctx::cuda::LONGCTX_KERNELS {

// Tiles and threads: kFwd* / kBwd* in flash_layout.hpp.
constexpr int kFwdWarpRows = kFwdBlockQ / (kFwdThreads / 32);  // forward: query rows per warp
constexpr int kFwdMTiles = kFwdWarpRows / 16;                   // ... in m16 tiles
constexpr int kPad = 8;  // elements (16 bytes) of padding per shared-memory row
static_assert(kFwdWarpRows % 16 == 0, "forward: whole m16 tiles per warp");
static_assert(kBwdBlockK == 16 * (kBwdThreads / 32), "backward: 16 keys per warp");
static_assert(kBwdBlockQ % 16 == 0 && (kBwdThreads / 32) % (kBwdBlockQ / 16) == 0,
              "backward dQ: the warps split into query row tiles x column groups");
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// The element type's conversions and its mma.sync m16n8k16 (bf16 or fp16 inputs, fp32 accumulators).
#define LONGCTX_MMA_M16N8K16(TY)                                                                             \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TY "." TY ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "    \
               "{%8,%9}, {%0,%1,%2,%3};\n"                                                                  \
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                              \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1))
template <class T> struct Elem {
  static_assert(std::is_same<T, __nv_bfloat16>::value || std::is_same<T, __half>::value, "Elem: bf16 or fp16");
  static constexpr bool kBf16 = std::is_same<T, __nv_bfloat16>::value;
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    uint32_t bits;
    if constexpr (kBf16) {
      const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
      memcpy(&bits, &v, sizeof bits);
    } else {
      const __half2 v = __floats2half2_rn(lo, hi);
      memcpy(&bits, &v, sizeof bits);
    }
    return bits;
  }
  static __device__ __forceinline__ T from(float x) {
    if constexpr (kBf16) return __float2bfloat16_rn(x);
    else return __float2half_rn(x);
  }
  static __device__ __forceinline__ float to(T x) {
    if constexpr (kBf16) return __bfloat162float(x);
    else return __half2float(x);
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef LONGCTX_GPU_EMULATION
    emulation::mma_m16n8k16(c, a, b0, b1, kBf16);
#else
    if constexpr (kBf16) LONGCTX_MMA_M16N8K16("bf16");
    else LONGCTX_MMA_M16N8K16("f16");
#endif
  }
};
#undef LONGCTX_MMA_M16N8K16

#ifdef LONGCTX_GPU_EMULATION
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) { emulation::ldmatrix_x4(r, p, false); }
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void* p) { emulation::ldmatrix_x4(r, p, true); }
// The block's dynamic shared memory.
__device__ __forceinline__ unsigned char* shared_memory() { return emulation::shared_memory(); }
#else
__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Four 8x8 matrices; thread i gives the address of row i % 8 of matrix i / 8.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(p)));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(p)));
}
// The block's dynamic shared memory.
__device__ __forceinline__ unsigned char* shared_memory() {
  extern __shared__ __align__(16) unsigned char dynamic_smem[];
  return dynamic_smem;
}
#endif

// Address this lane gives ldmatrix for one 16x16 A fragment at (row0, col0) of a row-major tile with
// `stride` elements per row: matrices (rows 0-7 | 8-15) x (cols 0-7 | 8-15), row-block fastest.
template <class T>
__device__ __forceinline__ const T* a_frag_address(const T* tile, int stride, int row0, int col0, int lane) {
  return tile + (row0 + lane % 16) * stride + col0 + (lane / 16) * 8;
}
// For B = X^T with X row-major [n][k] (keys by head dim): two n-tiles (n0..n0+15) of k-chunk k0.
// r0, r1 are n-tile 0's b0, b1; r2, r3 n-tile 1's.
template <class T>
__device__ __forceinline__ const T* bt_frag_address(const T* tile, int stride, int n0, int k0, int lane) {
  return tile + (n0 + lane % 8 + (lane / 16) * 8) * stride + k0 + ((lane / 8) % 2) * 8;
}
// For B = X with X row-major [k][n], loaded with .trans: k-chunk k0..k0+15, two n-tiles n0..n0+15.
template <class T>
__device__ __forceinline__ const T* b_frag_address(const T* tile, int stride, int k0, int n0, int lane) {
  return tile + (k0 + lane % 8 + ((lane / 8) % 2) * 8) * stride + n0 + (lane / 16) * 8;
}

#ifdef LONGCTX_GPU_EMULATION
// The emulation queues each thread's copies per commit group and performs them at the wait that covers
// them, so a tile read before its wait shows stale data there as it could here.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  emulation::copy16(smem, gmem, valid);
}
__device__ __forceinline__ void cp_async_commit() { emulation::copy_commit(); }
template <int N> __device__ __forceinline__ void cp_async_wait() { emulation::copy_wait(N); }
#else
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  // src-size 0 reads nothing and zero-fills the 16 bytes.
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(smem)), "l"(gmem),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
#endif

struct FlashArgs {
  const void* q;
  const void* k;
  const void* v;
  const void* dout;
  float* o;
  float* lse;
  const float* delta;
  float* dq;
  float* dk;
  float* dv;
  long long seq_len, segment, dilation, segments;
  int batch, heads, head_dim, tiles, causal;
  HeadOffsets offsets;
  float scale;  // softmax scale (natural units)
  // Spanning mode: the branch's segment spreads over `group` ranks of `local_len` rows each and this rank
  // is member `member`; q, o, lse, dout, delta, dq are this rank's [B, local_len, H, ...] tensors, while
  // k, v (and dk, dv) are the group's gathered selected rows, [B][H][keys of head h][D].
  int spanning;
  long long local_len;
  int member, group;
  // This launch is the first to write its outputs (forward: o and lse; backward, local mode: dk and dv),
  // and its branch selects every row (dilation 1): it writes them outright, reading none (so they need
  // no fill before). dq, added to by many blocks, is always added to.
  int overwrite;
};

using Problem = FlashProblem;

// Decodes block = ((b * segments + s) * H + h) * tiles + tile (spanning: segments = 1) into the block's
// problem and its first sparse row (query: forward, where causal takes the last tile first, its rows being
// the longest; key: backward). False when the block has no row (the head selects none there, or the tile
// is past the selection).
template <int ROWS, bool FORWARD>
__device__ __forceinline__ bool decode_block(const FlashArgs& a, long long block, Problem& p, int& first) {
  int tile = static_cast<int>(block % a.tiles);
  block /= a.tiles;
  const int h = static_cast<int>(block % a.heads);
  block /= a.heads;
  const bool any =
      a.spanning ? spanning_problem(block, h, a.local_len, a.member, a.group, a.dilation, a.heads, a.offsets, p)
                 : local_problem(block / a.segments, block % a.segments, h, a.seq_len, a.segment, a.dilation,
                                 a.heads, a.offsets, p);
  if (FORWARD && a.causal) tile = a.tiles - 1 - tile;
  first = tile * ROWS;
  return any && first < (FORWARD ? p.n_q : p.n_k);
}

// ---- all of a schedule's local branches in one launch (fused) ----------------------------------------------
// Blocks take their tiles from a counter, branch by branch in schedule order, so a block only ever waits
// for blocks that took their tiles before it (and are running): no deadlock whatever order the GPU starts
// blocks in. A block's output rows (forward: o and lse of its queries; backward: dk and dv of its keys) may
// also be written by earlier branches' blocks, running at the same time, so before its epilogue writes, a
// block waits until every row an earlier branch selects in the chunks (of kOrderChunk positions) its rows
// fall in has been written: counters per (batch, chunk, head), to which blocks add their rows after their
// epilogues. So each row is written in schedule order, as by one launch per branch: the same bits. dq,
// added to atomically, needs no order.
constexpr int kMaxFusedBranches = 8;
constexpr int kMaxOrderChunks = 128;  // chunks with rows of one block: at most its rows

struct FusedArgs {
  FlashArgs branch[kMaxFusedBranches];           // local launches, schedule order
  long long first_block[kMaxFusedBranches + 1];  // branch e's tiles are [first_block[e], first_block[e + 1])
  int branches;
  unsigned* next_tile;  // the tile counter, 0 before the launch
  int* written;         // rows written per (batch, chunk, head), 0 before the launch (order_counters)
  long long chunks;     // chunks per sequence
  unsigned slot;        // byte offset of the block's FusedSlot in dynamic shared memory (past the kernel's)
};

// A fused block's tile and, per chunk its rows fall in, the counter, the rows earlier branches write
// there, and its own rows there: worked out by the block's threads (one per chunk) before the body.
struct FusedSlot {
  unsigned tile;
  int chunks, pad[2];
  int counter[kMaxOrderChunks], expected[kMaxOrderChunks], rows[kMaxOrderChunks];
};

#ifdef LONGCTX_GPU_EMULATION
// The emulation also checks that a wait of branch e expects exactly the rows branches < e wrote there.
__device__ __forceinline__ unsigned take_tile(unsigned* next) { return (*next)++; }
__device__ __forceinline__ void wait_for_count(const int* counter, int expected, int branch) {
  emulation::wait_for_count(counter, expected, branch);
}
__device__ __forceinline__ void release_fence() {}
__device__ __forceinline__ void add_count(int* counter, int value, int branch) {
  emulation::add_count(counter, value, branch);
}
#else
__device__ __forceinline__ unsigned take_tile(unsigned* next) { return atomicAdd(next, 1u); }
// Spins (backing off) until *counter >= expected, acquiring what the writers released. A wait over about
// ten seconds is a bug (an earlier block that never counts its rows): the kernel traps, and the launch
// fails with an error instead of hanging the job. (No printf: it is a function call, and a call anywhere in
// a kernel serializes its wgmma pipeline, ptxas C7510.)
__device__ __forceinline__ void wait_for_count(const int* counter, int expected, int /*branch*/) {
  for (int spins = 0;; ++spins) {
    int seen;
    asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(seen) : "l"(counter) : "memory");
    if (seen >= expected) return;
    if (spins > 10000000) __trap();
    __nanosleep(1000);
  }
}
__device__ __forceinline__ void release_fence() { __threadfence(); }
__device__ __forceinline__ void add_count(int* counter, int value, int /*branch*/) { atomicAdd(counter, value); }
#endif

// A block of a per-branch launch: nothing to order.
struct Unordered {
  __device__ __forceinline__ void before_write() const {}
};

// A block of a fused launch.
struct BranchOrder {
  int* written;
  const FusedSlot* slot;
  int branch;

  // Works out the block's chunks (`count` rows from row index `first` of branch `branch`, whose args are a):
  // every thread, then a barrier.
  __device__ __forceinline__ static void plan(const FusedArgs& f, int branch, const FlashArgs& a, long long first,
                                              int count, FusedSlot* slot) {
    const long long bn = first / a.heads, batch = bn / a.seq_len, position = bn % a.seq_len;
    const int head = static_cast<int>(first % a.heads);
    const long long r = a.dilation, last = position + (count - 1) * r;
    // Every chunk from the first row's to the last one's has a row when r < kOrderChunk; else each row
    // is in a chunk of its own.
    const bool sparse = r >= kOrderChunk;
    const int chunks = sparse ? count : static_cast<int>(last / kOrderChunk - position / kOrderChunk + 1);
    const int i = threadIdx.x;
    if (i == 0) slot->chunks = chunks;
    if (i < chunks) {
      const long long c = sparse ? (position + i * r) / kOrderChunk : position / kOrderChunk + i;
      const long long lo = c * kOrderChunk, hi = min(lo + kOrderChunk, a.seq_len);
      int expected = 0;
      for (int e = 0; e < branch; ++e) {
        const FlashArgs& x = f.branch[e];
        const int64_t o = head_offset(head, x.dilation, x.heads, x.offsets);
        expected += static_cast<int>(selected_between(lo, hi, x.seq_len, x.segment, x.dilation, o));
      }
      slot->counter[i] = static_cast<int>((batch * f.chunks + c) * a.heads + head);
      slot->expected[i] = expected;
      slot->rows[i] = static_cast<int>(rows_between(position, r, count, lo, hi));
    }
    __syncthreads();
  }

  // Before the epilogue writes (the whole block): waits until earlier branches have written their rows
  // in the block's chunks.
  __device__ __forceinline__ void before_write() const {
    if (branch == 0) return;
    const int i = threadIdx.x;
    if (i < slot->chunks) wait_for_count(written + slot->counter[i], slot->expected[i], branch);
    __syncthreads();
  }

  // After the epilogue (the whole block): counts the block's rows as written.
  __device__ __forceinline__ void after_write() const {
    __syncthreads();
    const int i = threadIdx.x;
    if (i >= slot->chunks) return;
    release_fence();
    add_count(written + slot->counter[i], slot->rows[i], branch);
  }
};

// Runs the fused block that takes the next tile: body(args, problem, first row, order) for its branch's
// tile, then counts its rows (also when the body returned early: the count is of the tile's rows).
template <int ROWS, int THREADS, bool FORWARD, class Body>
__device__ __forceinline__ void run_fused_block(const FusedArgs& f, Body&& body) {
  static_assert(ROWS <= kMaxOrderChunks && ROWS <= THREADS, "fused: a chunk per row at most, a thread per chunk");
  FusedSlot* slot = reinterpret_cast<FusedSlot*>(shared_memory() + f.slot);
  if (threadIdx.x == 0) slot->tile = take_tile(f.next_tile);
  __syncthreads();
  const long long x = slot->tile;
  int e = 0;
  while (e + 1 < f.branches && x >= f.first_block[e + 1]) ++e;
  const FlashArgs& a = f.branch[e];
  Problem p;
  int first;
  if (!decode_block<ROWS, FORWARD>(a, x - f.first_block[e], p, first)) return;
  const int count = FORWARD ? min(ROWS, p.n_q - first) : min(ROWS, p.n_k - first);
  BranchOrder::plan(f, e, a, FORWARD ? p.q_row(first) : p.k_row(first), count, slot);
  const BranchOrder order{f.written, slot, e};
  body(a, p, first, order);
  order.after_write();
}

// Copies rows t0 .. t0 + ROWS - 1 (row t at row index first + t stride of `src`, D = a.head_dim elements
// each) into a [ROWS][D + kPad] tile, zero past `count` and past the real head dim. 16-byte cp.async
// when the head dim is a multiple of 8 (the caller commits); element-wise otherwise.
template <class T, int D, int ROWS, int THREADS>
__device__ __forceinline__ void load_rows(T* tile, const T* src, const FlashArgs& a, long long first,
                                          long long stride, int count, int t0) {
  constexpr int kStride = D + kPad;
  if (a.head_dim % 8 == 0) {
    // A thread copies the same 16-byte column of every kRowStep-th row: one address, stepped.
    constexpr int kChunks = D / 8, kRowStep = THREADS / kChunks;
    static_assert(THREADS % kChunks == 0, "load_rows: whole rows per pass");
    const int row0 = threadIdx.x / kChunks, col = (threadIdx.x % kChunks) * 8;
    const bool col_valid = col < a.head_dim;
    const long long step = kRowStep * stride * a.head_dim;
    long long offset = (first + static_cast<long long>(t0 + row0) * stride) * a.head_dim + col;
#pragma unroll
    for (int row = row0; row < ROWS; row += kRowStep, offset += step) {
      const bool valid = col_valid && t0 + row < count;
      cp_async16(tile + row * kStride + col, valid ? src + offset : src, valid);
    }
  } else {
    for (int e = threadIdx.x; e < ROWS * D; e += THREADS) {
      const int row = e / D, col = e % D, t = t0 + row;
      tile[row * kStride + col] = t < count && col < a.head_dim
                                      ? src[(first + static_cast<long long>(t) * stride) * a.head_dim + col]
                                      : Elem<T>::from(0.f);
    }
  }
}

// dq[0..1] += (x, y): one vector reduction where the pair is whole and 8-byte aligned (sm_90), else two.
__device__ __forceinline__ void add_pair(float* dq, int col, int head_dim, float x, float y) {
#if defined(LONGCTX_GPU_EMULATION) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900)
  if (head_dim % 2 == 0 && col + 1 < head_dim) {  // col is even, so (row * head_dim + col) is too
    atomicAdd(reinterpret_cast<float2*>(dq), make_float2(x, y));
    return;
  }
#endif
  if (col < head_dim) atomicAdd(dq, x);
  if (col + 1 < head_dim) atomicAdd(dq + 1, y);
}

// ---- softmax steps and epilogues shared by the kernels: a thread's two rows (t, t + 8) of scores or an
// accumulator laid out as mma's C tiles, acc[4 j + 2 r + e] = row r (0: t, 1: t + 8), column 8 j + 2 c + e
// (c = lane % 4) -----------------------------------------------------------------------------------------

// Forward, one key tile: the thread's rows (t, t + 8) of S against COLS keys from key0 (s[4 n + e]: row
// e / 2, key 8 n + 2 c + e % 2) to log2 units; keys past the selection and causal keys after the query
// to -inf when the tile needs a mask (masked_tile).
template <int COLS>
__device__ __forceinline__ void scale_and_mask(float* s, const FlashArgs& a, const FlashProblem& p, int key0,
                                               bool masked_tile, int t, float scale2) {
  const int c = threadIdx.x % 4;
#pragma unroll
  for (int i = 0; i < COLS / 2; ++i) {
    s[i] *= scale2;
    if (masked_tile && key_hidden(p, key0 + (i / 4) * 8 + 2 * c + (i & 1), t + ((i % 4) >> 1) * 8, a.causal))
      s[i] = -INFINITY;
  }
}

// Then the online softmax on them: m becomes the rows' running max (a row's 4 threads agree on it), s
// becomes P = exp2(s - max), l is rescaled and added to, and keep[r] is the factor for row r's output so
// far.
template <int COLS>
__device__ __forceinline__ void online_softmax(float* s, float (&m)[2], float (&l)[2], float (&keep)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = m[r];
#pragma unroll
    for (int n = 0; n < COLS / 8; ++n) mx = fmaxf(mx, fmaxf(s[4 * n + 2 * r], s[4 * n + 2 * r + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float base = mx == -INFINITY ? 0.f : mx;
    keep[r] = exp2f(m[r] - base);
    m[r] = mx;
    l[r] *= keep[r];
#pragma unroll
    for (int n = 0; n < COLS / 8; ++n) {
      s[4 * n + 2 * r] = exp2f(s[4 * n + 2 * r] - base);
      s[4 * n + 2 * r + 1] = exp2f(s[4 * n + 2 * r + 1] - base);
      l[r] += s[4 * n + 2 * r] + s[4 * n + 2 * r + 1];
    }
  }
}

// Row r of an accumulator (COLS columns as above) times keep[r].
template <int COLS>
__device__ __forceinline__ void scale_rows(float* acc, const float (&keep)[2]) {
#pragma unroll
  for (int i = 0; i < COLS / 2; ++i) acc[i] *= keep[(i % 4) >> 1];
}

// Forward: merges the block's branch result (acc / l, max m in log2 units) into (o, lse) for query rows
// t, t + 8: L = logaddexp(old, new); o = e^(old - L) o + e^(new - L) o_branch (old = -inf, unread, when
// the launch overwrites).
template <int D>
__device__ __forceinline__ void merge_into_output(const FlashArgs& a, const FlashProblem& p, int t, const float (&m)[2],
                                                  const float (&l)[2], const float* acc) {
  const int c = threadIdx.x % 4;
  float w_old[2], w_new[2], merged[2];
  long long index[2];
  bool valid[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = l[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    valid[r] = t + 8 * r < p.n_q;
    index[r] = valid[r] ? p.q_row(t + 8 * r) : 0;
    const float fresh = (m[r] + log2f(sum)) * kLn2;
    const float old = valid[r] && !a.overwrite ? a.lse[index[r]] : -INFINITY;
    merged[r] = old == -INFINITY ? fresh : fmaxf(old, fresh) + log1pf(expf(-fabsf(old - fresh)));
    w_old[r] = old == -INFINITY ? 0.f : expf(old - merged[r]);
    // A branch whose scores were all -inf (an infinite input; sum = 0) adds nothing; NaN still propagates.
    w_new[r] = fresh == -INFINITY ? 0.f : expf(fresh - merged[r]) / sum;
  }
  __syncwarp();  // every lane of a row has read the old lse before lane c == 0 writes the new one
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (!valid[r]) continue;
    float* out = a.o + index[r] * a.head_dim;
#pragma unroll
    for (int j = 0; j < D / 8; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int col = 8 * j + 2 * c + e;
        if (col < a.head_dim) {
          const float fresh_part = w_new[r] * acc[4 * j + 2 * r + e];
          out[col] = a.overwrite ? fresh_part : w_old[r] * out[col] + fresh_part;
        }
      }
    if (c == 0) a.lse[index[r]] = merged[r];
  }
}

// Backward: the lse (log2 units) and delta of query rows t0 .. t0 + ROWS - 1 into shared memory, by
// threads 0 .. ROWS - 1; past the selection lse = +inf (so P = 0 there) and delta = 0.
template <int ROWS>
__device__ __forceinline__ void load_row_stats(const FlashArgs& a, const FlashProblem& p, int t0, float* lse_s,
                                               float* delta_s) {
  if (threadIdx.x >= ROWS) return;
  const int t = t0 + threadIdx.x;
  const bool valid = t < p.n_q;
  // A row with lse = -inf saw no finite score: P = 0 there too (exp2(s - inf)), not exp2(s + inf).
  const float lse = valid ? a.lse[p.q_row(t)] : INFINITY;
  lse_s[threadIdx.x] = lse == -INFINITY ? INFINITY : lse * kLog2e;
  delta_s[threadIdx.x] = valid ? a.delta[p.q_row(t)] : 0.f;
}

// Backward: adds the block's dK (times the softmax scale) and dV for key rows t, t + 8 (writes them, when
// the launch overwrites). The block owns its keys within the branch, and earlier branches have written
// theirs (launches of one stream run in order; a fused block waits in order.before_write): no atomics.
template <int D>
__device__ __forceinline__ void add_key_gradients(const FlashArgs& a, const FlashProblem& p, int t, const float* dk,
                                                  const float* dv) {
  const int c = threadIdx.x % 4;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (t + 8 * r >= p.n_k) continue;
    const long long row = p.k_row(t + 8 * r) * a.head_dim;
#pragma unroll
    for (int j = 0; j < D / 8; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int col = 8 * j + 2 * c + e;
        if (col < a.head_dim) {
          const float dk_add = dk[4 * j + 2 * r + e] * a.scale, dv_add = dv[4 * j + 2 * r + e];
          a.dk[row + col] = a.overwrite ? dk_add : a.dk[row + col] + dk_add;
          a.dv[row + col] = a.overwrite ? dv_add : a.dv[row + col] + dv_add;
        }
      }
  }
}

// Backward: adds COLS columns from col0 of dQ (times the softmax scale) for query rows t, t + 8, atomically
// (other key blocks add to the same rows).
template <int COLS>
__device__ __forceinline__ void add_query_gradients(const FlashArgs& a, const FlashProblem& p, int t, int col0,
                                                    const float* dq) {
  const int c = threadIdx.x % 4;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (t + 8 * r >= p.n_q) continue;
    float* out = a.dq + p.q_row(t + 8 * r) * a.head_dim;
#pragma unroll
    for (int j = 0; j < COLS / 8; ++j) {
      const int col = col0 + 8 * j + 2 * c;
      add_pair(out + col, col, a.head_dim, dq[4 * j + 2 * r] * a.scale, dq[4 * j + 2 * r + 1] * a.scale);
    }
  }
}

}  // namespace longctx::cuda::LONGCTX_KERNELS
