// `longctx bench attention` (interfaces.md): seeded in-memory inputs, warm-up, median of iterations,
// GFLOP/s by the spec's FLOP counts (4 D pairs forward, 10 D pairs backward). Under mpirun
// --seq-len is the GLOBAL length: each rank builds its own rows from (seed, global index), so the
// inputs are the same whatever P is, and the figures are per rank plus the job's total.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <limits>
#include <optional>
#include <sstream>

#include "attention/cuda/cuda_attention.hpp"
#include "attention/sequence_parallel.hpp"
#include "runtime/commands/attention_options.hpp"
#include "runtime/commands/commands.hpp"
#include "runtime/core/heartbeat.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/stats.hpp"

namespace longctx::cli {
namespace {

using Clock = std::chrono::steady_clock;

void declare(po::options_description& desc, po::positional_options_description&) {
  desc.add_options()
      ("seq-len", po::value<std::string>()->default_value("65536"), "GLOBAL sequence length N (K/M/G suffixes)")
      ("heads", po::value<int64_t>()->default_value(4), "heads H")
      ("head-dim", po::value<int64_t>()->default_value(64), "head dimension D")
      ("batch", po::value<int64_t>()->default_value(1), "batch B")
      ("iters", po::value<int>()->default_value(5), "timed iterations (the median is reported; at most 1000000)")
      ("warmup", po::value<int>()->default_value(1), "untimed iterations first (at most 1000000)")
      ("seed", po::value<uint64_t>()->default_value(1), "input seed")
      ("backward", po::bool_switch(), "also time the backward")
      ("json", po::bool_switch(),
       "print one JSON object instead of a table. Fields: world_size, threads (rank 0's; per_rank has each rank's), seq_len, batch, heads, "
       "head_dim, schedule, causal, head_offsets, softmax_scale (0: 1/sqrt(head dim)), seed, iters, warmup, "
       "pairs, flops_fwd, seconds_fwd (the slowest rank's median), gflops_fwd (the "
       "job's FLOPs over that), with --backward flops_bwd, seconds_bwd, gflops_bwd; peak_rss_bytes, "
       "tensor_bytes_per_rank and per_rank (each rank's rank, peak_rss_bytes, pairs (those it computed: causal ones are balanced "
       "between the ranks), seconds, GFLOP/s, bytes sent and received in one pass (the backward's with the all-reduce of 3 int64 that decides whether K / V changed: 24 bytes a rank at P = 2, 32 at P = 3), the fraction of its "
       "receive time hidden behind compute in the last timed iteration, threads); non_finite (cpu): values of o "
       "(and dq, dk, dv) that are not finite, over the ranks (0 unless float32 overflowed: a warning says so). "
       "--device cuda: one GPU's figures and its kernels");
  declare_attention_options(desc, "2048,4096,8192", "1,2,4", AttentionCommand::bench);
}

// Value of element `index` of tensor `which`: a hash of (seed, which, global index) mapped to [-1, 1).
float seeded_value(uint64_t seed, uint64_t which, uint64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + which * 0xD1B54A32D192ED03ull + index;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(static_cast<double>(z >> 40) / static_cast<double>(uint64_t{1} << 23) - 1.0);
}

// This rank's rows [first, first + L) of a global [B, N, H, D] tensor.
Tensor seeded_rows(uint64_t seed, uint64_t which, int64_t B, int64_t N, int64_t first, int64_t L, int64_t row_floats) {
  Tensor t({B, L, row_floats});
  const int64_t per_batch = L * row_floats;
  // Both loops: over the batch alone, --batch 1 (the default) filled every tensor on one thread.
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < per_batch; ++i)
      t[b * per_batch + i] = seeded_value(seed, which, static_cast<uint64_t>((b * N + first) * row_floats + i));
  return t;
}

std::string launches(int n) { return std::to_string(n) + (n == 1 ? " launch" : " launches"); }

// A rate in the table: one decimal, or two significant digits below 1 (a tiny run's 0.026 read "0.0").
std::string gflops_text(double gflops) {
  if (!(gflops < 1) || gflops <= 0) return fixed(gflops, 1);
  char text[32];
  std::snprintf(text, sizeof text, "%.2g", gflops);
  return text;
}

// --device cuda: the kernels alone on device-resident inputs (CUDA events), one rank.
int run_cuda(const AttentionParams& params, Dtype dtype, int64_t B, int64_t N, int64_t H, int64_t D, int warmup,
             int iters, bool backward, bool json, uint64_t seed) {
  AttentionDims dims;
  dims.batch = B;
  dims.seq_len = N;
  dims.heads = H;
  dims.head_dim = D;
  const double pairs = count_pairs(params.schedule, N, H, params.causal, params.offsets) * static_cast<double>(B);
  const double flops_fwd = flops_forward(pairs, D);
  const double flops_bwd = flops_backward(pairs, D);
  log::info("bench attention on " + cuda_description() + ": N=" + std::to_string(N) + " B=" + std::to_string(B) +
            " H=" + std::to_string(H) + " D=" + std::to_string(D) + " " + to_string(dtype) + "; schedule " +
            to_string(params.schedule) + (params.causal ? ", causal" : "") + "; " + std::to_string(warmup) +
            " warm-up + " + std::to_string(iters) + " timed iterations");
  const CudaBenchFigures figures = cuda_bench_attention(params, dims, dtype, warmup, iters, backward, seed);
  // Per branch (half precision: a launch each): TFLOP/s and the grid in waves of what the GPU holds at once.
  std::vector<std::string> branch_json, branch_lines;
  for (size_t i = 0; i < figures.branches.size(); ++i) {
    const Branch& branch = params.schedule.branches[i];
    const CudaBenchFigures::BranchFigures& f = figures.branches[i];
    const double branch_pairs = count_pairs(Schedule{{branch}}, N, H, params.causal, params.offsets) * static_cast<double>(B);
    const double tf_fwd = flops_forward(branch_pairs, D) / f.seconds_fwd / 1e12;
    const double tf_bwd = backward ? flops_backward(branch_pairs, D) / f.seconds_bwd / 1e12 : 0;
    const double waves_fwd = static_cast<double>(f.blocks_fwd) / static_cast<double>(std::max(1LL, f.resident_fwd));
    const double waves_bwd = static_cast<double>(f.blocks_bwd) / static_cast<double>(std::max(1LL, f.resident_bwd));
    std::ostringstream j, line;
    j << "{\"w\": " << branch.segment_length << ", \"r\": " << branch.dilation << ", \"seconds_fwd\": " << f.seconds_fwd
      << ", \"tflops_fwd\": " << tf_fwd << ", \"blocks_fwd\": " << f.blocks_fwd << ", \"waves_fwd\": " << waves_fwd;
    line << "    w=" << branch.segment_length << " r=" << branch.dilation << ": forward "
         << fixed(f.seconds_fwd * 1e3, 2) << " ms " << fixed(tf_fwd, 1) << " TFLOP/s (" << f.blocks_fwd << " blocks, "
         << fixed(waves_fwd, 1) << " waves)";
    if (backward) {
      j << ", \"seconds_bwd\": " << f.seconds_bwd << ", \"tflops_bwd\": " << tf_bwd
        << ", \"blocks_bwd\": " << f.blocks_bwd << ", \"waves_bwd\": " << waves_bwd;
      line << "; backward " << fixed(f.seconds_bwd * 1e3, 2) << " ms " << fixed(tf_bwd, 1) << " TFLOP/s ("
           << f.blocks_bwd << " blocks, " << fixed(waves_bwd, 1) << " waves)";
    }
    j << "}";
    branch_json.push_back(j.str());
    branch_lines.push_back(line.str());
  }
  if (json) {
    std::ostringstream out;
    out << "{\"world_size\": 1, \"device\": \"cuda\", \"dtype\": " << json_string(to_string(dtype))
        << ", \"gpu\": " << json_string(cuda_description()) << ", \"seq_len\": " << N << ", \"batch\": " << B
        << ", \"heads\": " << H << ", \"head_dim\": " << D << ", \"schedule\": " << json_schedule(params.schedule)
        << ", \"causal\": " << (params.causal ? "true" : "false") << ", \"pairs\": " << json_count(pairs)
        << ", \"flops_fwd\": " << json_count(flops_fwd) << ", \"seconds_fwd\": " << figures.seconds_fwd
        << ", \"gflops_fwd\": " << flops_fwd / figures.seconds_fwd / 1e9;
    if (backward)
      out << ", \"flops_bwd\": " << json_count(flops_bwd) << ", \"seconds_bwd\": " << figures.seconds_bwd
          << ", \"gflops_bwd\": " << flops_bwd / figures.seconds_bwd / 1e9
          << ", \"backward_kernel\": " << json_string(figures.backward_kernel);
    if (backward) out << ", \"backward_launches\": " << figures.launches_bwd;
    out << ", \"device_bytes\": " << figures.device_bytes << ", \"forward_kernel\": " << json_string(figures.forward_kernel)
        << ", \"forward_launches\": " << figures.launches_fwd << ", \"branches\": [";
    for (size_t i = 0; i < branch_json.size(); ++i) out << (i ? ", " : "") << branch_json[i];
    out << "]}\n";
    std::cout << out.str();
  } else {
    std::cout << "dilated attention on " << cuda_description() << "\n  N=" << N << " B=" << B << " H=" << H
              << " D=" << D << " " << to_string(dtype) << ", " << to_string(params.schedule)
              << (params.causal ? ", causal" : "") << "; pairs " << json_count(pairs) << "; median of " << iters << " after "
              << warmup << " warm-up; " << fixed(static_cast<double>(figures.device_bytes) / (1 << 30), 2)
              << " GiB on the device\n";
    std::cout << "  forward  " << fixed(figures.seconds_fwd * 1e3, 2) << " ms  "
              << fixed(flops_fwd / figures.seconds_fwd / 1e12, 1) << " TFLOP/s  (" << figures.forward_kernel << "; "
              << launches(figures.launches_fwd) << ")\n";
    if (backward)
      std::cout << "  backward " << fixed(figures.seconds_bwd * 1e3, 2) << " ms  "
                << fixed(flops_bwd / figures.seconds_bwd / 1e12, 1) << " TFLOP/s  (" << figures.backward_kernel << "; "
                << launches(figures.launches_bwd) << ")\n";
    if (!branch_lines.empty()) std::cout << "  per branch, launch by launch:\n";
    else if (figures.launches_fwd == 1 && params.schedule.branches.size() > 1 && dtype != Dtype::fp32)
      std::cout << "  per branch: not timed, the branches ran fused (LONGCTX_FLASH_FUSE=off times each)\n";
    for (const std::string& line : branch_lines) std::cout << line << "\n";
  }
  return 0;
}

// The options, checked: in the config phase (all ranks agree, one message, exit 2) and again by run.
struct BenchOptions {
  AttentionParams params;
  int64_t N = 0, H = 0, D = 0, B = 0;
  int iters = 0, warmup = 0;
  bool backward = false, json = false;
  DeviceChoice device;
};

BenchOptions bench_options(const Invocation& invocation) {
  const auto& vm = invocation.options;
  const int P = invocation.process.world().size();
  if (vm["device"].as<std::string>() == "cuda" && P > 1)  // before the dtype rules, which are for mpirun runs
    throw UsageError("bench attention --device cuda times one GPU: run it without mpirun (attend --device cuda "
                     "runs under mpirun)");
  BenchOptions o;
  o.params = attention_params(invocation);
  o.N = parse_size("seq-len", vm["seq-len"].as<std::string>());
  o.H = vm["heads"].as<int64_t>(), o.D = vm["head-dim"].as<int64_t>(), o.B = vm["batch"].as<int64_t>();
  o.iters = vm["iters"].as<int>(), o.warmup = vm["warmup"].as<int>();
  o.backward = vm["backward"].as<bool>(), o.json = vm["json"].as<bool>();
  for (const auto& [name, value] : {std::pair<const char*, int64_t>{"seq-len", o.N}, {"heads", o.H},
                                    {"head-dim", o.D}, {"batch", o.B}})
    if (value < 1) throw UsageError(std::string("--") + name + ": must be >= 1, got " + std::to_string(value), name);
  check_iterations(o.iters, o.warmup);
  o.device = attention_device(invocation);
  if (o.device.device == "cuda") {
    // A shape whose byte counts would wrap is refused (from a review: cuda's buffers came out 0 bytes long for
    // N H D = 2^62, and its first kernel wrote past them). The CPU path's memory check below names the sizes.
    element_count({o.B, o.N, o.H, o.D});
    return o;
  }
  ScheduleOptionNames names;
  names.seq_len = "--seq-len=";  // "--seq-len=4097 is not divisible by the 2 ranks" (before: "sequence length 4097")
  check_shardable(o.params.schedule, o.N, P, SpanningSegments::may_end_short, names);
  check_rows_fit_in_memory("bench attention N=" + std::to_string(o.N) + " B=" + std::to_string(o.B) + " H=" +
                               std::to_string(o.H) + " D=" + std::to_string(o.D) + " on " + count_of(P, "rank"),
                           o.params, AttentionDims{o.B, o.N, o.H, o.D}, invocation.process.world().rank(), P, o.backward,
                           invocation.process.local_size());
  return o;
}

int run(Invocation& invocation) {
  const auto& vm = invocation.options;
  comm::Communicator& world = invocation.process.world();
  const int P = world.size(), rank = world.rank();
  const BenchOptions options = bench_options(invocation);
  const AttentionParams& params = options.params;
  const int64_t N = options.N, H = options.H, D = options.D, B = options.B;
  const int iters = options.iters, warmup = options.warmup;
  const bool backward = options.backward, json = options.json;
  if (options.device.device == "cuda")
    return run_cuda(params, options.device.dtype, B, N, H, D, warmup, iters, backward, json, vm["seed"].as<uint64_t>());
  warn_coverage(params.schedule, H, params.offsets, N);

  const int64_t L = N / P, first = L * rank;
  const uint64_t seed = vm["seed"].as<uint64_t>();
  Tensor q = seeded_rows(seed, 0, B, N, first, L, H * D), k = seeded_rows(seed, 1, B, N, first, L, H * D),
         v = seeded_rows(seed, 2, B, N, first, L, H * D), dout;
  for (Tensor* t : {&q, &k, &v}) t->reshape({B, L, H, D});
  if (backward) {
    dout = seeded_rows(seed, 3, B, N, first, L, H * D);
    dout.reshape({B, L, H, D});
  }
  const double pairs = count_pairs(params.schedule, N, H, params.causal, params.offsets) * static_cast<double>(B);
  log::info("bench attention: N=" + std::to_string(N) + " B=" + std::to_string(B) + " H=" + std::to_string(H) +
            " D=" + std::to_string(D) + " on " + std::to_string(P) + " rank(s) x " +
            std::to_string(omp_get_max_threads()) + " thread(s); schedule " + to_string(params.schedule) +
            (params.causal ? ", causal" : "") + "; " + std::to_string(warmup) + " warm-up + " +
            std::to_string(iters) + " timed iterations");
  if (const std::string crowded = oversubscription_warning(invocation.process, "--threads"); !crowded.empty())
    log::warn(crowded);

  SequenceParallelAttention attention(world);
  attention.keep_gathered_for_backward(backward);  // as training does: the backward reuses the forward's K / V
  Tensor o, lse, dq, dk, dv;
  std::vector<double> fwd, bwd;
  SequenceParallelStats fwd_stats, bwd_stats;
  for (int it = 0; it < warmup + iters; ++it) {
    {
      // A pass of minutes (a long N on the CPU) says it is alive between the iterations' lines, and which
      // pass runs: "iteration 1/6 (warm-up): backward running, 60 s".
      std::atomic<bool> in_backward{false};
      const Heartbeat alive(world.rank() == 0, [&](double seconds) {
        return "bench attention: iteration " + std::to_string(it + 1) + "/" + std::to_string(warmup + iters) +
               (it < warmup ? " (warm-up)" : "") + ": " + (in_backward ? "backward" : "forward") + " running, " +
               Heartbeat::elapsed_text(seconds) + " s";
      });
      world.barrier();
      attention.forward(params, q, k, v, o, lse);
      if (it >= warmup) {
        fwd.push_back(attention.last_forward().seconds);
        fwd_stats = attention.last_forward();
      }
      if (backward) {
        in_backward = true;
        world.barrier();
        attention.backward(params, q, k, v, o, lse, dout, dq, dk, dv);
        if (it >= warmup) {
          bwd.push_back(attention.last_backward().seconds);
          bwd_stats = attention.last_backward();
        }
      }
    }
    // Progress on stderr, also with --json (before: none then; stdout holds only the JSON either way).
    log::info("bench attention: iteration " + std::to_string(it + 1) + "/" + std::to_string(warmup + iters) +
              (it < warmup ? " (warm-up)" : "") + ": forward " + fixed(attention.last_forward().seconds, 3) + " s" +
              (backward ? ", backward " + fixed(attention.last_backward().seconds, 3) + " s" : std::string()));
  }
  const double flops_fwd = flops_forward(pairs, D);
  const double flops_bwd = flops_backward(pairs, D);
  // Results that are not finite (a --softmax-scale that overflows float32's scores) time NaN arithmetic,
  // which attend refuses: said (before: timed and printed as any other run).
  double non_finite = 0;
  for (const Tensor* t : {&o, &dq, &dk, &dv})
    for (int64_t i = 0; i < t->size(); ++i) non_finite += std::isfinite((*t)[i]) ? 0.0 : 1.0;
  // Per rank: median seconds, bytes, comm hidden; the job: total FLOPs over the slowest rank's median.
  const std::vector<double> mine{median(fwd), backward ? median(bwd) : 0.0, static_cast<double>(fwd_stats.bytes_sent),
                                 static_cast<double>(fwd_stats.bytes_received), fwd_stats.hidden_fraction(),
                                 static_cast<double>(bwd_stats.bytes_received), bwd_stats.hidden_fraction(),
                                 static_cast<double>(peak_rss_bytes()), static_cast<double>(omp_get_max_threads()),
                                 static_cast<double>(bwd_stats.bytes_sent), non_finite, fwd_stats.pairs};
  const size_t F = mine.size();
  std::vector<double> all(F * static_cast<size_t>(P));
  world.all_gather(Span<const double>(mine), Span<double>(all));
  if (rank != 0) return 0;
  auto field = [&](int r, size_t f) { return all[static_cast<size_t>(r) * F + f]; };
  // The pairs a rank computed (with causal masking balanced across the ranks: sequence_parallel.hpp).
  const auto rank_pairs = [&](int r) { return field(r, 11); };
  const auto rank_gflops = [&](int r, bool backward_pass, double seconds) {
    const double computed = rank_pairs(r);
    return (backward_pass ? flops_backward(computed, D) : flops_forward(computed, D)) / seconds / 1e9;
  };
  double slowest_fwd = 0, slowest_bwd = 0, peak_rss = 0;
  int fewest_threads = std::numeric_limits<int>::max(), most_threads = 0;  // ranks may differ (LONGCTX_THREADS per rank)
  for (int r = 0; r < P; ++r) {
    slowest_fwd = std::max(slowest_fwd, field(r, 0));
    slowest_bwd = std::max(slowest_bwd, field(r, 1));
    peak_rss = std::max(peak_rss, field(r, 7));
    fewest_threads = std::min(fewest_threads, static_cast<int>(field(r, 8)));
    most_threads = std::max(most_threads, static_cast<int>(field(r, 8)));
  }
  double non_finite_total = 0;
  for (int r = 0; r < P; ++r) non_finite_total += field(r, 10);
  if (non_finite_total > 0) {
    char scale[32] = "";
    std::snprintf(scale, sizeof scale, "%g", params.softmax_scale);
    log::warn("bench attention: " + json_count(non_finite_total) + " values of o" + (backward ? ", dq, dk, dv" : "") +
              " are not finite: float32 overflowed (scores |q.k| * softmax scale" +
              (params.softmax_scale != 0 ? ", --softmax-scale " + std::string(scale) : std::string()) +
              "); these timings are of NaN arithmetic (attend refuses such a run)");
  }
  const std::string threads_text = fewest_threads == most_threads
                                       ? std::to_string(most_threads)
                                       : std::to_string(fewest_threads) + "-" + std::to_string(most_threads);
  const double io_bytes = static_cast<double>((4 + (backward ? 4 : 0)) * B * N * H * D + B * N * H) * 4.0 / P;
  // The fraction of rank r's receive time hidden behind compute. One that received nothing had nothing to
  // hide: none (JSON's null, the table's '-'; it said 1, 100%).
  const auto hidden = [&](int r, size_t received, size_t fraction) -> std::optional<double> {
    if (field(r, received) > 0) return field(r, fraction);
    return std::nullopt;
  };
  if (json) {
    std::ostringstream out, scale_text;
    // The kernels' float32, to the last bit (before: the double given, 1e-45 for float32's 1.40129846e-45).
    scale_text << std::setprecision(9) << static_cast<float>(params.softmax_scale);
    out << "{\"world_size\": " << P << ", \"threads\": " << omp_get_max_threads() << ", \"seq_len\": " << N
        << ", \"batch\": " << B << ", \"heads\": " << H << ", \"head_dim\": " << D
        << ", \"schedule\": " << json_schedule(params.schedule) << ", \"causal\": " << (params.causal ? "true" : "false")
        << ", \"head_offsets\": " << json_string(to_string(params.offsets)) << ", \"softmax_scale\": " << scale_text.str()
        << ", \"seed\": " << seed << ", \"iters\": " << iters << ", \"warmup\": " << warmup
        << ", \"pairs\": " << json_count(pairs) << ", \"flops_fwd\": " << json_count(flops_fwd)
        << ", \"seconds_fwd\": " << slowest_fwd << ", \"gflops_fwd\": " << flops_fwd / slowest_fwd / 1e9;
    if (backward)
      out << ", \"flops_bwd\": " << json_count(flops_bwd) << ", \"seconds_bwd\": " << slowest_bwd
          << ", \"gflops_bwd\": " << flops_bwd / slowest_bwd / 1e9;
    out << ", \"peak_rss_bytes\": " << static_cast<uint64_t>(peak_rss)
        << ", \"tensor_bytes_per_rank\": " << static_cast<uint64_t>(io_bytes)
        << ", \"non_finite\": " << json_count(non_finite_total) << ", \"per_rank\": [";
    for (int r = 0; r < P; ++r) {
      const auto hidden_json = [&](size_t received, size_t fraction) {
        std::ostringstream text;
        if (const auto value = hidden(r, received, fraction)) text << *value;
        else text << "null";
        return text.str();
      };
      out << (r ? ", " : "") << "{\"rank\": " << r << ", \"seconds_fwd\": " << field(r, 0)
          << ", \"pairs\": " << json_count(rank_pairs(r)) << ", \"gflops_fwd\": " << rank_gflops(r, false, field(r, 0));
      if (backward)
        out << ", \"seconds_bwd\": " << field(r, 1) << ", \"gflops_bwd\": " << rank_gflops(r, true, field(r, 1));
      out << ", \"bytes_sent_fwd\": " << static_cast<uint64_t>(field(r, 2))
          << ", \"bytes_received_fwd\": " << static_cast<uint64_t>(field(r, 3)) << ", \"comm_hidden_fwd\": " << hidden_json(3, 4);
      if (backward)
        out << ", \"bytes_sent_bwd\": " << static_cast<uint64_t>(field(r, 9))
            << ", \"bytes_received_bwd\": " << static_cast<uint64_t>(field(r, 5))
            << ", \"comm_hidden_bwd\": " << hidden_json(5, 6);
      out << ", \"peak_rss_bytes\": " << static_cast<uint64_t>(field(r, 7))
          << ", \"threads\": " << static_cast<int>(field(r, 8)) << "}";
    }
    out << "]}\n";
    std::cout << out.str();
  } else {
    std::cout << "dilated attention, N=" << N << " B=" << B << " H=" << H << " D=" << D << ", "
              << to_string(params.schedule) << (params.causal ? ", causal" : "") << ", " << P << " rank(s) x "
              << threads_text << " thread(s)\n";
    std::cout << "  pairs " << json_count(pairs) << "; median of " << iters << " after " << warmup << " warm-up\n";
    std::cout << "  rank   fwd s    fwd GFLOP/s" << (backward ? "   bwd s    bwd GFLOP/s" : "")
              << "   recv bytes (fwd)  comm hidden" << (backward ? "   recv bytes (bwd)  comm hidden" : "")
              << "   peak RSS MiB\n";
    for (int r = 0; r < P; ++r) {
      std::cout << "  " << std::setw(4) << r << std::setw(8) << fixed(field(r, 0), 4) << std::setw(15)
                << gflops_text(rank_gflops(r, false, field(r, 0)));
      if (backward)
        std::cout << std::setw(8) << fixed(field(r, 1), 4) << std::setw(15)
                  << gflops_text(rank_gflops(r, true, field(r, 1)));
      const auto hidden_text = [&](size_t received, size_t fraction) {
        const auto value = hidden(r, received, fraction);
        return value ? fixed(100 * *value, 0) + "%" : std::string("-");
      };
      std::cout << std::setw(19) << static_cast<uint64_t>(field(r, 3)) << std::setw(13) << hidden_text(3, 4);
      if (backward)
        std::cout << std::setw(19) << static_cast<uint64_t>(field(r, 5)) << std::setw(13) << hidden_text(5, 6);
      std::cout << std::setw(15) << fixed(field(r, 7) / (1 << 20), 0) << "\n";
    }
    std::cout << "  total  " << fixed(slowest_fwd, 4) << " s  " << gflops_text(flops_fwd / slowest_fwd / 1e9)
              << " GFLOP/s forward";
    if (backward)
      std::cout << ";  " << fixed(slowest_bwd, 4) << " s  " << gflops_text(flops_bwd / slowest_bwd / 1e9)
                << " GFLOP/s backward";
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

Command bench_attention_command() {
  return {"bench attention",
          "time dilated attention on seeded in-memory inputs (GFLOP/s by the spec's counts; bf16 / fp16 on cuda: "
          "per branch too, where each branch is its own launch; LONGCTX_FLASH_FUSE=auto|on|off, "
          "LONGCTX_FLASH_FORWARD / LONGCTX_FLASH_BACKWARD=auto|mma|wgmma choose the kernels)",
          "", declare, run, [](const Invocation& invocation) { bench_options(invocation); }};
}

}  // namespace longctx::cli
