// The tensor-core kernels' algorithm, emulated on the host in float with the kernels' own block decode,
// loop bounds and masks (flash_layout.hpp: forward_key_end, tile_needs_mask, key_hidden,
// backward_first_step) and their tile sizes: per block, per query tile, key tiles with an online softmax
// and the log-sum-exp merge into (o, lse); backward per key tile over the query steps that see it. Only
// the warp-level matrix products are not emulated (plain dot products instead). Checked against the
// double reference on the awkward shapes, on one "GPU" and sharded over 2-4 emulated ranks with the
// distributed driver's gather / reduce-scatter layout (SpanLayout). Runs without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "attention/cuda/flash_layout.hpp"
#include "attention/reference.hpp"
#include "attention_cases.hpp"
#include "test_util.hpp"

namespace longctx::cuda {
namespace {

using longctx::testing::all_close;
using longctx::testing::AttentionCase;
using longctx::testing::random_tensor;
using longctx::testing::rows_of;

// Row views: queries at q_row(t), keys at k_row(t) of [*, D] arrays.
struct Rows {
  const float* q;
  const float* k;
  const float* v;
  int64_t D;
};

float dot(const float* a, const float* b, int64_t D) {
  float s = 0;
  for (int64_t d = 0; d < D; ++d) s += a[d] * b[d];
  return s;
}

// One block problem, forward: per query tile, the key tiles the kernel visits, masked as it masks them.
void forward_problem(const FlashProblem& p, const Rows& x, float scale, bool causal, float* o, float* lse) {
  const float scale2 = scale * 1.4426950408889634f;
  const int64_t D = x.D;
  for (int t0 = 0; t0 < p.n_q; t0 += kFwdBlockQ) {
    const int key_end = forward_key_end(p, t0, kFwdBlockQ, causal);
    for (int t = t0; t < std::min(t0 + kFwdBlockQ, p.n_q); ++t) {
      float m = -INFINITY, l = 0;
      std::vector<float> acc(static_cast<size_t>(D), 0.f);
      for (int key0 = 0; key0 < key_end; key0 += kFwdBlockK) {
        const bool mask = tile_needs_mask(p, key0, kFwdBlockK, t0, causal);
        std::vector<float> s(kFwdBlockK);
        for (int j = 0; j < kFwdBlockK; ++j) {
          const int key = key0 + j;
          // Keys past the selection are zero-filled tiles: score 0 unless masked.
          s[static_cast<size_t>(j)] = key < p.n_k ? dot(x.q + p.q_row(t) * D, x.k + p.k_row(key) * D, D) * scale2 : 0.f;
          if (mask && key_hidden(p, key, t, causal)) s[static_cast<size_t>(j)] = -INFINITY;
        }
        float mx = m;
        for (float v : s) mx = std::max(mx, v);
        const float base = mx == -INFINITY ? 0.f : mx;
        const float keep = std::exp2(m - base);
        m = mx;
        l *= keep;
        for (float& a : acc) a *= keep;
        for (int j = 0; j < kFwdBlockK; ++j) {
          const float w = std::exp2(s[static_cast<size_t>(j)] - base);
          l += w;
          const int key = key0 + j;
          if (w != 0.f)
            for (int64_t d = 0; d < D; ++d) acc[static_cast<size_t>(d)] += w * x.v[p.k_row(key) * D + d];
        }
      }
      // The epilogue's merge.
      const int64_t row = p.q_row(t);
      const float fresh = (m + std::log2(l)) * 0.6931471805599453f;
      const float old = lse[row];
      const float merged = old == -INFINITY ? fresh : std::max(old, fresh) + std::log1p(std::exp(-std::fabs(old - fresh)));
      const float w_old = old == -INFINITY ? 0.f : std::exp(old - merged), w_new = std::exp(fresh - merged) / l;
      for (int64_t d = 0; d < D; ++d) o[row * D + d] = w_old * o[row * D + d] + w_new * acc[static_cast<size_t>(d)];
      lse[row] = merged;
    }
  }
}

// One block problem, backward: per key tile, the query steps the kernel visits.
void backward_problem(const FlashProblem& p, const Rows& x, const float* dout, const float* lse, const float* delta,
                      float scale, bool causal, float* dq, float* dk, float* dv) {
  const int64_t D = x.D;
  for (int k0 = 0; k0 < p.n_k; k0 += kBwdBlockK) {
    const int first = backward_first_step(p, k0, kBwdBlockQ, causal);
    const int steps = (p.n_q + kBwdBlockQ - 1) / kBwdBlockQ - first;
    for (int step = 0; step < steps; ++step) {
      const int t0 = (first + step) * kBwdBlockQ;
      for (int t = t0; t < std::min(t0 + kBwdBlockQ, p.n_q); ++t)
        for (int key = k0; key < std::min(k0 + kBwdBlockK, p.n_k); ++key) {
          if (key_hidden(p, key, t, causal)) continue;
          const int64_t qr = p.q_row(t), kr = p.k_row(key);
          const float prob = std::exp(dot(x.q + qr * D, x.k + kr * D, D) * scale - lse[qr]);
          const float ds = prob * (dot(dout + qr * D, x.v + kr * D, D) - delta[qr]);
          for (int64_t d = 0; d < D; ++d) {
            dq[qr * D + d] += scale * ds * x.k[kr * D + d];
            dk[kr * D + d] += scale * ds * x.q[qr * D + d];
            dv[kr * D + d] += prob * dout[qr * D + d];
          }
        }
    }
  }
}

float scale_of(const AttentionParams& params, int64_t D) {
  return static_cast<float>(params.softmax_scale != 0 ? params.softmax_scale : 1.0 / std::sqrt(static_cast<double>(D)));
}

// visit(problem) for every (batch, segment, head) of a local branch over N rows that selects rows: the
// blocks flash_forward_branch / flash_backward_branch launch.
template <class Visit>
void for_each_local_problem(const AttentionParams& params, const Branch& branch, int64_t B, int64_t N, int H,
                            Visit&& visit) {
  const int64_t w = effective_segment_length(branch, N), segments = segment_count(branch, N);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t seg = 0; seg < segments; ++seg)
      for (int h = 0; h < H; ++h) {
        FlashProblem p;
        if (local_problem(b, seg, h, N, w, branch.dilation, H, params.offsets, p)) visit(p);
      }
}

// Every local branch's problems over a [B, N, H, D] tensor, like flash_forward / flash_backward.
void emulate_single(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& dout, Tensor& o, Tensor& lse, Tensor& dq, Tensor& dk, Tensor& dv) {
  const Shape& s = q.shape();
  const int64_t B = s.size() == 4 ? s[0] : 1, N = s[s.size() - 3], D = s.back();
  const int H = static_cast<int>(s[s.size() - 2]);
  const float scale = scale_of(params, D);
  o = Tensor(s);
  lse = Tensor(lse_shape(s));
  for (int64_t i = 0; i < lse.size(); ++i) lse[i] = -INFINITY;
  const Rows x{q.data(), k.data(), v.data(), D};
  for (const Branch& branch : params.schedule.branches)
    for_each_local_problem(params, branch, B, N, H, [&](const FlashProblem& p) {
      forward_problem(p, x, scale, params.causal, o.data(), lse.data());
    });
  Tensor delta(lse.shape());
  for (int64_t r = 0; r < delta.size(); ++r) delta[r] = dot(dout.data() + r * D, o.data() + r * D, D);
  dq = Tensor(s);
  dk = Tensor(s);
  dv = Tensor(s);
  for (const Branch& branch : params.schedule.branches)
    for_each_local_problem(params, branch, B, N, H, [&](const FlashProblem& p) {
      backward_problem(p, x, dout.data(), lse.data(), delta.data(), scale, params.causal, dq.data(), dk.data(),
                       dv.data());
    });
}

TEST(FlashEmulation, OneGpuMatchesReference) {
  uint64_t seed = 700;
  for (const AttentionCase& c : testing::awkward_attention_cases())
    for (bool causal : {false, true})
      for (auto offsets : {HeadOffsets::paper, HeadOffsets::grouped}) {
        SCOPED_TRACE(c.name + (causal ? " causal " : " full ") + to_string(offsets));
        const AttentionParams p = c.params(causal, offsets);
        const Tensor q = random_tensor(c.shape(), ++seed, 1.5f), k = random_tensor(c.shape(), ++seed, 1.5f),
                     v = random_tensor(c.shape(), ++seed), dout = random_tensor(c.shape(), ++seed);
        Tensor o, lse, dq, dk, dv, o_ref, lse_ref, dq_ref, dk_ref, dv_ref;
        emulate_single(p, q, k, v, dout, o, lse, dq, dk, dv);
        reference_forward(p, q, k, v, o_ref, lse_ref);
        reference_backward(p, q, k, v, o_ref, lse_ref, dout, dq_ref, dk_ref, dv_ref);
        EXPECT_TRUE(all_close(o, o_ref, 1e-4, 1e-4)) << "o";
        EXPECT_TRUE(all_close(lse, lse_ref, 1e-4, 1e-5)) << "lse";
        EXPECT_TRUE(all_close(dq, dq_ref, 1e-3, 1e-3)) << "dq";
        EXPECT_TRUE(all_close(dk, dk_ref, 1e-3, 1e-3)) << "dk";
        EXPECT_TRUE(all_close(dv, dv_ref, 1e-3, 1e-3)) << "dv";
      }
}

// The distributed driver, emulated for all P ranks in one process: local branches on each rank's rows;
// spanning branches from tiles laid out by SpanLayout (what pack + all-gatherv + reorder produce), and
// dK / dV summed over the group onto the owners' rows (what reduce-scatter + add_rows do).
TEST(FlashEmulation, ShardedRanksMatchReference) {
  struct Case {
    const char* name;
    std::vector<int64_t> w, r;  // -k means k L
    int64_t B, H, D;
    bool causal;
    HeadOffsets offsets;
    int64_t L = 24;  // rows per rank
  };
  const std::vector<Case> cases{
      {"local+2ranks+all", {6, -2, -4}, {1, 2, 4}, 1, 4, 16, false, HeadOffsets::paper},
      {"local+2ranks+all causal", {6, -2, -4}, {1, 2, 4}, 1, 4, 16, true, HeadOffsets::paper},
      {"uneven phases r=5 grouped causal", {12, 24, -4}, {1, 5, 3}, 1, 5, 8, true, HeadOffsets::grouped},
      {"r=5 B=2", {8, -2}, {1, 5}, 2, 3, 12, false, HeadOffsets::paper},
      {"only spanning causal", {-2, -4}, {1, 3}, 1, 3, 16, true, HeadOffsets::grouped},
      {"r > L causal", {-4}, {1}, 1, 2, 4, true, HeadOffsets::paper},
      // Rank 1's queries start at sparse index 190 = 30 mod 32 (the forward's key tile): the key tile before
      // the diagonal one then ends one key past its first query, the one partial-mask case tile-aligned
      // shards never reach.
      {"q_base = 30 mod 32, causal", {-2}, {1}, 1, 2, 4, true, HeadOffsets::paper, 190},
  };
  for (int P : {2, 4}) {
    for (const Case& c : cases) {
      const int64_t L = c.L;
      SCOPED_TRACE(std::string(c.name) + " P=" + std::to_string(P));
      std::vector<int64_t> w;
      for (int64_t x : c.w) w.push_back(x < 0 ? -x * L : x);
      if (P == 2 && std::find(c.w.begin(), c.w.end(), -4) != c.w.end()) {
        for (int64_t& x : w)
          if (x == 4 * L) x = 2 * L;  // a segment cannot span more ranks than there are
      }
      AttentionParams params;
      params.schedule = make_schedule(w, c.r, false);
      params.causal = c.causal;
      params.offsets = c.offsets;
      const int64_t N = L * P, B = c.B, D = c.D;
      const int H = static_cast<int>(c.H);
      const float scale = scale_of(params, D);
      const Shape shape{B, N, c.H, D};
      const Tensor q = random_tensor(shape, 21, 1.5f), k = random_tensor(shape, 22, 1.5f), v = random_tensor(shape, 23),
                   dout = random_tensor(shape, 24);
      Tensor o_ref, lse_ref, dq_ref, dk_ref, dv_ref;
      reference_forward(params, q, k, v, o_ref, lse_ref);
      reference_backward(params, q, k, v, o_ref, lse_ref, dout, dq_ref, dk_ref, dv_ref);

      std::vector<Tensor> ql, kl, vl, dl, o(P), lse(P), dq(P), dk(P), dv(P), delta(P);
      for (int me = 0; me < P; ++me) {
        ql.push_back(rows_of(q, me * L, L));
        kl.push_back(rows_of(k, me * L, L));
        vl.push_back(rows_of(v, me * L, L));
        dl.push_back(rows_of(dout, me * L, L));
        o[me] = Tensor(ql[me].shape());
        lse[me] = Tensor(lse_shape(ql[me].shape()));
        for (int64_t i = 0; i < lse[me].size(); ++i) lse[me][i] = -INFINITY;
      }
      // Tiles of spanning branch `branch` for the group of rank me, laid out as the driver lays them out.
      auto tiles = [&](const Branch& branch, int me, const std::vector<Tensor>& src) {
        const int g = static_cast<int>(effective_segment_length(branch, N) / L), first_rank = (me / g) * g;
        const SpanLayout lay(B, H, D, L, branch.dilation, g, me % g, params.offsets);
        std::vector<float> out(static_cast<size_t>(B * lay.keys_all() * D), 0.f);
        lay.for_each_gathered_row([&](int mm, int64_t b, int64_t h, int64_t local_row, int64_t at) {
          const float* from = src[static_cast<size_t>(first_rank + mm)].data() + ((b * L + local_row) * H + h) * D;
          std::copy(from, from + D, out.begin() + at);
        });
        return out;
      };
      for (const Branch& branch : params.schedule.branches) {
        const bool spans = effective_segment_length(branch, N) > L;
        for (int me = 0; me < P; ++me) {
          if (!spans) {  // on the rank's own L rows (w' divides L)
            for_each_local_problem(params, branch, B, L, H, [&](const FlashProblem& p) {
              forward_problem(p, Rows{ql[me].data(), kl[me].data(), vl[me].data(), D}, scale, params.causal,
                              o[me].data(), lse[me].data());
            });
            continue;
          }
          const int g = static_cast<int>(effective_segment_length(branch, N) / L);
          const std::vector<float> kt = tiles(branch, me, kl), vt = tiles(branch, me, vl);
          for (int64_t b = 0; b < B; ++b)
            for (int h = 0; h < H; ++h) {
              FlashProblem p;
              if (spanning_problem(b, h, L, me % g, g, branch.dilation, H, params.offsets, p))
                forward_problem(p, Rows{ql[me].data(), kt.data(), vt.data(), D}, scale, params.causal, o[me].data(),
                                lse[me].data());
            }
        }
      }
      for (int me = 0; me < P; ++me) {
        EXPECT_TRUE(all_close(o[me], rows_of(o_ref, me * L, L), 1e-4, 1e-4)) << "o, rank " << me;
        EXPECT_TRUE(all_close(lse[me], rows_of(lse_ref, me * L, L), 1e-4, 1e-5)) << "lse, rank " << me;
        delta[me] = Tensor(lse[me].shape());
        for (int64_t r = 0; r < delta[me].size(); ++r) delta[me][r] = dot(dl[me].data() + r * D, o[me].data() + r * D, D);
        dq[me] = Tensor(ql[me].shape());
        dk[me] = Tensor(ql[me].shape());
        dv[me] = Tensor(ql[me].shape());
      }
      for (const Branch& branch : params.schedule.branches) {
        const bool spans = effective_segment_length(branch, N) > L;
        if (!spans) {
          for (int me = 0; me < P; ++me)
            for_each_local_problem(params, branch, B, L, H, [&](const FlashProblem& p) {
              backward_problem(p, Rows{ql[me].data(), kl[me].data(), vl[me].data(), D}, dl[me].data(),
                               lse[me].data(), delta[me].data(), scale, params.causal, dq[me].data(), dk[me].data(),
                               dv[me].data());
            });
          continue;
        }
        const int g = static_cast<int>(effective_segment_length(branch, N) / L);
        for (int me = 0; me < P; ++me) {
          const std::vector<float> kt = tiles(branch, me, kl), vt = tiles(branch, me, vl);
          std::vector<float> dkt(kt.size(), 0.f), dvt(vt.size(), 0.f);
          for (int64_t b = 0; b < B; ++b)
            for (int h = 0; h < H; ++h) {
              FlashProblem p;
              if (spanning_problem(b, h, L, me % g, g, branch.dilation, H, params.offsets, p))
                backward_problem(p, Rows{ql[me].data(), kt.data(), vt.data(), D}, dl[me].data(), lse[me].data(),
                                 delta[me].data(), scale, params.causal, dq[me].data(), dkt.data(), dvt.data());
            }
          // Reduce-scatter + add_rows: rank me's tile rows of member mm go to rank (group start + mm).
          const int first_rank = (me / g) * g;
          const SpanLayout lay(B, H, D, L, branch.dilation, g, me % g, params.offsets);
          lay.for_each_gathered_row([&](int mm, int64_t b, int64_t h, int64_t local_row, int64_t from) {
            const int64_t at = ((b * L + local_row) * H + h) * D;
            for (int64_t d = 0; d < D; ++d) {
              dk[static_cast<size_t>(first_rank + mm)][at + d] += dkt[static_cast<size_t>(from + d)];
              dv[static_cast<size_t>(first_rank + mm)][at + d] += dvt[static_cast<size_t>(from + d)];
            }
          });
        }
      }
      for (int me = 0; me < P; ++me) {
        EXPECT_TRUE(all_close(dq[me], rows_of(dq_ref, me * L, L), 1e-3, 1e-3)) << "dq, rank " << me;
        EXPECT_TRUE(all_close(dk[me], rows_of(dk_ref, me * L, L), 1e-3, 1e-3)) << "dk, rank " << me;
        EXPECT_TRUE(all_close(dv[me], rows_of(dv_ref, me * L, L), 1e-3, 1e-3)) << "dv, rank " << me;
      }
    }
  }
}

}  // namespace
}  // namespace longctx::cuda
