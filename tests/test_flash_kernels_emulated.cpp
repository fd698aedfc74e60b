// The tensor-core kernels' own source (attention/cuda/flash_kernels.cuh) run on the CPU by the GPU
// emulation (gpu_emulation.hpp: a fiber per GPU thread, the warp instructions emulated from the PTX ISA's
// fragment tables, cp.async copies landing at their wait), against the double reference on rounded
// inputs: forward and backward, bf16 and fp16, local branches on awkward shapes and a spanning branch on 2
// emulated ranks (forward and backward); and the fp32 reference kernels. What this cannot see: timing,
// and any misreading of the ISA shared by the kernels and the emulator's fragment tables. Slow (a context
// switch per barrier): small shapes only.
#include "gpu_emulation.hpp"  // first: the CUDA names for the kernel source

#include "attention/cuda/flash_kernels.cuh"
#include "attention/cuda/reference_kernels.cuh"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "attention/reference.hpp"
#include "attention_cases.hpp"
#include "test_util.hpp"

namespace longctx::cuda {
namespace {

namespace K = kernels_emulated;
using longctx::testing::AttentionCase;
using longctx::testing::random_tensor;
using longctx::testing::relative_error;
using longctx::testing::rows_of;

template <class T> T to_elem(float x);
template <> __nv_bfloat16 to_elem<__nv_bfloat16>(float x) { return {emulation::bf16_bits(x)}; }
template <> __half to_elem<__half>(float x) { return {emulation::fp16_bits(x)}; }
template <class T> float from_elem(T x);
template <> float from_elem<__nv_bfloat16>(__nv_bfloat16 x) { return emulation::bf16_value(x.bits); }
template <> float from_elem<__half>(__half x) { return emulation::fp16_value(x.bits); }

template <class T>
std::vector<T> convert(const Tensor& t) {
  std::vector<T> out(static_cast<size_t>(t.size()));
  for (int64_t i = 0; i < t.size(); ++i) out[static_cast<size_t>(i)] = to_elem<T>(t[i]);
  return out;
}

template <class T>
Tensor back(const std::vector<T>& x, const Shape& shape) {
  Tensor t(shape);
  for (int64_t i = 0; i < t.size(); ++i) t[i] = from_elem<T>(x[static_cast<size_t>(i)]);
  return t;
}

using K::Kernel;
using K::rows_per_block;

// One branch's launch of `kernel`, emulated, for the element type and the head dim.
template <class T>
void run(Kernel kernel, const K::FlashArgs& a, long long blocks, int64_t head_dim) {
  const K::KernelConfig k = K::kernel_config<T>(kernel, head_dim);
  emulation::launch(static_cast<unsigned>(blocks), static_cast<unsigned>(k.threads), k.smem, [&] { k.kernel(a); });
}

// delta = rowsum(dout * o), from the element-type dout as the delta kernel computes it.
template <class T>
std::vector<float> delta_of(const std::vector<T>& dout, const Tensor& o, int64_t head_dim) {
  std::vector<float> delta(static_cast<size_t>(o.size() / head_dim), 0.f);
  for (size_t r = 0; r < delta.size(); ++r)
    for (int64_t d = 0; d < head_dim; ++d)
      delta[r] += from_elem<T>(dout[r * static_cast<size_t>(head_dim) + static_cast<size_t>(d)]) *
                  o[static_cast<int64_t>(r) * head_dim + d];
  return delta;
}

// o and lse as the host leaves them for a forward's launches: NaN where the first launch overwrites them
// (so that any read of them shows in the results), else o = 0 and lse = -inf. Returns that launch's flag.
bool prepare_outputs(const Schedule& schedule, Tensor& o, Tensor& lse) {
  const bool overwrite = K::first_launch_overwrites(schedule);
  for (int64_t i = 0; i < o.size(); ++i) o[i] = overwrite ? NAN : 0.f;
  for (int64_t i = 0; i < lse.size(); ++i) lse[i] = overwrite ? NAN : -INFINITY;
  return overwrite;
}

// dk and dv likewise for a backward whose branch 0 is local: NaN where its launch overwrites them, else 0.
bool prepare_key_gradients(const Schedule& schedule, Tensor& dk, Tensor& dv) {
  const bool overwrite = K::first_launch_overwrites(schedule);
  for (int64_t i = 0; i < dk.size(); ++i) dk[i] = dv[i] = overwrite ? NAN : 0.f;
  return overwrite;
}

// All of `launches` (local branches, schedule order) as one fused launch, emulated; then every order
// counter must hold the rows all the branches select in its chunk, and every tile must have been taken.
template <class T>
void run_fused(Kernel kernel, const std::vector<K::FlashArgs>& launches, const std::vector<long long>& blocks,
               const AttentionParams& params, const AttentionDims& dims) {
  const K::KernelConfig k = K::kernel_config<T>(kernel, dims.head_dim);
  unsigned next_tile = 0;
  std::vector<int> written(K::order_counters(dims), 0);
  long long total = 0;
  const K::FusedArgs f = K::fused_args(launches, blocks, dims, k.smem, &next_tile, written.data(), total);
  emulation::launch(static_cast<unsigned>(total), static_cast<unsigned>(k.threads), f.slot + K::kFusedSlotBytes,
                    [&] { k.fused(f); });
  EXPECT_EQ(next_tile, static_cast<unsigned>(total));
  const int64_t N = dims.seq_len, H = dims.heads;
  for (int64_t b = 0; b < dims.batch; ++b)
    for (int64_t c = 0; c < f.chunks; ++c)
      for (int64_t h = 0; h < H; ++h) {
        int64_t all = 0;
        for (const Branch& branch : params.schedule.branches)
          all += selected_between(c * kOrderChunk, std::min((c + 1) * kOrderChunk, N), N,
                                  effective_segment_length(branch, N), branch.dilation,
                                  head_offset(h, branch.dilation, H, params.offsets));
        ASSERT_EQ(written[static_cast<size_t>((b * f.chunks + c) * H + h)], all)
            << "b=" << b << " chunk " << c << " h=" << h;
      }
}

// A forward and the backward on its (o, lse): one launch per branch, or `fused`.
struct Results {
  Tensor o, lse, dq, dk, dv;
};
template <class T>
Results run_passes(const AttentionParams& params, const AttentionDims& dims, const std::vector<T>& q16,
                   const std::vector<T>& k16, const std::vector<T>& v16, const std::vector<T>& do16, Kernel forward,
                   Kernel backward, bool fused) {
  const Shape shape{dims.batch, dims.seq_len, dims.heads, dims.head_dim};
  Results x{Tensor(shape), Tensor(lse_shape(shape)), Tensor(shape), Tensor(shape), Tensor(shape)};
  std::vector<K::FlashArgs> launches;
  std::vector<long long> blocks;
  bool overwrite = prepare_outputs(params.schedule, x.o, x.lse);
  for (const Branch& branch : params.schedule.branches) {
    blocks.push_back(0);
    launches.push_back(
        K::with_forward_buffers(K::branch_args(params, dims, branch, rows_per_block(forward), blocks.back()),
                                q16.data(), k16.data(), v16.data(), x.o.data(), x.lse.data(), overwrite));
    if (!fused) run<T>(forward, launches.back(), blocks.back(), dims.head_dim);
    overwrite = false;
  }
  if (fused) run_fused<T>(forward, launches, blocks, params, dims);

  const std::vector<float> delta = delta_of(do16, x.o, dims.head_dim);
  launches.clear();
  blocks.clear();
  overwrite = prepare_key_gradients(params.schedule, x.dk, x.dv);
  for (const Branch& branch : params.schedule.branches) {
    blocks.push_back(0);
    launches.push_back(K::with_backward_buffers(
        K::branch_args(params, dims, branch, rows_per_block(backward), blocks.back()), q16.data(), k16.data(),
        v16.data(), do16.data(), x.lse.data(), delta.data(), x.dq.data(), x.dk.data(), x.dv.data(), overwrite));
    if (!fused) run<T>(backward, launches.back(), blocks.back(), dims.head_dim);
    overwrite = false;
  }
  if (fused) run_fused<T>(backward, launches, blocks, params, dims);
  return x;
}

AttentionDims dims_of(const AttentionCase& c) {
  AttentionDims dims;
  dims.batch = c.B;
  dims.seq_len = c.N;
  dims.heads = c.H;
  dims.head_dim = c.D;
  return dims;
}

// The forward, then the backward on its (o, lse), vs the reference on the rounded inputs.
template <class T>
void check_local(const AttentionCase& c, bool causal, HeadOffsets offsets, double tol_fwd, double tol_bwd,
                 uint64_t seed, Kernel forward = Kernel::forward_mma, Kernel backward = Kernel::backward_mma) {
  const AttentionParams params = c.params(causal, offsets);
  const Shape shape = c.shape();
  const Tensor q = random_tensor(shape, seed, 1.5f), k = random_tensor(shape, seed + 1, 1.5f),
               v = random_tensor(shape, seed + 2), dout = random_tensor(shape, seed + 3);
  const std::vector<T> q16 = convert<T>(q), k16 = convert<T>(k), v16 = convert<T>(v), do16 = convert<T>(dout);
  const Results x = run_passes(params, dims_of(c), q16, k16, v16, do16, forward, backward, false);
  Tensor o_ref, lse_ref, dq_ref, dk_ref, dv_ref;
  const Tensor qr = back(q16, shape), kr = back(k16, shape), vr = back(v16, shape), dor = back(do16, shape);
  reference_forward(params, qr, kr, vr, o_ref, lse_ref);
  EXPECT_LE(relative_error(x.o, o_ref), tol_fwd) << "o";
  EXPECT_LE(relative_error(x.lse, lse_ref), 1e-5) << "lse";
  reference_backward(params, qr, kr, vr, o_ref, lse_ref, dor, dq_ref, dk_ref, dv_ref);
  EXPECT_LE(relative_error(x.dq, dq_ref), tol_bwd) << "dq";
  EXPECT_LE(relative_error(x.dk, dk_ref), tol_bwd) << "dk";
  EXPECT_LE(relative_error(x.dv, dv_ref), tol_bwd) << "dv";
}

// The fused launches give the same bits as one launch per branch (blocks run in the order they take their
// tiles here, so dq's additions come in the same order too).
template <class T>
void check_fused(const AttentionCase& c, bool causal, HeadOffsets offsets, uint64_t seed, Kernel forward,
                 Kernel backward) {
  const AttentionParams params = c.params(causal, offsets);
  const Shape shape = c.shape();
  const std::vector<T> q16 = convert<T>(random_tensor(shape, seed, 1.5f)),
                       k16 = convert<T>(random_tensor(shape, seed + 1, 1.5f)),
                       v16 = convert<T>(random_tensor(shape, seed + 2)),
                       do16 = convert<T>(random_tensor(shape, seed + 3));
  const Results one = run_passes(params, dims_of(c), q16, k16, v16, do16, forward, backward, false);
  const Results all = run_passes(params, dims_of(c), q16, k16, v16, do16, forward, backward, true);
  auto same_bits = [](const Tensor& a, const Tensor& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), static_cast<size_t>(a.size()) * sizeof(float)) == 0;
  };
  EXPECT_TRUE(same_bits(one.o, all.o)) << "o";
  EXPECT_TRUE(same_bits(one.lse, all.lse)) << "lse";
  EXPECT_TRUE(same_bits(one.dq, all.dq)) << "dq";
  EXPECT_TRUE(same_bits(one.dk, all.dk)) << "dk";
  EXPECT_TRUE(same_bits(one.dv, all.dv)) << "dv";
}

