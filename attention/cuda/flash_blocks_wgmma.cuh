// The warpgroup-MMA block bodies for Hopper (sm_90a; the instructions are wgmma.cuh's): the forward and
// backward of flash_blocks_mma.cuh on 128-row blocks of two warpgroups. Where this compilation pass has no
// wgmma code (LONGCTX_HAVE_WGMMA 0: the compute_80 / compute_90 PTX) they trap; the host launches them only
// where the GPU runs the sm_90a code.
#pragma once

#include "attention/cuda/flash_device.cuh"
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
static_assert(kWgBlockQ <= kMaxTileRows && kWgBlockK <= kMaxTileRows && kWgBwdBlockK <= kMaxTileRows &&
              kWgBwdBlockQ <= kMaxTileRows);  // kMaxSelectedRows's headroom
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

}  // namespace longctx::cuda::LONGCTX_KERNELS
