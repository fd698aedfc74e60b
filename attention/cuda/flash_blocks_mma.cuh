// The mma.sync block bodies (any GPU the PTX runs on; flash_device.cuh has the fragment layouts):
// forward_mma_block, one block of kFwdBlockQ selected queries of a branch against its keys, merged into
// (o, lse); backward_mma_block, one block of kBwdBlockK selected keys, its dK / dV in registers and dQ added.
#pragma once

#include "attention/cuda/flash_device.cuh"

namespace longctx::cuda::LONGCTX_KERNELS {

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