std::vector<AttentionCase> small_cases() {
  return {
      {"odd_n_partial", 1, 37, 3, 24, {8, 16}, {1, 2}},
      {"w_gt_n_h_not_multiple", 1, 100, 5, 24, {64, 128}, {1, 3}},
      {"batch_h_lt_r", 2, 70, 2, 16, {30, 70}, {1, 5}},
      {"tiny_d", 2, 50, 2, 3, {7}, {1}},
      {"two_key_tiles_d64", 1, 150, 1, 64, {150}, {1}},
      {"d128", 1, 80, 1, 128, {80, 40}, {1, 2}},
      {"dilated_first", 1, 60, 2, 16, {20, 60}, {2, 1}},  // o / lse filled before, every launch merges
  };
}

TEST(FlashKernelsEmulated, Bf16LocalBranchesMatchReference) {
  uint64_t seed = 40;
  int variant = 0;
  for (const AttentionCase& c : small_cases()) {
    for (bool causal : {false, true}) {  // both maskings; the offset mode alternates to bound the time
      const HeadOffsets offsets = variant++ % 2 ? HeadOffsets::grouped : HeadOffsets::paper;
      SCOPED_TRACE(c.name + (causal ? " causal " : " full ") + to_string(offsets));
      check_local<__nv_bfloat16>(c, causal, offsets, 2e-2, 5e-2, seed += 4);
    }
  }
}

