// The tensor-core kernels themselves (device code), included by flash_kernels.cu and, compiled for the host
// with LONGCTX_GPU_EMULATION (tests/gpu_emulation.hpp provides the CUDA names), by the emulation test
// that runs this very code on the CPU: one fiber per GPU thread, warp instructions emulated. Two families:
// mma.sync (any GPU the PTX runs on; first below) and warpgroup MMA for Hopper (wgmma.cuh; after them).
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

template <class T, int D, class Order>
__device__ __forceinline__ void forward_mma_block(const FlashArgs& a, const Problem& p, const int t0,
                                                  const Order& order) {
  constexpr int kStride = D + kPad, MT = kFwdMTiles;
  unsigned char* smem_raw = shared_memory();
  T* q_tile = reinterpret_cast<T*>(smem_raw);        // [kFwdBlockQ][kStride]
  T* k_tiles = q_tile + kFwdBlockQ * kStride;         // [2][kFwdBlockK][kStride]
  T* v_tiles = k_tiles + 2 * kFwdBlockK * kStride;    // [2][kFwdBlockK][kStride]

  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const T* v = static_cast<const T*>(a.v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4;
  const int row0 = warp * kFwdWarpRows;  // this warp's first query row in the tile; m-tile mt adds 16 mt
  const int key_end = forward_key_end(p, t0, kFwdBlockQ, a.causal);
  const int key_tiles = (key_end + kFwdBlockK - 1) / kFwdBlockK;
  const float scale2 = a.scale * kLog2e;

  load_rows<T, D, kFwdBlockQ, kFwdThreads>(q_tile, q, a, p.q_first, p.q_stride, p.n_q, t0);
  load_rows<T, D, kFwdBlockK, kFwdThreads>(k_tiles, k, a, p.k_first, p.k_stride, p.n_k, 0);
  load_rows<T, D, kFwdBlockK, kFwdThreads>(v_tiles, v, a, p.k_first, p.k_stride, p.n_k, 0);
  cp_async_commit();

  // Per m-tile: the output accumulator and, for the thread's rows (g, g + 8), the running max and sum.
  float acc[MT][D / 8][4];
  float m[MT][2], l[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int i = 0; i < D / 8; ++i) acc[mt][i][0] = acc[mt][i][1] = acc[mt][i][2] = acc[mt][i][3] = 0.f;
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.f;
  }

  for (int j = 0; j < key_tiles; ++j) {
    const int stage = j & 1;
    if (j + 1 < key_tiles) {
      load_rows<T, D, kFwdBlockK, kFwdThreads>(k_tiles + (stage ^ 1) * kFwdBlockK * kStride, k, a, p.k_first,
                                               p.k_stride, p.n_k, (j + 1) * kFwdBlockK);
      load_rows<T, D, kFwdBlockK, kFwdThreads>(v_tiles + (stage ^ 1) * kFwdBlockK * kStride, v, a, p.k_first,
                                               p.k_stride, p.n_k, (j + 1) * kFwdBlockK);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const T* k_tile = k_tiles + stage * kFwdBlockK * kStride;
    const T* v_tile = v_tiles + stage * kFwdBlockK * kStride;

    // S = Q K^T for this warp's rows and the tile's keys; each K fragment feeds every m-tile. Q's
    // fragments come from shared memory each step (in registers they would crowd out the accumulators).
    float s[MT][kFwdBlockK / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int n = 0; n < kFwdBlockK / 8; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) ldsm_x4(qa[mt], a_frag_address(q_tile, kStride, row0 + 16 * mt, kk * 16, lane));
#pragma unroll
      for (int np = 0; np < kFwdBlockK / 16; ++np) {
        uint32_t b[4];
        ldsm_x4(b, bt_frag_address(k_tile, kStride, np * 16, kk * 16, lane));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          Elem<T>::mma(s[mt][2 * np], qa[mt], b[0], b[1]);
          Elem<T>::mma(s[mt][2 * np + 1], qa[mt], b[2], b[3]);
        }
      }
    }

    // Scores to log2 units and masked, then the online softmax per m-tile; the output so far rescaled.
    const int key0 = j * kFwdBlockK;
    const bool masked_tile = tile_needs_mask(p, key0, kFwdBlockK, t0, a.causal);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
      scale_and_mask<kFwdBlockK>(&s[mt][0][0], a, p, key0, masked_tile, t0 + row0 + 16 * mt + g, scale2);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      float keep[2];
      online_softmax<kFwdBlockK>(&s[mt][0][0], m[mt], l[mt], keep);
      scale_rows<D>(&acc[mt][0][0], keep);
    }

    // O += P V, P straight from the score registers; each V fragment feeds every m-tile.
#pragma unroll
    for (int kc = 0; kc < kFwdBlockK / 16; ++kc) {
      uint32_t pa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        pa[mt][0] = Elem<T>::pack(s[mt][2 * kc][0], s[mt][2 * kc][1]);
        pa[mt][1] = Elem<T>::pack(s[mt][2 * kc][2], s[mt][2 * kc][3]);
        pa[mt][2] = Elem<T>::pack(s[mt][2 * kc + 1][0], s[mt][2 * kc + 1][1]);
        pa[mt][3] = Elem<T>::pack(s[mt][2 * kc + 1][2], s[mt][2 * kc + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b[4];
        ldsm_x4_trans(b, b_frag_address(v_tile, kStride, kc * 16, dp * 16, lane));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          Elem<T>::mma(acc[mt][2 * dp], pa[mt], b[0], b[1]);
          Elem<T>::mma(acc[mt][2 * dp + 1], pa[mt], b[2], b[3]);
        }
      }
    }
    __syncthreads();  // the next iteration's loads overwrite the other stage
  }

  // Merge this branch into (o, lse).
  order.before_write();
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) merge_into_output<D>(a, p, t0 + row0 + 16 * mt + g, m[mt], l[mt], &acc[mt][0][0]);
}

