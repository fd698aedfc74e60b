// `longctx attend` (interfaces.md): q, k, v [, do] from an HDF5 file -> o, lse [, dq, dk, dv].
// Under mpirun each rank reads and writes only its N / P rows (collective parallel HDF5) and the
// sequence-parallel backend exchanges only the sparsified K / V rows that spanning branches need.
// Order: check_options in the config phase (options and where the results go: exit 2; the input file:
// exit 3; the schedule shards: exit 2) -> read -> compute -> write `OUT.tmp` -> commit (rename). A
// failure leaves no OUT.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "attention/attention.hpp"
#include "attention/cuda/sequence_parallel_cuda.hpp"
#include "attention/sequence_parallel.hpp"
#include "io/atomic_output.hpp"
#include "io/attend_file.hpp"
#include "io/durable.hpp"
#include "io/row_io.hpp"
#include "runtime/commands/attention_options.hpp"
#include "runtime/commands/commands.hpp"
#include "runtime/core/fingerprint.hpp"
#include "runtime/core/heartbeat.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/stop_point.hpp"
#include "runtime/core/watchdog.hpp"

namespace longctx::cli {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

void declare(po::options_description& desc, po::positional_options_description&) {
  desc.add_options()
      ("input", po::value<std::string>()->required(), "HDF5 file with q, k, v [N,H,D] or [B,N,H,D] (+ do with --backward)")
      ("output", po::value<std::string>()->required(), "HDF5 file to write: o, lse (+ dq, dk, dv with --backward)")
      ("backward", po::bool_switch(), "also compute exact gradients from the input's `do`")
      ("report", po::value<std::string>(), "write a JSON report (timings, per-rank bytes and collectives)");
  declare_attention_options(desc, "", "", AttentionCommand::attend);
}

// Where the results go, checked before any work: each can be written, and none of them (or the
// temporary files they are written through) is the input or another of them, however spelled. The outputs
// as given; what is written is the file a link among them leads to (io::output_target), which a message
// names beside the given name (before: in its place, a name the user never typed).
void check_file_options(const std::string& input, const std::string& output_given, const std::string& report_given) {
  if (input.empty()) throw UsageError("--input: empty path: give the HDF5 file of q, k, v", "input");
  const std::string output = io::output_target(output_given);
  const std::string report = report_given.empty() ? "" : io::output_target(report_given);
  struct Named {
    std::string option, shown, path;  // shown: as the message quotes it
  };
  const auto shown = [](const std::string& given, const std::string& target) {
    return "'" + given + "'" + (target != given ? " (a link to '" + target + "')" : "");
  };
  std::vector<Named> files{{"--input", shown(input, input), input},
                           {"--output", shown(output_given, output), output},
                           {"--output's temporary file", shown(output + ".tmp", output + ".tmp"), output + ".tmp"}};
  if (!report.empty()) {
    files.push_back({"--report", shown(report_given, report), report});
    files.push_back({"--report's temporary file", shown(report + ".tmp", report + ".tmp"), report + ".tmp"});
  }
  for (size_t i = 0; i < files.size(); ++i)
    for (size_t j = i + 1; j < files.size(); ++j)
      if (io::same_file(files[i].path, files[j].path))
        throw UsageError(files[i].option + " " + files[i].shown + " and " + files[j].option + " " + files[j].shown +
                         " are the same file; write the results elsewhere");
  // After that: the input is "the same file", not "an HDF5 file that is not an attend output" (nor, for
  // --report, "an HDF5 file": before, a report naming the input was refused for that).
  io::check_output_path("output", output);
  if (!report.empty()) io::check_json_output_path("report", report, "writing would replace it");
  io::check_hdf5_output_path("output", output, io::kAttendOutputFormat, {"o", "lse", "dq", "dk", "dv"});
}

struct RankFigures {  // gathered to rank 0 for the report; all doubles so one all_gather carries them
  double seconds_fwd = 0, seconds_bwd = 0, bytes_sent = 0, bytes_received = 0, collectives = 0, comm_seconds = 0,
         comm_wait_seconds = 0;
};

// In the config phase (main.cpp), where the ranks agree on the outcome: the options, where the results
// go, and the input file's datasets and shape against the schedule and P (each rank opens it alone and
// reads only metadata). run() relies on it: main.cpp runs this first.
void check_options(const Invocation& invocation) {
  const auto& vm = invocation.options;
  const AttentionParams params = attention_params(invocation);
  const DeviceChoice device = attention_device(invocation);
  const std::string input_path = vm["input"].as<std::string>();
  // As given: a link called "-" would lead elsewhere.
  io::refuse_standard_output("--output -", "output", vm["output"].as<std::string>());
  if (vm.count("report")) io::refuse_standard_output("--report -", "report", vm["report"].as<std::string>());
  check_file_options(input_path, vm["output"].as<std::string>(), vm.count("report") ? vm["report"].as<std::string>() : "");
  const io::h5::File file = io::h5::File::open(input_path, io::h5::Mode::read, MPI_COMM_NULL);
  const io::AttendInput input = io::check_attend_input(file, vm["backward"].as<bool>());
  const int P = invocation.process.world().size();
  check_shardable(params.schedule, input.seq_len, P,
                  device.device == "cuda" ? SpanningSegments::whole : SpanningSegments::may_end_short);
  check_rows_fit_in_memory("attend on " + input_path + " " + to_string(input.shape) + " over " + count_of(P, "rank"),
                           params, AttentionDims{input.batch, input.seq_len, input.heads, input.head_dim},
                           invocation.process.world().rank(), P, vm["backward"].as<bool>(),
                           invocation.process.local_size(), device.device == "cuda");
  // After the size check, which refuses a huge input from its shape alone (its storage need not exist).
  // A virtual dataset's sources: each rank those of its own rows (thousands of shard files opened by every
  // rank would be a metadata storm on a parallel file system; rank 0 alone missed a source that another
  // node cannot see, which then read as zeros there). The ranks agree on the outcome.
  const int rank = invocation.process.world().rank();
  const io::RowRange mine = io::even_rows(input.seq_len, rank, P);
  const io::h5::Dataset::RowBlock only{input.seq_axis, mine.begin, mine.begin + mine.rows()};
  io::check_attend_storage(file, vm["backward"].as<bool>(), &only);
}

// What each rank sees of its files, compared with rank 0's (main.cpp): a rank that opened another input
// of another shape (a relative path from another working directory, a node-local copy) hung in the
// output's collective writes, a stale copy of the same shape gave another result with no error, and an
// output directory of its own (the same causes) hung in the writes. So the shape, a fingerprint of the
// first and the last row of each tensor (a chunk each: cheap next to the run), and the output directory
// (probe_directory). No fingerprint of virtual datasets, whose sources may be node-local shards that only
// their own ranks see.
std::vector<std::pair<std::string, std::string>> shared_inputs(const Invocation& invocation) {
  const auto& vm = invocation.options;
  const bool backward = vm["backward"].as<bool>();
  std::vector<std::pair<std::string, std::string>> seen;
  // The probe first: it is collective, and the reads below may throw on one rank only (which then goes on
  // to main.cpp's agreement while the others would wait in the probe).
  const std::string output = vm["output"].as<std::string>();
  if (invocation.process.world().size() > 1)
    seen.emplace_back("--output's directory " + io::directory_of(output) + " (rank 0's probe file)",
                      probe_directory(invocation.process.world(), io::directory_of(output)));
  const io::h5::File file = io::h5::File::open(vm["input"].as<std::string>(), io::h5::Mode::read, MPI_COMM_NULL);
  const io::AttendInput input = io::check_attend_input(file, backward);
  seen.emplace_back("the shape of --input's q, k, v", to_string(input.shape));
  if (input.virtual_layout || input.seq_len == 0) return seen;
  Fingerprint fingerprint;
  for (const char* name : {"q", "k", "v", "do"}) {
    if (name == std::string("do") && !backward) continue;
    for (const int64_t row : {int64_t{0}, input.seq_len - 1}) {
      const Tensor sample = io::read_rows(file, name, input.seq_axis, io::RowRange{row, row + 1});
      fingerprint.add(sample.data(), sample.size() * sizeof(float));
    }
  }
  seen.emplace_back(std::string("the first and last rows of --input's q, k, v") + (backward ? ", do" : ""),
                    "fingerprint " + fingerprint.hex());
  return seen;
}

// The index in the whole tensor of element `i` of this rank's block `t` (rows `rows` of its `seq_axis`).
std::vector<int64_t> whole_index(const Tensor& t, int64_t i, size_t seq_axis, io::RowRange rows) {
  std::vector<int64_t> index(t.rank());
  for (size_t axis = t.rank(); axis-- > 0;) {
    index[axis] = i % t.shape()[axis];
    i /= t.shape()[axis];
  }
  index[seq_axis] += rows.begin;
  return index;
}

// "[5,1,2]".
std::string index_text(const std::vector<int64_t>& index) {
  std::string text = "[";
  for (size_t axis = 0; axis < index.size(); ++axis) text += (axis ? "," : "") + std::to_string(index[axis]);
  return text + "]";
}

// The first element of this rank's block `t` (rows `rows` of a tensor with `seq_axis`) that is NaN or
// +-Inf (or, with allow_minus_inf, NaN or +Inf: lse's uncovered rows are -inf), as its index in the whole
// tensor and value ("[5,1,2] = nan"); "" when there is none. One vectorised pass over the bits, then a search only when
// one was found.
std::string first_non_finite(const Tensor& t, size_t seq_axis, io::RowRange rows, bool allow_minus_inf = false) {
  const auto* bits = reinterpret_cast<const uint32_t*>(t.data());
  const int64_t n = t.size();
  const auto bad = [allow_minus_inf](uint32_t b) {
    return (b & 0x7f800000u) == 0x7f800000u && !(allow_minus_inf && b == 0xff800000u);
  };
  int found = 0;
#pragma omp parallel for reduction(| : found) schedule(static)
  for (int64_t i = 0; i < n; ++i) found |= bad(bits[i]) ? 1 : 0;
  if (!found) return "";
  int64_t i = 0;
  while (!bad(bits[i])) ++i;
  const float value = t.data()[i];
  return index_text(whole_index(t, i, seq_axis, rows)) + " = " + (std::isnan(value) ? "nan" : value > 0 ? "inf" : "-inf");
}

// With no r = 1 branch (--allow-uncovered): the first lse of -inf at a (p, h) that a branch selects, which is
// scores that overflowed to -inf, as "[5,1] = -inf"; "" when none. Only a (p, h) no branch selects has
// -inf by the spec (before: every -inf was taken for one; from the regression audit).
std::string first_selected_minus_inf(const Tensor& lse, size_t seq_axis, io::RowRange rows,
                                     const AttentionParams& params, int64_t seq_len, int64_t heads) {
  for (int64_t i = 0; i < lse.size(); ++i) {
    const float value = lse.data()[i];
    if (!(std::isinf(value) && value < 0)) continue;
    const std::vector<int64_t> index = whole_index(lse, i, seq_axis, rows);
    const int64_t p = index[seq_axis], h = index.back();
    for (const Branch& branch : params.schedule.branches) {
      const int64_t w = effective_segment_length(branch, seq_len), r = branch.dilation;
      if (p % w % r != head_offset(h, r, heads, params.offsets)) continue;
      return index_text(index) + " = -inf";
    }
  }
  return "";
}

// The first NaN or Inf of `tensors` (name, this rank's block), as "q[13,1,2] = nan" (lse's -inf allowed
// where `uncovered_rows`: a row no branch selects has it); "" when none.
using NamedTensors = std::vector<std::pair<std::string, const Tensor*>>;
std::string first_non_finite_of(const NamedTensors& tensors, size_t seq_axis, io::RowRange rows,
                                bool uncovered_rows = false) {
  for (const auto& [name, tensor] : tensors)
    if (const std::string at = first_non_finite(*tensor, seq_axis, rows, uncovered_rows && name == "lse"); !at.empty())
      return name + at;
  return "";
}

// Every rank learns whether any rank found a `problem` (this rank's; "" when none); the lowest such rank
// prints it as the run's error. True when any did: every rank then ends with exit 3, nothing written.
bool refused_by_any_rank(comm::Communicator& world, const std::string& problem) {
  std::vector<int> flags(static_cast<size_t>(world.size()), 0);
  const std::vector<int> mine{problem.empty() ? 0 : 1};
  world.all_gather(Span<const int>(mine), Span<int>(flags));
  const auto first = std::find(flags.begin(), flags.end(), 1);
  if (first == flags.end()) return false;
  if (first - flags.begin() == world.rank()) log::ending_error(problem, world.size());
  return true;
}

int run(Invocation& invocation) {
  const auto& vm = invocation.options;
  comm::Communicator& world = invocation.process.world();
  const int rank = world.rank(), P = world.size();
  const AttentionParams params = attention_params(invocation);
  const DeviceChoice device = attention_device(invocation);
  const bool backward = vm["backward"].as<bool>();
  const std::string input_path = vm["input"].as<std::string>();
  const std::string output_path = io::output_target(vm["output"].as<std::string>());
  const std::string report_path = vm.count("report") ? io::output_target(vm["report"].as<std::string>()) : "";
  // --device cuda: one GPU per rank, made (with the device communicator) before any file is touched.
  std::unique_ptr<AttentionBackend> gpu;
  std::unique_ptr<comm::Communicator> device_comm;
  std::unique_ptr<CudaSequenceParallel> gpus;
  if (device.device == "cuda" && P == 1) gpu = make_attention_backend("cuda", device.dtype);
  if (device.device == "cuda" && P > 1) {
    device_comm = make_device_comm(invocation.process, device.comm);
    gpus = std::make_unique<CudaSequenceParallel>(*device_comm, device.dtype);
    log::info("--device cuda on " + std::to_string(P) + " ranks, device communicator " + device_comm->backend());
  }
  const MPI_Comm mpi = mpi_handle(world);
  const MPI_Comm comm = P > 1 ? mpi : MPI_COMM_NULL;
  // The temporary files are claimed before any work: a second run on the same output (or report) is
  // refused now (exit 2), not after its compute, which it lost when the first one wrote first (or both ran
  // to the end, the later rename replacing the earlier's file). A run that ends before writing removes them.
  std::optional<io::ClaimedEarly> report_claim;
  if (!report_path.empty()) report_claim.emplace(report_path + ".tmp", comm);
  io::ClaimedEarly output_claim(output_path + ".tmp", comm);

  const auto t_read = Clock::now();
  io::AttendInput input;
  Tensor q, k, v, dout;
  io::RowRange rows;
  {
    watchdog::Guard guard("reading " + input_path);
    io::h5::File file = io::h5::File::open(input_path, io::h5::Mode::read, P > 1 ? mpi : MPI_COMM_NULL);
    input = io::check_attend_input(file, backward);
    if (input.virtual_layout && P > 1) {  // parallel HDF5 cannot read virtual datasets; each rank reads alone
      file = io::h5::File::open(input_path, io::h5::Mode::read, MPI_COMM_NULL);
      log::info(input_path + " holds virtual datasets: each rank reads its rows independently (serial HDF5)");
    }
    warn_coverage(params.schedule, input.heads, params.offsets, input.seq_len);
    const int64_t L = input.seq_len / P;
    rows = {rank * L, (rank + 1) * L};
    q = io::read_rows(file, "q", input.seq_axis, rows);
    k = io::read_rows(file, "k", input.seq_axis, rows);
    v = io::read_rows(file, "v", input.seq_axis, rows);
    if (backward) dout = io::read_rows(file, "do", input.seq_axis, rows);
  }
  // The axes named (before: the shape alone, so a [B,H,N,D] file read as [B,N,H,D] went unseen).
  const std::string axes = (input.batched ? "B=" + std::to_string(input.batch) + " " : std::string()) + "N=" +
                           std::to_string(input.seq_len) + " H=" + std::to_string(input.heads) + " D=" +
                           std::to_string(input.head_dim);
  log::info("read " + to_string(input.shape) + " as " + axes + " from " + input_path + " (" +
            std::to_string(rows.rows()) + " rows per rank, " + fixed(since(t_read), 2) + " s); schedule " +
            to_string(params.schedule) + (params.causal ? ", causal" : ""));
  // Fewer tokens than heads is what PyTorch's [B,H,N,D] (or [H,N,D]) looks like read as ours (from the user
  // audit: it ran without a word, attention over the heads).
  if (input.seq_len < input.heads)
    log::warn_once(input_path + ": q is read as " + axes + ", fewer tokens than heads: is it laid out " +
                   (input.batched ? "[B,H,N,D]" : "[H,N,D]") + ", as PyTorch's attention takes it? longctx reads " +
                   (input.batched ? "[B,N,H,D]" : "[N,H,D]") + ": swap those axes (q.transpose(" +
                   (input.batched ? "1, 2" : "0, 1") + ")) before writing the file");

  // NaN or Inf in the input would come out as NaN in o (and the gradients) with exit 0: refused.
  {
    NamedTensors inputs{{"q", &q}, {"k", &k}, {"v", &v}};
    if (backward) inputs.emplace_back("do", &dout);
    const std::string bad = first_non_finite_of(inputs, input.seq_axis, rows);
    if (refused_by_any_rank(world, bad.empty() ? "" : input_path + ": " + bad + ": the input must be finite (nothing was computed or written)"))
      return static_cast<int>(ExitCode::bad_input);
  }

  // Room for the output, looked for before the compute, not found missing when writing after it (from an
  // audit: the compute was lost). A look, as for activation dumps: HDF5's headers take under 4 KiB a dataset.
  {
    const int datasets = backward ? 5 : 2;
    const uint64_t values = static_cast<uint64_t>(element_count(input.shape)) * (datasets - 1) +
                            static_cast<uint64_t>(element_count(input.lse_shape()));
    io::require_room(comm, output_path, values * sizeof(float) + datasets * 4096,
                     std::string(backward ? "o, lse, dq, dk and dv" : "o and lse") + " (looked for before computing them)");
  }
  stop_here_if_set("LONGCTX_FAULT_STOP_BEFORE_WORK");  // a test fills the disk after that look

  // Fault injection for the no-hang test: this rank fails while the others enter the all-gathers.
  if (const auto fail_rank = process_getenv("LONGCTX_FAULT_INJECT_RANK"); fail_rank && *fail_rank == std::to_string(rank))
    throw InternalError("injected failure on rank " + *fail_rank + " (LONGCTX_FAULT_INJECT_RANK)");
  // ... this rank stops (in no MPI call) while the others wait in the all-gathers: the roll-call test.
  stall_if_named("LONGCTX_FAULT_STALL_ATTENTION_RANK", rank);
  // ... an exception leaves an OpenMP region (std::terminate): main's terminate handler ends the job.
  terminate_in_parallel_if_named("LONGCTX_FAULT_TERMINATE_RANK", rank);

  SequenceParallelAttention attention(world);
  attention.keep_gathered_for_backward(backward);  // the backward reuses the forward's gathered K / V
  Tensor o, lse, dq, dk, dv;
  SequenceParallelStats f, b;  // the GPU path fills only seconds: one rank exchanges nothing
  std::optional<Heartbeat> alive(std::in_place, rank == 0, [](double seconds) {
    return "forward: running, " + Heartbeat::elapsed_text(seconds) + " s";
  });
  if (gpu) {
    const auto t_fwd = Clock::now();
    gpu->forward(params, q, k, v, o, lse);
    f.seconds = since(t_fwd);
  } else if (gpus) {
    gpus->forward(params, q, k, v, o, lse);
    f = gpus->last_forward();
  } else {
    attention.forward(params, q, k, v, o, lse);
    f = attention.last_forward();
  }
  alive.reset();
  const double pairs = count_pairs(params.schedule, input.seq_len, input.heads, params.causal, params.offsets) *
                       static_cast<double>(input.batch);
  const double flops_fwd = flops_forward(pairs, input.head_dim);
  const double flops_bwd = backward ? flops_backward(pairs, input.head_dim) : 0.0;
  // The pairs this rank computed, for its log line: on the CPU, its rows' with causal masking balanced
  // across the ranks (sequence_parallel.hpp); one GPU computes its own rows'.
  const double my_pairs = gpu || gpus ? count_pairs_in_rows(params.schedule, input.seq_len, input.heads, params.causal,
                                                            params.offsets, rows.begin, rows.end) *
                                            static_cast<double>(input.batch)
                                      : f.pairs;
  const std::string where = device.device == "cuda"
                                ? " on the GPU (" + to_string(device.dtype) + ", host copies included), "
                                : " on rank 0, ";
  const auto gflops = [&](double flops, double seconds) { return fixed(flops / seconds / 1e9, 1); };
  log::info("forward: " + fixed(f.seconds, 3) + " s" + where + gflops(flops_forward(my_pairs, input.head_dim), f.seconds) +
            " GFLOP/s");
  // From a finite input, a result that is not finite overflowed float32 (a score |q.k| * scale past 3.4e38,
  // or sums of huge values; on a GPU in bf16 / fp16 also the inputs' conversion, fp16's largest being
  // 65504): said, not written.
  const std::string arithmetic =
      device.device == "cuda" && device.dtype != Dtype::fp32 ? to_string(device.dtype) + " (--dtype) or float32" : "float32";
  // (A --softmax-scale of the user's is named as the first thing to lower.)
  char scale_given[32] = "";
  if (params.softmax_scale != 0) std::snprintf(scale_given, sizeof scale_given, "%.9g", params.softmax_scale);
  const std::string remedy = params.softmax_scale != 0
                                 ? "lower --softmax-scale (" + std::string(scale_given) + ") or scale the inputs down"
                                 : "scale the inputs down";
  // An r = 1 branch selects every row, so an lse of -inf is then scores that overflowed to -inf (q.k * scale
  // below -3.4e38), not a row no branch selects (before: written, exit 0, as o = 0; from the attend audit).
  const bool uncovered_rows = std::none_of(params.schedule.branches.begin(), params.schedule.branches.end(),
                                           [](const Branch& branch) { return branch.dilation == 1; });
  const auto overflowed = [&](const NamedTensors& results) {
    std::string bad = first_non_finite_of(results, input.seq_axis, rows, uncovered_rows);
    for (const auto& [name, tensor] : results)
      if (bad.empty() && uncovered_rows && name == "lse")
        if (const std::string at = first_selected_minus_inf(*tensor, input.seq_axis, rows, params, input.seq_len,
                                                            input.heads);
            !at.empty())
          bad = name + at;
    return refused_by_any_rank(world, bad.empty() ? "" : "the result " + bad + " from a finite " + input_path + ": " +
                                          arithmetic + " overflowed (scores |q.k| * softmax scale, or values, too large); " +
                                          remedy + " (nothing was written)");
  };
  if (overflowed({{"o", &o}, {"lse", &lse}})) return static_cast<int>(ExitCode::bad_input);
  if (backward) {
    alive.emplace(rank == 0,
                  [](double seconds) { return "backward: running, " + Heartbeat::elapsed_text(seconds) + " s"; });
    if (gpu) {
      const auto t_bwd = Clock::now();
      gpu->backward(params, q, k, v, o, lse, dout, dq, dk, dv);
      b.seconds = since(t_bwd);
    } else if (gpus) {
      gpus->backward(params, q, k, v, o, lse, dout, dq, dk, dv);
      b = gpus->last_backward();
    } else {
      attention.backward(params, q, k, v, o, lse, dout, dq, dk, dv);
      b = attention.last_backward();
    }
    alive.reset();
    log::info("backward: " + fixed(b.seconds, 3) + " s" + where +
              gflops(flops_backward(my_pairs, input.head_dim), b.seconds) + " GFLOP/s");
    if (overflowed({{"dq", &dq}, {"dk", &dk}, {"dv", &dv}})) return static_cast<int>(ExitCode::bad_input);
    // The backward's P = exp(score - lse), lse in float32 as the spec has it: relative errors of about
    // 6e-8 x |lse|, the scores' magnitude. Said where that passes 1e-3 (scores past about 1.7e4): the
    // gradients are finite and that far off (before: without a word; from the attend audit). Rank 0 says
    // it, once: every rank knows the same largest |lse| (before: each rank, alike).
    double largest = 0;
    const float* lse_values = lse.data();
    const int64_t lse_count = lse.size();
#pragma omp parallel for reduction(max : largest) schedule(static)
    for (int64_t i = 0; i < lse_count; ++i)
      if (std::isfinite(lse_values[i])) largest = std::max(largest, std::fabs(static_cast<double>(lse_values[i])));
    if (P > 1) world.all_reduce(Span<double>(&largest, 1), comm::ReduceOp::max);
    if (constexpr double kLseRounding = 6e-8; kLseRounding * largest > 1e-3)
      log::warn_once("the scores reach about " + fixed(largest, 0) + " (the largest |lse|): dq, dk and dv carry "
                     "relative errors up to about " + fixed(100 * kLseRounding * largest, 1) +
                     "% (P = exp(score - lse) with lse in float32, as the spec has it); lower --softmax-scale or scale "
                     "q and k down for exact gradients");
  }

  // The report is written and fsynced before the output and renamed after it: a report that cannot be
  // written (a full disk) fails the run before OUT is replaced (before, OUT was replaced and then exit 1).
  std::string report_text;  // rank 0's
  if (!report_path.empty()) {
    const RankFigures mine{f.seconds, backward ? b.seconds : 0.0,
                           static_cast<double>(f.bytes_sent + (backward ? b.bytes_sent : 0)),
                           static_cast<double>(f.bytes_received + (backward ? b.bytes_received : 0)),
                           static_cast<double>(f.collectives + (backward ? b.collectives : 0)),
                           f.comm_seconds + (backward ? b.comm_seconds : 0.0),
                           f.comm_wait_seconds + (backward ? b.comm_wait_seconds : 0.0)};
    constexpr size_t kFields = sizeof(RankFigures) / sizeof(double);
    std::vector<double> all(kFields * static_cast<size_t>(P));
    world.all_gather(Span<const double>(reinterpret_cast<const double*>(&mine), kFields), Span<double>(all));
    if (rank == 0) {
      std::ostringstream json;
      json << "{\"world_size\": " << P << ", \"batch\": " << input.batch << ", \"seq_len\": " << input.seq_len
           << ", \"heads\": " << input.heads << ", \"head_dim\": " << input.head_dim
           << ", \"schedule\": " << json_schedule(params.schedule) << ", \"causal\": " << (params.causal ? "true" : "false")
           << ", \"head_offsets\": " << json_string(to_string(params.offsets)) << ", \"pairs\": " << json_count(pairs)
           << ", \"flops_fwd\": " << json_count(flops_fwd) << ", \"flops_bwd\": " << json_count(flops_bwd)
           << ", \"backward\": " << (backward ? "true" : "false") << ", \"per_rank\": [";
      for (int r = 0; r < P; ++r) {
        const auto* x = reinterpret_cast<const RankFigures*>(all.data() + kFields * static_cast<size_t>(r));
        json << (r ? ", " : "") << "{\"rank\": " << r << ", \"seconds_fwd\": " << x->seconds_fwd
             << ", \"seconds_bwd\": " << x->seconds_bwd << ", \"bytes_sent\": " << static_cast<uint64_t>(x->bytes_sent)
             << ", \"bytes_received\": " << static_cast<uint64_t>(x->bytes_received)
             << ", \"collectives\": " << static_cast<uint64_t>(x->collectives)
             << ", \"comm_seconds\": " << x->comm_seconds << ", \"comm_wait_seconds\": " << x->comm_wait_seconds
             << ", \"comm_hidden_fraction\": ";
        // null where the rank received nothing, as bench's comm_hidden (before: 1, "all hidden", at P = 1)
        if (x->bytes_received > 0)
          json << (x->comm_seconds > 0 ? 1.0 - x->comm_wait_seconds / x->comm_seconds : 1.0);
        else
          json << "null";
        json << "}";
      }
      json << "]}\n";
      report_text = json.str();
    }
  }
  std::optional<io::PreparedText> report;  // rank 0's; the others know it exists by report_path
  if (!report_path.empty())
    io::run_on_rank0(comm, "writing " + report_path + ".tmp",
                     [&] { report.emplace(report_path, report_text, report_claim->take()); });
  {
    // MPI-IO's "file write failed" does not say why: a full disk is named.
    io::guarded_write("writing " + output_path, io::directory_of(output_path), [&] {
      io::AtomicOutput output(output_path, std::move(output_claim), comm);
      // Fault injection for the no-hang test of file I/O: this rank stops while the others write collectively.
      stall_if_named("LONGCTX_FAULT_STALL_RANK", rank);
      output.file().write_attribute("format", std::string(io::kAttendOutputFormat));
      output.file().write_attribute("format_version", io::kAttendOutputFormatVersion);
      const io::h5::DatasetOptions plain{};
      io::write_rows(output.file(), "o", input.shape, input.seq_axis, rows, o, plain);
      io::write_rows(output.file(), "lse", input.lse_shape(), input.seq_axis, rows, lse, plain);
      if (backward) {
        io::write_rows(output.file(), "dq", input.shape, input.seq_axis, rows, dq, plain);
        io::write_rows(output.file(), "dk", input.shape, input.seq_axis, rows, dk, plain);
        io::write_rows(output.file(), "dv", input.shape, input.seq_axis, rows, dv, plain);
      }
      output.commit();
    });
  }
  log::info("wrote " + output_path);
  if (!report_path.empty()) {
    io::publish_on_rank0(comm, "publishing " + report_path, [&] { report->publish(); });
    log::info("report: " + report_path);
  }

  return 0;
}

}  // namespace

Command attend_command() {
  return {"attend", "dilated attention on q, k, v from HDF5 (forward, --backward), sharded over the ranks", "",
          declare, run, check_options, shared_inputs, nullptr, /*results_in_files=*/true};
}

}  // namespace longctx::cli