TEST(FlashKernelsEmulated, Fp16LocalBranchesMatchReference) {
  const AttentionCase c{"fp16", 1, 90, 2, 40, {32, 90}, {1, 2}};
  for (bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "full");
    check_local<__half>(c, causal, HeadOffsets::paper, 4e-3, 1e-2, causal ? 7 : 3);
  }
}

// The Hopper kernels (wgmma, emulated from the PTX ISA's descriptor and fragment layouts), forward and
// backward, on the local cases whose head dim they take (a multiple of 8), bf16 and fp16.
TEST(FlashKernelsEmulated, WgmmaKernelsMatchReference) {
  uint64_t seed = 140;
  int variant = 0;
  for (const AttentionCase& c : small_cases()) {
    if (c.D % 8 != 0) continue;
    for (bool causal : {false, true}) {
      const HeadOffsets offsets = variant++ % 4 < 2 ? HeadOffsets::paper : HeadOffsets::grouped;
      SCOPED_TRACE(c.name + (causal ? " causal " : " full ") + to_string(offsets));
      check_local<__nv_bfloat16>(c, causal, offsets, 2e-2, 5e-2, seed += 4, Kernel::forward_wgmma,
                                 Kernel::backward_wgmma);
    }
  }
  // D = 128 over three 128-key tiles and five 64-query steps, causal (the diagonal tile partly masked).
  const AttentionCase wide{"three_key_tiles_d128", 1, 300, 1, 128, {300}, {1}};
  SCOPED_TRACE("three_key_tiles_d128 causal");
  check_local<__nv_bfloat16>(wide, true, HeadOffsets::paper, 2e-2, 5e-2, 17, Kernel::forward_wgmma,
                             Kernel::backward_wgmma);
  const AttentionCase c{"fp16", 1, 90, 2, 40, {32, 90}, {1, 2}};
  SCOPED_TRACE("fp16 causal");
  check_local<__half>(c, true, HeadOffsets::paper, 4e-3, 1e-2, 11, Kernel::forward_wgmma, Kernel::backward_wgmma);
}