template <class T, int D, class Order>
__device__ __forceinline__ void backward_mma_block(const FlashArgs& a, const Problem& p, const int k0,
                                                   const Order& order) {
  constexpr int kStride = D + kPad, kDsStride = kBwdBlockK + kPad;
  unsigned char* smem_raw = shared_memory();
  T* k_tile = reinterpret_cast<T*>(smem_raw);         // [kBwdBlockK][kStride]
  T* v_tile = k_tile + kBwdBlockK * kStride;           // [kBwdBlockK][kStride]
  T* q_tiles = v_tile + kBwdBlockK * kStride;          // [2][kBwdBlockQ][kStride]
  T* do_tiles = q_tiles + 2 * kBwdBlockQ * kStride;    // [2][kBwdBlockQ][kStride]
  T* ds_tile = do_tiles + 2 * kBwdBlockQ * kStride;    // [kBwdBlockQ][kDsStride]: dS, query-major
  float* lse_s = reinterpret_cast<float*>(ds_tile + kBwdBlockQ * kDsStride);  // [2][kBwdBlockQ], log2 units
  float* delta_s = lse_s + 2 * kBwdBlockQ;                                     // [2][kBwdBlockQ]

  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const T* v = static_cast<const T*>(a.v);
  const T* dout = static_cast<const T*>(a.dout);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
  const float scale2 = a.scale * kLog2e;
  // Causal: queries before this key tile (global index q_base + t < k0) see none of it.
  const int q_first = backward_first_step(p, k0, kBwdBlockQ, a.causal);
  const int q_steps = (p.n_q + kBwdBlockQ - 1) / kBwdBlockQ - q_first;
  if (q_steps <= 0) return;  // no query of this rank sees these keys: they get no gradient here

  auto load_queries = [&](int step, int stage) {
    const int t0 = (q_first + step) * kBwdBlockQ;
    load_rows<T, D, kBwdBlockQ, kBwdThreads>(q_tiles + stage * kBwdBlockQ * kStride, q, a, p.q_first, p.q_stride,
                                             p.n_q, t0);
    load_rows<T, D, kBwdBlockQ, kBwdThreads>(do_tiles + stage * kBwdBlockQ * kStride, dout, a, p.q_first,
                                             p.q_stride, p.n_q, t0);
    load_row_stats<kBwdBlockQ>(a, p, t0, lse_s + stage * kBwdBlockQ, delta_s + stage * kBwdBlockQ);
  };

  load_rows<T, D, kBwdBlockK, kBwdThreads>(k_tile, k, a, p.k_first, p.k_stride, p.n_k, k0);
  load_rows<T, D, kBwdBlockK, kBwdThreads>(v_tile, v, a, p.k_first, p.k_stride, p.n_k, k0);
  load_queries(0, 0);
  cp_async_commit();

  float dk_acc[D / 8][4], dv_acc[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk_acc[i][e] = dv_acc[i][e] = 0.f;

  for (int step = 0; step < q_steps; ++step) {
    const int stage = step & 1;
    if (step + 1 < q_steps) {
      load_queries(step + 1, stage ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const T* q_tile = q_tiles + stage * kBwdBlockQ * kStride;
    const T* do_tile = do_tiles + stage * kBwdBlockQ * kStride;
    const float* lse_row = lse_s + stage * kBwdBlockQ;
    const float* delta_row = delta_s + stage * kBwdBlockQ;
    const int t0 = (q_first + step) * kBwdBlockQ;

    // S^T = K Q^T and dP^T = V dO^T: this warp's 16 keys by the step's queries.
    float st[kBwdBlockQ / 8][4], dpt[kBwdBlockQ / 8][4];
#pragma unroll
    for (int n = 0; n < kBwdBlockQ / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) st[n][e] = dpt[n][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t ka[4], va[4];
      ldsm_x4(ka, a_frag_address(k_tile, kStride, warp * 16, kk * 16, lane));
      ldsm_x4(va, a_frag_address(v_tile, kStride, warp * 16, kk * 16, lane));
#pragma unroll
      for (int np = 0; np < kBwdBlockQ / 16; ++np) {
        uint32_t bq[4], bdo[4];
        ldsm_x4(bq, bt_frag_address(q_tile, kStride, np * 16, kk * 16, lane));
        ldsm_x4(bdo, bt_frag_address(do_tile, kStride, np * 16, kk * 16, lane));
        Elem<T>::mma(st[2 * np], ka, bq[0], bq[1]);
        Elem<T>::mma(st[2 * np + 1], ka, bq[2], bq[3]);
        Elem<T>::mma(dpt[2 * np], va, bdo[0], bdo[1]);
        Elem<T>::mma(dpt[2 * np + 1], va, bdo[2], bdo[3]);
      }
    }

    // P^T = exp(S^T scale - lse), dS^T = P^T (dP^T - delta) (the softmax scale is applied at the end).
#pragma unroll
    for (int n = 0; n < kBwdBlockQ / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = n * 8 + 2 * c + (e & 1);
        const int key = k0 + warp * 16 + g + (e >> 1) * 8, query = t0 + col;
        float prob = exp2f(st[n][e] * scale2 - lse_row[col]);
        // P <= 1 exactly (lse sums this key's term too), but at |score| ~ 1e6 and more fp32 rounding of the
        // score and lse alone made it far larger (inf once packed to bf16). Capped as the CPU backward
        // caps it; NaN stays NaN.
        prob = prob > 1.f ? 1.f : prob;
        if (key_hidden(p, key, query, a.causal)) prob = 0.f;
        st[n][e] = prob;
        dpt[n][e] = prob * (dpt[n][e] - delta_row[col]);
      }

    // dV += P^T dO and dK += dS^T Q, the A operands straight from registers.
#pragma unroll
    for (int kc = 0; kc < kBwdBlockQ / 16; ++kc) {
      const uint32_t pa[4] = {Elem<T>::pack(st[2 * kc][0], st[2 * kc][1]), Elem<T>::pack(st[2 * kc][2], st[2 * kc][3]),
                              Elem<T>::pack(st[2 * kc + 1][0], st[2 * kc + 1][1]),
                              Elem<T>::pack(st[2 * kc + 1][2], st[2 * kc + 1][3])};
      const uint32_t da[4] = {
          Elem<T>::pack(dpt[2 * kc][0], dpt[2 * kc][1]), Elem<T>::pack(dpt[2 * kc][2], dpt[2 * kc][3]),
          Elem<T>::pack(dpt[2 * kc + 1][0], dpt[2 * kc + 1][1]), Elem<T>::pack(dpt[2 * kc + 1][2], dpt[2 * kc + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b[4];
        ldsm_x4_trans(b, b_frag_address(do_tile, kStride, kc * 16, dp * 16, lane));
        Elem<T>::mma(dv_acc[2 * dp], pa, b[0], b[1]);
        Elem<T>::mma(dv_acc[2 * dp + 1], pa, b[2], b[3]);
        ldsm_x4_trans(b, b_frag_address(q_tile, kStride, kc * 16, dp * 16, lane));
        Elem<T>::mma(dk_acc[2 * dp], da, b[0], b[1]);
        Elem<T>::mma(dk_acc[2 * dp + 1], da, b[2], b[3]);
      }
    }

    // dS to shared memory, query-major, for dQ = dS K.
#pragma unroll
    for (int n = 0; n < kBwdBlockQ / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        ds_tile[(n * 8 + 2 * c + (e & 1)) * kDsStride + warp * 16 + g + (e >> 1) * 8] = Elem<T>::from(dpt[n][e]);
    __syncthreads();

    // dQ (queries x D) += dS (queries x kBwdBlockK keys) K: the warps split into the step's m16 query tiles
    // times kColGroups column groups of D, so each dQ element is added once per (key block, step).
    constexpr int kRowTiles = kBwdBlockQ / 16, kColGroups = (kBwdThreads / 32) / kRowTiles, kCols = D / kColGroups;
    static_assert(kCols % 16 == 0, "dQ: whole n16 column pairs per warp");
    float dq_acc[kCols / 8][4];
#pragma unroll
    for (int n = 0; n < kCols / 8; ++n) dq_acc[n][0] = dq_acc[n][1] = dq_acc[n][2] = dq_acc[n][3] = 0.f;
    const int row0 = (warp % kRowTiles) * 16, col0 = (warp / kRowTiles) * kCols;
#pragma unroll
    for (int kc = 0; kc < kBwdBlockK / 16; ++kc) {
      uint32_t dsa[4];
      ldsm_x4(dsa, a_frag_address(ds_tile, kDsStride, row0, kc * 16, lane));
#pragma unroll
      for (int dp = 0; dp < kCols / 16; ++dp) {
        uint32_t b[4];
        ldsm_x4_trans(b, b_frag_address(k_tile, kStride, kc * 16, col0 + dp * 16, lane));
        Elem<T>::mma(dq_acc[2 * dp], dsa, b[0], b[1]);
        Elem<T>::mma(dq_acc[2 * dp + 1], dsa, b[2], b[3]);
      }
    }
    add_query_gradients<kCols>(a, p, t0 + row0 + g, col0, &dq_acc[0][0]);
    __syncthreads();  // ds_tile and this stage are rewritten next step
  }

  order.before_write();
  add_key_gradients<D>(a, p, k0 + warp * 16 + g, &dk_acc[0][0], &dv_acc[0][0]);
}

}  // namespace longctx::cuda::LONGCTX_KERNELS

#include "attention/cuda/wgmma.cuh"

namespace longctx::cuda::LONGCTX_KERNELS {

// ---- Hopper forward (sm_90a): warpgroup MMA ----------------------------------------------------------------
// Two warpgroups of 4 warps; warpgroup w takes query rows 64 w .. 64 w + 63 of the block's 128, warp i of
// the block rows 16 i .. 16 i + 15, so every thread holds two rows (g, g + 8) as in the mma.sync kernel.
// Per step of 128 keys: S = Q K^T as D / 16 wgmma m64n128k16 (Q's fragments in registers, K from shared
// memory), the online softmax on S's registers, then O += P V as 8 wgmma m64nDk16 (P from S's registers,
// V from shared memory, MN-major), issued with the next step's S so that it runs during that softmax.
// Q, K and V tiles are in the no-swizzle core-matrix layout (tile_cm_*): 16-byte row pieces in (row group,
// column chunk, row) order, so each thread's cp.async lands on consecutive 16 bytes and ldmatrix / wgmma
// read whole 128-byte core matrices.
constexpr int kWgThreads = 256;
constexpr int kWgBlockQ = 128;
constexpr int kWgBlockK = 128;

// Copies rows t0 .. t0 + ROWS - 1 (as load_rows) into a core-matrix tile: piece e (16 bytes at byte 16 e)
// is row 8 ((e / 8) / (D / 8)) + e % 8, column chunk (e / 8) % (D / 8). Head dims a multiple of 8 only.
template <class T, int D, int ROWS, int THREADS>
__device__ __forceinline__ void load_rows_cm(T* tile, const T* src, const FlashArgs& a, long long first,
                                             long long stride, int count, int t0) {
  constexpr int kChunks = D / 8, kPieceStep = THREADS / 8, kRowStep = kPieceStep / kChunks * 8;
  static_assert(kPieceStep % kChunks == 0 && ROWS % kRowStep == 0, "load_rows_cm: whole row groups per pass");
  const int e = threadIdx.x, col = ((e / 8) % kChunks) * 8, row0 = (e / 8) / kChunks * 8 + e % 8;
  const bool col_valid = col < a.head_dim;
  const long long step = kRowStep * stride * a.head_dim;
  long long offset = (first + static_cast<long long>(t0 + row0) * stride) * a.head_dim + col;
#pragma unroll
  for (int i = 0; i < ROWS / kRowStep; ++i, offset += step) {
    const bool valid = col_valid && t0 + row0 + i * kRowStep < count;
    cp_async16(tile + (e + i * THREADS) * 8, valid ? src + offset : src, valid);
  }
}

// Element (row, col) of a core-matrix tile with D columns.
template <int D>
__device__ __forceinline__ int cm_index(int row, int col) {
  return ((row / 8) * (D / 8) + col / 8) * 64 + (row % 8) * 8 + col % 8;
}

template <class T, int D, class Order>
__device__ __forceinline__ void forward_wgmma_block(const FlashArgs& a, const Problem& p, const int t0,
                                                    const Order& order) {
#if LONGCTX_HAVE_WGMMA
  constexpr int kKeyTile = kWgBlockK * D;  // elements of one K or V tile
  unsigned char* smem_raw = shared_memory();
  T* q_tile = reinterpret_cast<T*>(smem_raw);  // [kWgBlockQ x D], core matrices
  T* k_tiles = q_tile + kWgBlockQ * D;          // [2][kWgBlockK x D]
  T* v_tiles = k_tiles + 2 * kKeyTile;          // [2][kWgBlockK x D]

  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const T* v = static_cast<const T*>(a.v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4;
  const int row0 = warp * 16;  // this warp's first query row in the tile
  const int key_end = forward_key_end(p, t0, kWgBlockQ, a.causal);
  const int key_tiles = (key_end + kWgBlockK - 1) / kWgBlockK;
  if (key_tiles == 0) return;  // no key to see (block-uniform): nothing to merge
  const float scale2 = a.scale * kLog2e;

  uint32_t qa[D / 16][4];
  uint32_t pa[kWgBlockK / 16][4];  // P of the previous key tile: A of O += P V, issued a step later
  float s[kWgBlockK / 2];          // S of this step's key tile
  float acc[D / 2];  // O: acc[4 j + e] is row g + 8 (e / 2), column 8 j + 2 c + e % 2 of the warp's rows
#pragma unroll
  for (int i = 0; i < D / 2; ++i) acc[i] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, keep[2];

  // Key tile j's K sits in stage j & 1 from step j, its V from step j + 1 (where O += P_j V_j runs): step
  // j waits for both, then loads K_{j+1} and V_j into the stages step j - 1 used (its wgmmas were waited
  // before this step's barrier).
  auto next_tiles = [&](int j) {
    cp_async_wait<0>();
    fence_proxy_async();  // this thread's tile writes, visible to wgmma's reads
    __syncthreads();      // every thread's; and every warpgroup is done with the stages loaded now
    if (j >= key_tiles) return;
    if (j + 1 < key_tiles)
      load_rows_cm<T, D, kWgBlockK, kWgThreads>(k_tiles + ((j + 1) & 1) * kKeyTile, k, a, p.k_first, p.k_stride,
                                                p.n_k, (j + 1) * kWgBlockK);
    load_rows_cm<T, D, kWgBlockK, kWgThreads>(v_tiles + (j & 1) * kKeyTile, v, a, p.k_first, p.k_stride, p.n_k,
                                              j * kWgBlockK);
    cp_async_commit();
  };
  // S = Q K_j^T: K-major B, k-step kk at column chunk 2 kk; core matrices 128 bytes apart along K (the
  // head dim), 16 D bytes apart along N (8 keys). Committed as its own group.
  auto issue_scores = [&](int j) {
    const T* k_tile = k_tiles + (j & 1) * kKeyTile;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
      Wgmma<T, kWgBlockK>::template rs<0>(s, qa[kk], smem_descriptor(k_tile + kk * 128, 128, 16 * D), kk > 0);
    wgmma_commit();
  };
  // O += P_{j-1} V_{j-1}: V is MN-major B, k-step kc at row group 2 kc: 16 D bytes apart along K (8 keys),
  // 128 bytes along N (the head dim).
  auto issue_values = [&](int j) {
    const T* v_tile = v_tiles + ((j - 1) & 1) * kKeyTile;
#pragma unroll
    for (int kc = 0; kc < kWgBlockK / 16; ++kc)
      Wgmma<T, D>::template rs<1>(acc, pa[kc], smem_descriptor(v_tile + kc * 16 * D, 16 * D, 128), 1);
    wgmma_commit();
  };
  auto fence_registers = [&] {
#pragma unroll
    for (int i = 0; i < kWgBlockK / 2; ++i) fence_operand(s[i]);
#pragma unroll
    for (int i = 0; i < D / 2; ++i) fence_operand(acc[i]);
#pragma unroll
    for (int kc = 0; kc < kWgBlockK / 16; ++kc)
#pragma unroll
      for (int x = 0; x < 4; ++x) fence_operand(pa[kc][x]);
  };
  // The online softmax of S_j (waited): S becomes P and O's factor goes to keep (O itself may be in flight).
  auto softmax = [&](int j) {
    const int key0 = j * kWgBlockK;
    scale_and_mask<kWgBlockK>(s, a, p, key0, tile_needs_mask(p, key0, kWgBlockK, t0, a.causal), t0 + row0 + g,
                              scale2);
    online_softmax<kWgBlockK>(s, m, l, keep);
  };
  // P's A fragments straight from the score registers: keys 16 kc .. 16 kc + 15 are S's column tiles 2 kc
  // and 2 kc + 1.
  auto pack_p = [&] {
#pragma unroll
    for (int kc = 0; kc < kWgBlockK / 16; ++kc) {
      pa[kc][0] = Elem<T>::pack(s[8 * kc], s[8 * kc + 1]);
      pa[kc][1] = Elem<T>::pack(s[8 * kc + 2], s[8 * kc + 3]);
      pa[kc][2] = Elem<T>::pack(s[8 * kc + 4], s[8 * kc + 5]);
      pa[kc][3] = Elem<T>::pack(s[8 * kc + 6], s[8 * kc + 7]);
    }
  };

  load_rows_cm<T, D, kWgBlockQ, kWgThreads>(q_tile, q, a, p.q_first, p.q_stride, p.n_q, t0);
  load_rows_cm<T, D, kWgBlockK, kWgThreads>(k_tiles, k, a, p.k_first, p.k_stride, p.n_k, 0);
  cp_async_commit();

  // Step 0: S_0 alone (O is still zero).
  next_tiles(0);
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
    ldsm_x4(qa[kk], q_tile + cm_index<D>(row0 + lane % 16, kk * 16 + (lane / 16) * 8));
  fence_registers();
  wgmma_fence();
  issue_scores(0);
  wgmma_wait<0>();
  fence_registers();
  softmax(0);
  pack_p();

  // Steps 1 .. key_tiles - 1: S_j = Q K_j^T and O += P_{j-1} V_{j-1} go to the tensor cores together, and
  // the softmax of S_j runs while the second is in flight (FlashAttention-3's intra-warpgroup overlap);
  // O is rescaled once it has landed.
  for (int j = 1; j < key_tiles; ++j) {
    next_tiles(j);
    fence_registers();
    wgmma_fence();
    issue_scores(j);
    issue_values(j);
    wgmma_wait<1>();  // S_j; O += P V stays in flight
#pragma unroll
    for (int i = 0; i < kWgBlockK / 2; ++i) fence_operand(s[i]);
    softmax(j);
    wgmma_wait<0>();
    fence_registers();
    scale_rows<D>(acc, keep);
    pack_p();
  }

  // The last P V.
  next_tiles(key_tiles);
  fence_registers();
  wgmma_fence();
  issue_values(key_tiles);
  wgmma_wait<0>();
  fence_registers();

  order.before_write();
  merge_into_output<D>(a, p, t0 + row0 + g, m, l, acc);
#else
  (void)a, (void)p, (void)t0, (void)order;
  __trap();  // launched only where the sm_90a code runs (wgmma_compiled_here)
#endif
}

// ---- Hopper backward (sm_90a): warpgroup MMA -----------------------------------------------------------------
// A block owns 128 keys, warpgroup w keys 64 w .. 64 w + 63 (warp i keys 16 i .., as the mma.sync backward),
// dK / dV accumulating in registers; per step of 64 queries: S^T = K Q^T and dP^T = V dO^T (both operands
// from shared memory), P^T and dS^T on their registers, dV += P^T dO and dK += dS^T Q (A from registers,
// dO and Q as MN-major B); dS^T also goes to shared memory, and dQ = dS K (A = dS, MN-major, from there)
// is split by columns between the warpgroups, so each dQ element is added once per (block, step).
constexpr int kWgBwdThreads = 256;
constexpr int kWgBwdBlockK = 128;
constexpr int kWgBwdBlockQ = 64;
// Floats per staged dQ row: a warpgroup's D / 2 columns plus 8, so that a half-warp's float2 stores (4
// rows x 4 column pairs) hit 16 different bank pairs; rows stay 16-byte aligned for the bulk copy.
template <int D> constexpr int kWgDqStride = D / 2 + 8;

template <class T, int D, class Order>
__device__ __forceinline__ void backward_wgmma_block(const FlashArgs& a, const Problem& p, const int k0,
                                                     const Order& order) {
#if LONGCTX_HAVE_WGMMA
  constexpr int kQTile = kWgBwdBlockQ * D, kHalf = D / 2;
  unsigned char* smem_raw = shared_memory();
  T* k_tile = reinterpret_cast<T*>(smem_raw);  // [kWgBwdBlockK x D], core matrices
  T* v_tile = k_tile + kWgBwdBlockK * D;        // [kWgBwdBlockK x D]
  T* q_tiles = v_tile + kWgBwdBlockK * D;       // [2][kWgBwdBlockQ x D]
  T* do_tiles = q_tiles + 2 * kQTile;           // [2][kWgBwdBlockQ x D]
  T* ds_tile = do_tiles + 2 * kQTile;           // dS^T, [kWgBwdBlockK keys x kWgBwdBlockQ queries]
  float* lse_s = reinterpret_cast<float*>(ds_tile + kWgBwdBlockK * kWgBwdBlockQ);  // [2][kWgBwdBlockQ], log2 units
  float* delta_s = lse_s + 2 * kWgBwdBlockQ;                                        // [2][kWgBwdBlockQ]
  float* dq_stage = delta_s + 2 * kWgBwdBlockQ;  // [2 warpgroups][kWgBwdBlockQ][kWgDqStride]: dQ rows, fp32

  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const T* v = static_cast<const T*>(a.v);
  const T* dout = static_cast<const T*>(a.dout);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4, wg = warp / 4;
  const float scale2 = a.scale * kLog2e;
  const int q_first = backward_first_step(p, k0, kWgBwdBlockQ, a.causal);
  const int q_steps = (p.n_q + kWgBwdBlockQ - 1) / kWgBwdBlockQ - q_first;
  if (q_steps <= 0) return;  // no query of this rank sees these keys: they get no gradient here

  auto load_queries = [&](int step, int stage) {
    const int t0 = (q_first + step) * kWgBwdBlockQ;
    load_rows_cm<T, D, kWgBwdBlockQ, kWgBwdThreads>(q_tiles + stage * kQTile, q, a, p.q_first, p.q_stride, p.n_q, t0);
    load_rows_cm<T, D, kWgBwdBlockQ, kWgBwdThreads>(do_tiles + stage * kQTile, dout, a, p.q_first, p.q_stride, p.n_q,
                                                    t0);
    load_row_stats<kWgBwdBlockQ>(a, p, t0, lse_s + stage * kWgBwdBlockQ, delta_s + stage * kWgBwdBlockQ);
  };

  load_rows_cm<T, D, kWgBwdBlockK, kWgBwdThreads>(k_tile, k, a, p.k_first, p.k_stride, p.n_k, k0);
  load_rows_cm<T, D, kWgBwdBlockK, kWgBwdThreads>(v_tile, v, a, p.k_first, p.k_stride, p.n_k, k0);
  load_queries(0, 0);
  cp_async_commit();

  float dk_acc[D / 2], dv_acc[D / 2];  // [4 j + e]: key row g + 8 (e / 2) of the warp's 16, column 8 j + 2 c + e % 2
#pragma unroll
  for (int i = 0; i < D / 2; ++i) dk_acc[i] = dv_acc[i] = 0.f;

  // Thread i < kWgBwdBlockQ of each warpgroup sends dQ row i of each step to global memory.
  const bool dq_sender = threadIdx.x % 128 < kWgBwdBlockQ;
  float* my_dq_stage = dq_stage + wg * kWgBwdBlockQ * kWgDqStride<D>;
  for (int step = 0; step < q_steps; ++step) {
    const int stage = step & 1;
    cp_async_wait<0>();
    if (dq_sender) bulk_wait_read<0>();  // the last step's dQ rows have left the staging rows
    fence_proxy_async();
    __syncthreads();  // the stage's tiles are in; every warpgroup is done with the other stage and dS^T
    if (step + 1 < q_steps) {
      load_queries(step + 1, stage ^ 1);
      cp_async_commit();
    }
    const T* q_tile = q_tiles + stage * kQTile;
    const T* do_tile = do_tiles + stage * kQTile;
    const float* lse_row = lse_s + stage * kWgBwdBlockQ;
    const float* delta_row = delta_s + stage * kWgBwdBlockQ;
    const int t0 = (q_first + step) * kWgBwdBlockQ;

    // S^T = K Q^T and dP^T = V dO^T: this warpgroup's 64 keys x the step's queries, K-major operands.
    float st[kWgBwdBlockQ / 2], dpt[kWgBwdBlockQ / 2];  // [4 j + e]: key row as above, query 8 j + 2 c + e % 2
#pragma unroll
    for (int i = 0; i < kWgBwdBlockQ / 2; ++i) {
      fence_operand(st[i]);
      fence_operand(dpt[i]);
    }
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
      WgmmaSS<T, kWgBwdBlockQ>::template ss<0, 0>(st, smem_descriptor(k_tile + cm_index<D>(64 * wg, 16 * kk), 128, 16 * D),
                                                  smem_descriptor(q_tile + cm_index<D>(0, 16 * kk), 128, 16 * D), kk > 0);
    wgmma_commit();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
      WgmmaSS<T, kWgBwdBlockQ>::template ss<0, 0>(dpt, smem_descriptor(v_tile + cm_index<D>(64 * wg, 16 * kk), 128, 16 * D),
                                                  smem_descriptor(do_tile + cm_index<D>(0, 16 * kk), 128, 16 * D), kk > 0);
    wgmma_commit();

    // P^T = exp(S^T scale - lse) while dP^T is in flight, then dS^T = P^T (dP^T - delta) (the softmax scale
    // is applied at the end).
    wgmma_wait<1>();
#pragma unroll
    for (int i = 0; i < kWgBwdBlockQ / 2; ++i) fence_operand(st[i]);
#pragma unroll
    for (int i = 0; i < kWgBwdBlockQ / 2; ++i) {
      const int col = (i / 4) * 8 + 2 * c + (i & 1);
      const int key = k0 + warp * 16 + g + ((i % 4) >> 1) * 8, query = t0 + col;
      const float prob = exp2f(st[i] * scale2 - lse_row[col]);
      st[i] = key_hidden(p, key, query, a.causal) ? 0.f : prob > 1.f ? 1.f : prob;  // as the mma backward
    }
    wgmma_wait<0>();
#pragma unroll
    for (int i = 0; i < kWgBwdBlockQ / 2; ++i) fence_operand(dpt[i]);
#pragma unroll
    for (int i = 0; i < kWgBwdBlockQ / 2; ++i) {
      const int col = (i / 4) * 8 + 2 * c + (i & 1);
      dpt[i] = st[i] * (dpt[i] - delta_row[col]);
    }

    // P^T and dS^T as A fragments (query chunk kc is S^T's column tiles 2 kc, 2 kc + 1: register x holds key
    // row g + 8 (x % 2), queries 16 kc + 8 (x / 2) + 2 c and the next); dS^T also to shared memory, as core
    // matrices of [keys][queries], for dQ below. (Written before the products that take these registers
    // are issued: a wgmma's A registers may not be touched, even read, until its wait.)
    uint32_t pa[kWgBwdBlockQ / 16][4], da[kWgBwdBlockQ / 16][4];
#pragma unroll
    for (int kc = 0; kc < kWgBwdBlockQ / 16; ++kc)
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        pa[kc][x] = Elem<T>::pack(st[8 * kc + 2 * x], st[8 * kc + 2 * x + 1]);
        da[kc][x] = Elem<T>::pack(dpt[8 * kc + 2 * x], dpt[8 * kc + 2 * x + 1]);
        *reinterpret_cast<uint32_t*>(ds_tile + cm_index<kWgBwdBlockQ>(warp * 16 + g + 8 * (x & 1),
                                                                       16 * kc + 8 * (x >> 1) + 2 * c)) = da[kc][x];
        fence_operand(pa[kc][x]);
        fence_operand(da[kc][x]);
      }

    // dV += P^T dO and dK += dS^T Q: A from registers, dO and Q as MN-major B (query chunk kc at row group 2 kc).
#pragma unroll
    for (int i = 0; i < D / 2; ++i) {
      fence_operand(dk_acc[i]);
      fence_operand(dv_acc[i]);
    }
    wgmma_fence();
#pragma unroll
    for (int kc = 0; kc < kWgBwdBlockQ / 16; ++kc) {
      Wgmma<T, D>::template rs<1>(dv_acc, pa[kc], smem_descriptor(do_tile + cm_index<D>(16 * kc, 0), 16 * D, 128), 1);
      Wgmma<T, D>::template rs<1>(dk_acc, da[kc], smem_descriptor(q_tile + cm_index<D>(16 * kc, 0), 16 * D, 128), 1);
    }
    wgmma_commit();  // still in flight while dQ is issued; waited with it
    fence_proxy_async();
    __syncthreads();  // all of dS^T is written

    // dQ (queries x D) += dS K over the block's 128 keys, warpgroup wg taking columns wg D / 2 ..: A = dS,
    // MN-major from dS^T (8 keys = 16 kWgBwdBlockQ bytes along K, 8 queries = 128 bytes along M); B = K,
    // MN-major.
    float dq_acc[kHalf / 2];
#pragma unroll
    for (int i = 0; i < kHalf / 2; ++i) fence_operand(dq_acc[i]);
    wgmma_fence();
#pragma unroll
    for (int kc = 0; kc < kWgBwdBlockK / 16; ++kc)
      WgmmaSS<T, kHalf>::template ss<1, 1>(
          dq_acc, smem_descriptor(ds_tile + cm_index<kWgBwdBlockQ>(16 * kc, 0), 16 * kWgBwdBlockQ, 128),
          smem_descriptor(k_tile + cm_index<D>(16 * kc, wg * kHalf), 16 * D, 128), kc > 0);
    wgmma_commit();
    wgmma_wait<0>();  // dV / dK and dQ
#pragma unroll
    for (int i = 0; i < D / 2; ++i) {
      fence_operand(dk_acc[i]);
      fence_operand(dv_acc[i]);
    }
#pragma unroll
    for (int kc = 0; kc < kWgBwdBlockQ / 16; ++kc)
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        fence_operand(pa[kc][x]);
        fence_operand(da[kc][x]);
      }
#pragma unroll
    for (int i = 0; i < kHalf / 2; ++i) fence_operand(dq_acc[i]);

    // dQ (times the softmax scale) through shared memory: the warpgroup's 64 rows x kHalf columns as fp32
    // rows, then one bulk reduce-add per query row into dq (other key blocks add to the same rows; the
    // copy engine's adds are element-wise atomic), where atomics would take kHalf / 2 float2 adds a row.
#pragma unroll
    for (int j = 0; j < kHalf / 8; ++j)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float* at = my_dq_stage + ((warp % 4) * 16 + g + 8 * r) * kWgDqStride<D> + 8 * j + 2 * c;
        *reinterpret_cast<float2*>(at) =
            make_float2(dq_acc[4 * j + 2 * r] * a.scale, dq_acc[4 * j + 2 * r + 1] * a.scale);
      }
    fence_proxy_async();  // the rows, visible to the copy engine
    warpgroup_sync(wg);
    if (dq_sender) {
      const int row = threadIdx.x % 128, t = t0 + row, cols = min(kHalf, a.head_dim - wg * kHalf);
      if (t < p.n_q && cols > 0)
        bulk_reduce_add(a.dq + p.q_row(t) * a.head_dim + wg * kHalf, my_dq_stage + row * kWgDqStride<D>,
                        static_cast<uint32_t>(cols) * 4u);
      bulk_commit();
    }
  }
  if (dq_sender) bulk_wait<0>();

  order.before_write();
  add_key_gradients<D>(a, p, k0 + warp * 16 + g, dk_acc, dv_acc);
#else
  (void)a, (void)p, (void)k0, (void)order;
  __trap();  // launched only where the sm_90a code runs (wgmma_compiled_here)
#endif
}

// ---- the kernels: one branch per launch (blockIdx.x is the tile), or all local branches fused ------------------
// The four block bodies: forward and backward, each on mma.sync and on wgmma (Hopper).
enum class Kernel { forward_mma, forward_wgmma, backward_mma, backward_wgmma };

__host__ __device__ constexpr bool is_forward(Kernel which) {
  return which == Kernel::forward_mma || which == Kernel::forward_wgmma;
}
// Rows of the sparse space per block: queries (forward) or keys (backward).
__host__ __device__ constexpr int rows_per_block(Kernel which) {
  switch (which) {
    case Kernel::forward_mma: return kFwdBlockQ;
    case Kernel::forward_wgmma: return kWgBlockQ;
    case Kernel::backward_mma: return kBwdBlockK;
    case Kernel::backward_wgmma: return kWgBwdBlockK;
  }
  return 0;
}
__host__ __device__ constexpr int threads_per_block(Kernel which) {
  switch (which) {
    case Kernel::forward_mma: return kFwdThreads;
    case Kernel::forward_wgmma: return kWgThreads;
    case Kernel::backward_mma: return kBwdThreads;
    case Kernel::backward_wgmma: return kWgBwdThreads;
  }
  return 0;
}

template <Kernel K, class T, int D, class Order>
__device__ __forceinline__ void run_block(const FlashArgs& a, const Problem& p, int first, const Order& order) {
  if constexpr (K == Kernel::forward_mma) forward_mma_block<T, D>(a, p, first, order);
  else if constexpr (K == Kernel::forward_wgmma) forward_wgmma_block<T, D>(a, p, first, order);
  else if constexpr (K == Kernel::backward_mma) backward_mma_block<T, D>(a, p, first, order);
  else backward_wgmma_block<T, D>(a, p, first, order);
}

template <Kernel K, class T, int D>
__global__ void __launch_bounds__(threads_per_block(K), 1) flash_kernel(const FlashArgs a) {
  Problem p;
  int first;
  if (decode_block<rows_per_block(K), is_forward(K)>(a, blockIdx.x, p, first))
    run_block<K, T, D>(a, p, first, Unordered{});
}

template <Kernel K, class T, int D>
__global__ void __launch_bounds__(threads_per_block(K), 1) flash_fused_kernel(const __grid_constant__ FusedArgs f) {
  run_fused_block<rows_per_block(K), threads_per_block(K), is_forward(K)>(
      f, [](const FlashArgs& a, const Problem& p, int first, const BranchOrder& order) {
        run_block<K, T, D>(a, p, first, order);
      });
}

// Writes 1 where the GPU runs code with wgmma (the sm_90a machine code), 0 where it runs the PTX.
__global__ void wgmma_probe_kernel(int* compiled) { *compiled = LONGCTX_HAVE_WGMMA; }

// ---- host side of a launch (shared with the emulation test) -------------------------------------------

// Calls f(std::integral_constant<int, D>{}) with D the padded head dim the kernels use for `head_dim`.
template <class F>
void with_padded_head_dim(int64_t head_dim, F&& f) {
  if (head_dim <= 32) f(std::integral_constant<int, 32>{});
  else if (head_dim <= 64) f(std::integral_constant<int, 64>{});
  else f(std::integral_constant<int, 128>{});
}

// Whether a pass's first launch (branch 0 of the schedule) may overwrite its outputs: its branch selects
// every row. Forward: o and lse (local or spanning); backward: dk and dv, when branch 0 is local (a
// spanning launch writes the gathered keys' gradients, where keys no query of the rank sees get nothing).
// Then nothing fills them before; otherwise the pass's begin does, and every launch adds or merges.
inline bool first_launch_overwrites(const Schedule& schedule) {
  return !schedule.branches.empty() && schedule.branches.front().dilation == 1;
}

// FlashArgs::overwrite for `a`'s launch, checked: a launch that overwrites its outputs must select every
// row (or the rows it skips keep what was there), and a spanning backward writes the gathered keys'
// gradients, where keys no query of the rank sees get nothing.
inline int overwrite_flag(const FlashArgs& a, bool overwrite, bool backward) {
  if (overwrite && a.dilation != 1)
    throw InternalError("flash: a launch with dilation " + std::to_string(a.dilation) +
                        " cannot overwrite its outputs (it does not select every row)");
  if (overwrite && backward && a.spanning)
    throw InternalError("flash backward: a spanning launch cannot overwrite dk / dv");
  return overwrite ? 1 : 0;
}

// `a` with the forward's / backward's tensors; `overwrite`: see FlashArgs::overwrite.
inline FlashArgs with_forward_buffers(FlashArgs a, const void* q, const void* k, const void* v, float* o,
                                      float* lse, bool overwrite) {
  a.overwrite = overwrite_flag(a, overwrite, false);
  a.q = q;
  a.k = k;
  a.v = v;
  a.o = o;
  a.lse = lse;
  return a;
}
inline FlashArgs with_backward_buffers(FlashArgs a, const void* q, const void* k, const void* v, const void* dout,
                                       const float* lse, const float* delta, float* dq, float* dk, float* dv,
                                       bool overwrite) {
  a.overwrite = overwrite_flag(a, overwrite, true);
  a.q = q;
  a.k = k;
  a.v = v;
  a.dout = dout;
  a.lse = const_cast<float*>(lse);  // read only in the backward
  a.delta = delta;
  a.dq = dq;
  a.dk = dk;
  a.dv = dv;
  return a;
}

template <class T, int D>
constexpr size_t forward_smem_bytes() {
  return static_cast<size_t>(kFwdBlockQ + 4 * kFwdBlockK) * (D + kPad) * sizeof(T);
}
template <class T, int D>
constexpr size_t forward_wgmma_smem_bytes() {
  return static_cast<size_t>(kWgBlockQ + 4 * kWgBlockK) * D * sizeof(T);
}
template <class T, int D>
constexpr size_t backward_wgmma_smem_bytes() {
  return static_cast<size_t>(2 * kWgBwdBlockK * D + 4 * kWgBwdBlockQ * D + kWgBwdBlockK * kWgBwdBlockQ) * sizeof(T) +
         (4 * kWgBwdBlockQ + 2 * kWgBwdBlockQ * kWgDqStride<D>) * sizeof(float);
}
template <class T, int D>
constexpr size_t backward_smem_bytes() {
  return static_cast<size_t>(2 * kBwdBlockK + 4 * kBwdBlockQ) * (D + kPad) * sizeof(T) +
         static_cast<size_t>(kBwdBlockQ) * (kBwdBlockK + kPad) * sizeof(T) + 4 * kBwdBlockQ * sizeof(float);
}

// A kernel for element type T and a head dim: its entry (instantiated at the padded head dim), dynamic
// shared memory and block size.
struct KernelConfig {
  void (*kernel)(const FlashArgs) = nullptr;  // one branch per launch
  void (*fused)(FusedArgs) = nullptr;         // fused: its shared memory is smem + kFusedSlotBytes
  size_t smem = 0;
  int threads = 0;
};
// The fused kernels' extra shared memory (FusedSlot: the block's tile and its chunks), past the kernel's own.
constexpr size_t kFusedSlotBytes = sizeof(FusedSlot);
template <Kernel K, class T, int D>
KernelConfig config_of(size_t smem) {
  return {flash_kernel<K, T, D>, flash_fused_kernel<K, T, D>, smem, threads_per_block(K)};
}
template <class T>
KernelConfig kernel_config(Kernel which, int64_t head_dim) {
  KernelConfig k;
  with_padded_head_dim(head_dim, [&](auto d) {
    constexpr int D = decltype(d)::value;
    switch (which) {
      case Kernel::forward_mma: k = config_of<Kernel::forward_mma, T, D>(forward_smem_bytes<T, D>()); break;
      case Kernel::forward_wgmma: k = config_of<Kernel::forward_wgmma, T, D>(forward_wgmma_smem_bytes<T, D>()); break;
      case Kernel::backward_mma: k = config_of<Kernel::backward_mma, T, D>(backward_smem_bytes<T, D>()); break;
      case Kernel::backward_wgmma: k = config_of<Kernel::backward_wgmma, T, D>(backward_wgmma_smem_bytes<T, D>()); break;
    }
  });
  return k;
}

// The kernels count a segment's selected rows per head in int (FlashProblem): a branch selecting more
// (ceil(rows / r) of `rows` positions) is refused (before: the count wrapped, every block was skipped, and o
// and lse came back unwritten with exit 0; from a review, at w / r >= 2^31).
inline void check_selected_rows(const Branch& branch, long long rows) {
  const long long selected_max = (rows + branch.dilation - 1) / branch.dilation;
  if (selected_max > std::numeric_limits<int>::max())
    throw UsageError("--device cuda: branch w=" + std::to_string(branch.segment_length) + ", r=" +
                     std::to_string(branch.dilation) + " selects " + std::to_string(selected_max) +
                     " rows of one segment per head, above the CUDA kernels' 2^31 - 1 (a shorter segment length or "
                     "a larger dilation; the CPU backend has no such limit)");
}

// Arguments for branch `branch` over `dims` (local mode), and its grid size in blocks of
// `rows_per_block` sparse rows.
inline FlashArgs branch_args(const AttentionParams& params, const AttentionDims& dims, const Branch& branch,
                      int rows_per_block, long long& blocks) {
  FlashArgs a{};
  a.seq_len = dims.seq_len;
  a.segment = effective_segment_length(branch, dims.seq_len);
  a.dilation = branch.dilation;
  a.segments = segment_count(branch, dims.seq_len);
  a.batch = static_cast<int>(dims.batch);
  a.heads = static_cast<int>(dims.heads);
  a.head_dim = static_cast<int>(dims.head_dim);
  const long long selected_max = (a.segment + a.dilation - 1) / a.dilation;
  a.tiles = static_cast<int>((selected_max + rows_per_block - 1) / rows_per_block);
  a.causal = params.causal ? 1 : 0;
  a.offsets = params.offsets;
  a.scale = static_cast<float>(resolved_scale(params, dims.head_dim));
  check_selected_rows(branch, a.segment);
  blocks = dims.batch * a.segments * dims.heads * a.tiles;
  if (blocks > std::numeric_limits<int>::max())
    throw UsageError("--device cuda: " + std::to_string(blocks) + " blocks for one branch is above one launch's limit");
  return a;
}

// ---- fused launches (host side) ----
// The fused launches' counters: rows written per (batch, chunk of kOrderChunk positions, head).
inline long long order_chunks(const AttentionDims& dims) { return (dims.seq_len + kOrderChunk - 1) / kOrderChunk; }
inline size_t order_counters(const AttentionDims& dims) {
  return static_cast<size_t>(dims.batch * order_chunks(dims) * dims.heads);
}

// One launch of `launches` (local branches with their buffers, schedule order, each with its block count):
// the kernel's shared memory is `smem` (+ kFusedSlotBytes); `next_tile` (one unsigned) and `written`
// (order_counters) zeroed before it. `total` gets the launch's blocks.
inline FusedArgs fused_args(const std::vector<FlashArgs>& launches, const std::vector<long long>& blocks,
                            const AttentionDims& dims, size_t smem, unsigned* next_tile, int* written,
                            long long& total) {
  if (launches.empty() || launches.size() > static_cast<size_t>(kMaxFusedBranches) || blocks.size() != launches.size())
    throw InternalError("flash: a fused launch takes 1 to " + std::to_string(kMaxFusedBranches) + " branches, not " +
                        std::to_string(launches.size()));
  FusedArgs f{};
  f.branches = static_cast<int>(launches.size());
  for (size_t e = 0; e < launches.size(); ++e) {
    if (launches[e].spanning) throw InternalError("flash: a fused launch takes local branches only");
    if (launches[e].overwrite && e > 0) throw InternalError("flash: only branch 0 of a fused launch may overwrite");
    f.branch[e] = launches[e];
    f.first_block[e + 1] = f.first_block[e] + blocks[e];
  }
  total = f.first_block[launches.size()];
  if (total > std::numeric_limits<int>::max())
    throw UsageError("--device cuda: " + std::to_string(total) + " blocks for one launch is above its limit");
  f.next_tile = next_tile;
  f.written = written;
  f.chunks = order_chunks(dims);
  if (order_counters(dims) > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw UsageError("--device cuda: the sequence is too long for a fused launch's counters (LONGCTX_FLASH_FUSE=off)");
  if (smem % 16 != 0) throw InternalError("flash: a kernel's shared memory is not a multiple of 16 bytes");
  f.slot = static_cast<unsigned>(smem);
  return f;
}

// Spanning mode: one segment of `group` ranks x dims.seq_len rows, this rank `member`. Blocks tile the
// query rows (forward: up to ceil(L / r) per head) or the keys (backward: up to ceil(g L / r)).
inline FlashArgs spanning_args(const AttentionParams& params, const AttentionDims& local, const Branch& branch, int member,
                        int group, bool over_keys, int rows_per_block, long long& blocks) {
  if (member < 0 || member >= group) throw InternalError("flash: member " + std::to_string(member) + " of a group of " + std::to_string(group));
  FlashArgs a = branch_args(params, local, branch, rows_per_block, blocks);
  a.spanning = 1;
  a.local_len = local.seq_len;
  a.member = member;
  a.group = group;
  a.segments = 1;
  check_selected_rows(branch, group * local.seq_len);  // the keys (n_k) of the gathered segment
  const long long rows = over_keys ? group * local.seq_len : local.seq_len;
  const long long selected_max = (rows + branch.dilation - 1) / branch.dilation;
  a.tiles = static_cast<int>((selected_max + rows_per_block - 1) / rows_per_block);
  blocks = local.batch * local.heads * a.tiles;
  if (blocks > std::numeric_limits<int>::max())
    throw UsageError("--device cuda: " + std::to_string(blocks) + " blocks for one branch is above one launch's limit");
  return a;
}

}  // namespace longctx::cuda::LONGCTX_KERNELS