// All branches in one launch, both families: several branches (o / lse merged and dk / dv added by several
// blocks per row, in schedule order), a schedule whose branch 0 is dilated (nothing overwrites), a segment
// longer than a chunk with dilations above and below kOrderChunk's row spacing, and a short last segment.
TEST(FlashKernelsEmulated, FusedLaunchesMatchOneLaunchPerBranch) {
  const std::vector<AttentionCase> cases = {
      {"three_branches", 2, 96, 3, 16, {16, 48, 96}, {1, 2, 4}},
      {"dilated_first", 1, 60, 2, 16, {20, 60}, {2, 1}},
      {"chunks", 1, 1300, 2, 32, {128, 1300}, {1, 600}},
      {"short_last_segment", 1, 530, 4, 24, {256, 512}, {1, 3}},
  };
  uint64_t seed = 400;
  for (const AttentionCase& c : cases)
    for (bool causal : {false, true}) {
      SCOPED_TRACE(c.name + (causal ? " causal" : " full"));
      check_fused<__nv_bfloat16>(c, causal, HeadOffsets::paper, seed += 4, Kernel::forward_mma, Kernel::backward_mma);
      if (c.D % 8 == 0)
        check_fused<__nv_bfloat16>(c, causal, HeadOffsets::grouped, seed += 4, Kernel::forward_wgmma,
                                   Kernel::backward_wgmma);
    }
}

// A branch spanning 2 emulated ranks of L = 70 rows (rank 1's queries start at sparse index 70 = 6 mod 64),
// causal, with a local branch before it: each rank's queries against the group's keys laid out as the
// driver lays them out; backward, each rank's dK / dV of the gathered keys summed onto their owners.
void check_spanning(Kernel forward, Kernel backward) {
  using T = __nv_bfloat16;
  const int64_t L = 70, P = 2, N = L * P, H = 3, D = 32;
  AttentionParams params;
  params.schedule = make_schedule({35, N}, {1, 2}, false);
  params.causal = true;
  params.offsets = HeadOffsets::paper;
  const Shape shape{1, N, H, D};
  const Tensor q = back(convert<T>(random_tensor(shape, 61, 1.5f)), shape),
               k = back(convert<T>(random_tensor(shape, 62, 1.5f)), shape),
               v = back(convert<T>(random_tensor(shape, 63)), shape),
               dout = back(convert<T>(random_tensor(shape, 64)), shape);
  Tensor o_ref, lse_ref, dq_ref, dk_ref, dv_ref;
  reference_forward(params, q, k, v, o_ref, lse_ref);
  reference_backward(params, q, k, v, o_ref, lse_ref, dout, dq_ref, dk_ref, dv_ref);
  const Branch local_branch = params.schedule.branches[0], span = params.schedule.branches[1];
  AttentionDims local;
  local.batch = 1;
  local.seq_len = L;
  local.heads = H;
  local.head_dim = D;
  // The gathered tiles (identical on both ranks of the group) and where each owner's rows sit in them.
  const SpanLayout lay(1, H, D, L, span.dilation, P, 0, params.offsets);
  std::vector<T> kt(static_cast<size_t>(lay.keys_all() * D)), vt(kt.size());
  lay.for_each_gathered_row([&](int mm, int64_t, int64_t h, int64_t row, int64_t at) {
    for (int64_t d = 0; d < D; ++d) {
      kt[static_cast<size_t>(at + d)] = to_elem<T>(k[((mm * L + row) * H + h) * D + d]);
      vt[static_cast<size_t>(at + d)] = to_elem<T>(v[((mm * L + row) * H + h) * D + d]);
    }
  });
  std::vector<Tensor> o(P), lse(P), dq(P), dk(P), dv(P);
  std::vector<std::vector<T>> q16(P), k16(P), v16(P), do16(P);
  std::vector<float> dkt_sum(kt.size(), 0.f), dvt_sum(kt.size(), 0.f);
  for (int me = 0; me < P; ++me) {
    q16[me] = convert<T>(rows_of(q, me * L, L));
    k16[me] = convert<T>(rows_of(k, me * L, L));
    v16[me] = convert<T>(rows_of(v, me * L, L));
    do16[me] = convert<T>(rows_of(dout, me * L, L));
    const Shape mine{1, L, H, D};
    o[me] = Tensor(mine);
    lse[me] = Tensor(lse_shape(mine));
    const bool overwrite = prepare_outputs(params.schedule, o[me], lse[me]);
    long long blocks = 0;
    K::FlashArgs a = K::with_forward_buffers(
        K::branch_args(params, local, local_branch, rows_per_block(forward), blocks),
        q16[me].data(), k16[me].data(), v16[me].data(), o[me].data(), lse[me].data(), overwrite);
    run<T>(forward, a, blocks, D);
    a = K::with_forward_buffers(
        K::spanning_args(params, local, span, me, static_cast<int>(P), false, rows_per_block(forward), blocks),
        q16[me].data(), kt.data(), vt.data(), o[me].data(), lse[me].data(), false);
    run<T>(forward, a, blocks, D);
    SCOPED_TRACE("rank " + std::to_string(me));
    EXPECT_LE(relative_error(o[me], rows_of(o_ref, me * L, L)), 2e-2) << "o";
    EXPECT_LE(relative_error(lse[me], rows_of(lse_ref, me * L, L)), 1e-5) << "lse";

    const std::vector<float> delta = delta_of(do16[me], o[me], D);
    dq[me] = Tensor(mine);
    dk[me] = Tensor(mine);
    dv[me] = Tensor(mine);
    const bool overwrite_keys = prepare_key_gradients(params.schedule, dk[me], dv[me]);  // branch 0 is local
    a = K::with_backward_buffers(
        K::branch_args(params, local, local_branch, rows_per_block(backward), blocks),
        q16[me].data(), k16[me].data(), v16[me].data(), do16[me].data(), lse[me].data(), delta.data(),
        dq[me].data(), dk[me].data(), dv[me].data(), overwrite_keys);
    run<T>(backward, a, blocks, D);
    std::vector<float> dkt(kt.size(), 0.f), dvt(kt.size(), 0.f);
    a = K::with_backward_buffers(
        K::spanning_args(params, local, span, me, static_cast<int>(P), true, rows_per_block(backward), blocks),
        q16[me].data(), kt.data(), vt.data(), do16[me].data(), lse[me].data(), delta.data(), dq[me].data(),
        dkt.data(), dvt.data(), false);
    run<T>(backward, a, blocks, D);
    for (size_t i = 0; i < dkt.size(); ++i) {  // the reduce-scatter's sum over the group
      dkt_sum[i] += dkt[i];
      dvt_sum[i] += dvt[i];
    }
  }
  lay.for_each_gathered_row([&](int mm, int64_t, int64_t h, int64_t row, int64_t at) {  // back onto the owners
    for (int64_t d = 0; d < D; ++d) {
      dk[mm][(row * H + h) * D + d] += dkt_sum[static_cast<size_t>(at + d)];
      dv[mm][(row * H + h) * D + d] += dvt_sum[static_cast<size_t>(at + d)];
    }
  });
  for (int me = 0; me < P; ++me) {
    SCOPED_TRACE("rank " + std::to_string(me));
    EXPECT_LE(relative_error(dq[me], rows_of(dq_ref, me * L, L)), 5e-2) << "dq";
    EXPECT_LE(relative_error(dk[me], rows_of(dk_ref, me * L, L)), 5e-2) << "dk";
    EXPECT_LE(relative_error(dv[me], rows_of(dv_ref, me * L, L)), 5e-2) << "dv";
  }
}

TEST(FlashKernelsEmulated, SpanningBranchMatchesReference) {
  check_spanning(Kernel::forward_mma, Kernel::backward_mma);
}
TEST(FlashKernelsEmulated, SpanningBranchWgmmaKernelsMatchReference) {
  check_spanning(Kernel::forward_wgmma, Kernel::backward_wgmma);
}

// The fp32 reference kernels (reference_kernels.cuh, one warp per query row) on the awkward shapes, D > 128
// included, to the fp32 tolerances of the GPU test.
TEST(ReferenceKernelsEmulated, Fp32MatchesReference) {
  namespace R = reference_kernels_emulated;
  uint64_t seed = 80;
  int variant = 0;
  for (const AttentionCase& c : testing::awkward_attention_cases()) {
    if (c.B * c.N * c.H > 1300) continue;  // a fiber per GPU thread, switches per shuffle: small shapes only
    const bool causal = variant % 2 == 1;
    const HeadOffsets offsets = variant++ % 4 < 2 ? HeadOffsets::paper : HeadOffsets::grouped;
    SCOPED_TRACE(c.name + (causal ? " causal " : " full ") + to_string(offsets));
    const AttentionParams params = c.params(causal, offsets);
    const Shape shape = c.shape();
    const Tensor q = random_tensor(shape, ++seed, 1.5f), k = random_tensor(shape, ++seed, 1.5f),
                 v = random_tensor(shape, ++seed), dout = random_tensor(shape, ++seed);
    AttentionDims dims;
    dims.batch = c.B;
    dims.seq_len = c.N;
    dims.heads = c.H;
    dims.head_dim = c.D;
    const R::Launch launch = R::prepare(params, dims);
    const unsigned threads = R::kWarpsPerBlock * R::kWarp;
    Tensor o(shape), lse(lse_shape(shape)), dq(shape), dk(shape), dv(shape);
    emulation::launch(launch.blocks, threads, 0, [&] {
      R::forward_kernel(q.data(), k.data(), v.data(), o.data(), lse.data(), launch.schedule, launch.geometry);
    });
    emulation::launch(launch.blocks, threads, 0, [&] {
      R::backward_kernel(q.data(), k.data(), v.data(), o.data(), lse.data(), dout.data(), dq.data(), dk.data(),
                         dv.data(), launch.schedule, launch.geometry);
    });
    Tensor o_ref, lse_ref, dq_ref, dk_ref, dv_ref;
    reference_forward(params, q, k, v, o_ref, lse_ref);
    reference_backward(params, q, k, v, o_ref, lse_ref, dout, dq_ref, dk_ref, dv_ref);
    EXPECT_TRUE(testing::all_close(o, o_ref, 1e-5, 1e-4)) << "o";
    EXPECT_TRUE(testing::all_close(lse, lse_ref, 1e-5, 1e-5)) << "lse";
    EXPECT_TRUE(testing::all_close(dq, dq_ref, 1e-4, 1e-3)) << "dq";
    EXPECT_TRUE(testing::all_close(dk, dk_ref, 1e-4, 1e-3)) << "dk";
    EXPECT_TRUE(testing::all_close(dv, dv_ref, 1e-4, 1e-3)) << "dv";
  }
}

// Infinite inputs: a key whose score is -inf drops out (exp(-inf) = 0), NaN stays NaN. `ours` against the
// reference: NaN where it is NaN, the same infinity where it is infinite, close where it is finite.
void expect_like_reference(const Tensor& ours, const Tensor& ref, double tol, const char* name) {
  int64_t finite = 0;
  for (int64_t i = 0; i < ref.size(); ++i) {
    if (std::isnan(ref[i])) {
      EXPECT_TRUE(std::isnan(ours[i])) << name << "[" << i << "] = " << ours[i] << ", the reference is NaN";
    } else if (std::isinf(ref[i])) {
      EXPECT_EQ(ours[i], ref[i]) << name << "[" << i << "]";
    } else {
      ++finite;
      EXPECT_NEAR(ours[i], ref[i], tol * (1 + std::fabs(ref[i]))) << name << "[" << i << "]";
    }
  }
  EXPECT_GT(finite, 0) << name;
}

// Two cases (found by an audit): (a) causal, w = 12, 16 / r = 1, 2: row 16 is the first selected row of its
// r = 2 segment, which gives it key 16 alone, and k[16] = +inf with q[16] < 0 scores -inf: that branch adds
// nothing, the r = 1 branch's keys 12..16 stand (the flash merge computed 0 / 0 = NaN for o, lse right).
// (b) k[0] = +inf: rows of head 0 whose q . k0 is -inf start with a -inf score (the fp32 reference kernel
// computed exp(-inf - -inf) = NaN for the whole row).
TEST(FlashKernelsEmulated, InfiniteScoresDropOutOfTheSoftmax) {
  struct Case {
    const char* name;
    std::vector<int64_t> w, r;
    int64_t row;
  };
  for (const Case& c : {Case{"(a) row 16", {12, 16}, {1, 2}, 16}, Case{"(b) row 0", {8, 40}, {1, 2}, 0}}) {
    SCOPED_TRACE(c.name);
    AttentionParams params;
    params.schedule = make_schedule(c.w, c.r, false);
    params.causal = true;
    const Shape shape{1, 40, 2, 8};
    Tensor q = random_tensor(shape, 81, 1.0f), k = random_tensor(shape, 82, 1.0f);
    const Tensor v = random_tensor(shape, 83), dout = random_tensor(shape, 84);
    q[(c.row * 2) * 8] = -1.0f;
    k[(c.row * 2) * 8] = INFINITY;
    const std::vector<__nv_bfloat16> q16 = convert<__nv_bfloat16>(q), k16 = convert<__nv_bfloat16>(k),
                                     v16 = convert<__nv_bfloat16>(v), do16 = convert<__nv_bfloat16>(dout);
    Tensor o_ref, lse_ref;
    reference_forward(params, back(q16, shape), back(k16, shape), back(v16, shape), o_ref, lse_ref);
    AttentionDims dims;
    dims.batch = 1;
    dims.seq_len = 40;
    dims.heads = 2;
    dims.head_dim = 8;
    for (auto [forward, backward] : {std::pair{Kernel::forward_mma, Kernel::backward_mma},
                                     std::pair{Kernel::forward_wgmma, Kernel::backward_wgmma}}) {
      const Results x = run_passes(params, dims, q16, k16, v16, do16, forward, backward, false);
      expect_like_reference(x.o, o_ref, 3e-2, "o");
      expect_like_reference(x.lse, lse_ref, 1e-5, "lse");
      EXPECT_TRUE(std::isfinite(x.o[(c.row * 2) * 8])) << "the row that lost one key";
    }
    namespace R = reference_kernels_emulated;
    const R::Launch launch = R::prepare(params, dims);
    Tensor o(shape), lse(lse_shape(shape));
    emulation::launch(launch.blocks, R::kWarpsPerBlock * R::kWarp, 0, [&] {
      R::forward_kernel(q.data(), k.data(), v.data(), o.data(), lse.data(), launch.schedule, launch.geometry);
    });
    Tensor o32, lse32;
    reference_forward(params, q, k, v, o32, lse32);
    expect_like_reference(o, o32, 1e-4, "fp32 o");
    expect_like_reference(lse, lse32, 1e-5, "fp32 lse");
  }
}

// At |score| ~ 1e9 fp32 rounds score and lse by hundreds, and P = exp(score - lse) came out far above the 1
// it is at most (the CPU backward's audit case; inf once packed to bf16); the kernels cap it as the CPU
// path does, and a NaN still spreads over its segment. The fp32 kernels' backward scales q before the dot
// product as the forward does, so its P rows also sum to 1: at D = 24 (an inexact scale) scaling the dot
// product instead gave dv = -inf, and with the cap, rows whose weight was lost. (The bf16 kernels and the
// CPU path round the score differently in the two passes, so at these scores their dv does not sum to
// dout; it stays bounded.)
TEST(FlashKernelsEmulated, BackwardStaysBoundedAtHugeScores) {
  namespace R = reference_kernels_emulated;
  AttentionParams params;
  params.schedule = make_schedule({64}, {1}, false);
  for (const int64_t D : {16, 24})
    for (const std::string nan_in : {"", "q", "k"}) {
      SCOPED_TRACE("D=" + std::to_string(D) + ", NaN in: " + nan_in);
      const Shape shape{1, 192, 1, D};
      const testing::HugeScoreInputs x = testing::huge_score_inputs(D, nan_in);
      const Tensor &q = x.q, &k = x.k, &v = x.v, &dout = x.dout;
      const bool with_nan = !nan_in.empty();
      AttentionDims dims;
      dims.batch = 1;
      dims.seq_len = 192;
      dims.heads = 1;
      dims.head_dim = D;
      const std::vector<__nv_bfloat16> q16 = convert<__nv_bfloat16>(q), k16 = convert<__nv_bfloat16>(k),
                                       v16 = convert<__nv_bfloat16>(v), do16 = convert<__nv_bfloat16>(dout);
      std::vector<std::pair<std::string, Tensor>> results;
      for (auto [forward, backward, name] : {std::tuple{Kernel::forward_mma, Kernel::backward_mma, "mma"},
                                             std::tuple{Kernel::forward_wgmma, Kernel::backward_wgmma, "wgmma"}})
        results.emplace_back(name, run_passes(params, dims, q16, k16, v16, do16, forward, backward, false).dv);
      const R::Launch launch = R::prepare(params, dims);
      Tensor o(shape), lse(lse_shape(shape)), dq(shape), dk(shape), dv(shape);
      emulation::launch(launch.blocks, R::kWarpsPerBlock * R::kWarp, 0, [&] {
        R::forward_kernel(q.data(), k.data(), v.data(), o.data(), lse.data(), launch.schedule, launch.geometry);
      });
      emulation::launch(launch.blocks, R::kWarpsPerBlock * R::kWarp, 0, [&] {
        R::backward_kernel(q.data(), k.data(), v.data(), o.data(), lse.data(), dout.data(), dq.data(), dk.data(),
                           dv.data(), launch.schedule, launch.geometry);
      });
      results.emplace_back("fp32", dv);
      const Tensor dout16 = back(do16, shape);
      for (const auto& [name, result] : results) {
        const bool fp32 = name == "fp32";
        EXPECT_TRUE(testing::dv_within_bound(result, fp32 ? dout : dout16, 64, fp32 ? 1e-5 : 1e-2, with_nan ? 64 : 0))
            << name;
        if (fp32) {
          EXPECT_TRUE(testing::dv_sums_to_dout(result, dout, 64, 1e-5, with_nan ? 64 : 0)) << name;
        }
        if (with_nan) {
          EXPECT_TRUE(testing::rows_all_nan(result, 0, 64)) << name << ": the NaN's segment";
        }
      }
    }
}

// The kernels count one segment's selected rows per head in int: a branch selecting 2^31 or more is a
// UsageError naming it (before: the count wrapped to INT_MIN, no block ran, and o / lse were left unwritten
// with exit 0), locally and for a spanning branch's gathered keys; 2^31 - 1 and fewer are accepted.
// At most kMaxSelectedRows (2^31 - 257) rows of one segment per head: 2^31 - 1, accepted before, wrapped the
// kernels' loop bounds (test_flash_layout's LoopBoundsFitAtTheRowLimit).
TEST(FlashKernelsEmulated, SegmentsSelectingPastTheRowLimitAreRefused) {
  const int64_t big = int64_t{1} << 31, limit = kMaxSelectedRows;
  auto local = [](int64_t seq_len, int64_t w, int64_t r) {
    AttentionParams params;
    params.schedule.branches = {{w, r}};
    long long blocks = 0;
    K::branch_args(params, AttentionDims{1, seq_len, 1, 8}, params.schedule.branches[0], rows_per_block(Kernel::forward_mma),
                   blocks);
    return blocks;
  };
  EXPECT_GT(local(limit, limit, 1), 0);
  EXPECT_GT(local(2 * limit, 2 * limit, 2), 0);
  for (auto [n, r] : {std::pair{limit + 1, int64_t{1}}, std::pair{2 * limit + 1, int64_t{2}}, std::pair{big - 1, int64_t{1}},
                      std::pair{big, int64_t{1}}, std::pair{2 * big, int64_t{1}}, std::pair{4 * big, int64_t{2}}}) {
    try {
      local(n, n, r);
      ADD_FAILURE() << "N = w = " << n << ", r = " << r << ": accepted";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("branch w=" + std::to_string(n) + ", r=" + std::to_string(r) + " selects"),
                std::string::npos) << e.what();
    }
  }
  auto spanning = [](int64_t local_len, int group, int64_t r) {
    AttentionParams params;
    params.schedule.branches = {{group * local_len, r}};
    long long blocks = 0;
    K::spanning_args(params, AttentionDims{1, local_len, 1, 8}, params.schedule.branches[0], 0, group, false,
                     rows_per_block(Kernel::forward_mma), blocks);
    return blocks;
  };
  // 4 ranks of 2^29 rows: 2^31 keys per head at r = 1 (each rank's own 2^29 fit), 2^30 at r = 2.
  EXPECT_THROW(spanning(big / 4, 4, 1), UsageError);
  EXPECT_GT(spanning(big / 4, 4, 2), 0);
  EXPECT_THROW(spanning(big / 2, 4, 2), UsageError);  // 2^32 rows, r = 2
  EXPECT_GT(spanning(big / 2, 4, 4), 0);
}

}  // namespace
}  // namespace longctx::cuda
