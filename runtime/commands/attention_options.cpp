#include "runtime/commands/attention_options.hpp"

#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <iomanip>
#include <sstream>

#include "attention/cuda/cuda_attention.hpp"
#include "attention/sequence_parallel.hpp"
#include "comm/device_comm.hpp"
#include "comm/mpi_communicator.hpp"
#include "comm/staged_communicator.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/memory.hpp"

namespace longctx::cli {

namespace {
// A schedule list with a default, or (no default given) one the command requires.
po::typed_value<std::string>* schedule_value(const std::string& default_list) {
  auto* value = po::value<std::string>();
  return default_list.empty() ? value->required() : value->default_value(default_list);
}
}  // namespace

void declare_attention_options(po::options_description& desc, const std::string& default_segments,
                               const std::string& default_dilations, AttentionCommand command) {
  const bool bench = command == AttentionCommand::bench;
  desc.add_options()
      ("segment-lengths", schedule_value(default_segments),
       "segment length w of each branch, comma-separated (K/M/G suffixes)")
      ("dilation-rates", schedule_value(default_dilations),
       "dilation rate r of each branch, comma-separated, each at most its w (one that is larger would keep at most one row per segment); one r = 1 branch is required")
      ("causal", po::bool_switch(), "causal masking (a query sees keys at positions <= its own)")
      ("head-offsets", po::value<std::string>()->default_value("paper"),
       "head offsets: paper (h mod r) or grouped (torchscale: h / ceil(H/r))")
      ("softmax-scale", po::value<double>()->default_value(0.0), "score scale, in [0, 3.4e38] (float32); 0 means 1/sqrt(head dim)")
      ("allow-uncovered", po::bool_switch(), "accept a schedule without an r = 1 branch (uncovered rows get o = 0, lse = -inf)")
      ("device", po::value<std::string>()->default_value("cpu"),
       bench ? "backend: cpu (every rank of mpirun), or cuda (one GPU, without mpirun; when compiled in: longctx --version)"
             : "backend: cpu, or cuda (one GPU per rank; bf16 / fp16 under mpirun; when compiled in: longctx --version)")
      ("dtype", po::value<std::string>()->default_value("fp32"),
       (std::string("the type the kernels read q, k, v in: fp32, bf16 or fp16 (bf16 and fp16 need --device cuda; fp32 "
                    "accumulation and outputs)") +
        (bench ? "" : ". Not the input file's type: a float32 or float16 file works with each"))
           .c_str())
      ("comm", po::value<std::string>()->default_value("auto"),
       bench ? "not used by bench attention, whose --device cuda times one GPU without mpirun (bench comm --comm "
               "times the device communicators)"
             : "device communicator with --device cuda under mpirun: auto (nccl when libnccl loads and each rank has its own GPU, else staged), nccl, staged or mpi (MPI through host memory)")
      ("threads", po::value<int>()->default_value(0), "OpenMP threads per rank; 0: OMP_NUM_THREADS, or without it the rank's share of the CPUs it may run on (shared with the ranks of its node allowed on them)");
}

AttentionParams attention_params(const Invocation& invocation) {
  const auto& vm = invocation.options;
  AttentionParams params;
  params.schedule = make_schedule(parse_size_list("segment-lengths", vm["segment-lengths"].as<std::string>()),
                                  parse_size_list("dilation-rates", vm["dilation-rates"].as<std::string>()),
                                  vm["allow-uncovered"].as<bool>());
  params.causal = vm["causal"].as<bool>();
  params.offsets = parse_head_offsets(vm["head-offsets"].as<std::string>());
  params.softmax_scale = vm["softmax-scale"].as<double>();
  // The kernels scale in float32: a scale past its largest value was inf there, and the run then blamed
  // the input file for overflowing (exit 3).
  // A value float32 rounds to its largest (3.4028235e38, as numpy prints it) is that value (before: refused,
  // and said as "3.40282e+38", which was accepted; from the attend audit).
  const double largest = std::numeric_limits<float>::max(), rounds_down = largest + std::ldexp(1.0, 103);  // + ulp/2
  if (!(params.softmax_scale >= 0) || !(params.softmax_scale < rounds_down)) {
    char given[32];
    std::snprintf(given, sizeof given, "%.9g", params.softmax_scale);
    throw UsageError(std::string("--softmax-scale: must be >= 0 and at most float32's largest value, 3.4e38 (0 means "
                                 "1/sqrt(head dim)), got ") + given,
                     "softmax-scale");
  }
  params.softmax_scale = std::min(params.softmax_scale, largest);
  // One that float32 rounds to 0 scored every key alike, where the JSON said the scale given (1e-46).
  if (params.softmax_scale > 0 && static_cast<float>(params.softmax_scale) == 0.0f) {
    char given[32];
    std::snprintf(given, sizeof given, "%g", params.softmax_scale);
    throw UsageError(std::string("--softmax-scale: ") + given +
                         " is 0 in float32, the kernels' scale (0 means 1/sqrt(head dim)); give at least 1.4e-45",
                     "softmax-scale");
  }
  attention_device(invocation);  // validates --device and --dtype
  const int threads = vm["threads"].as<int>();
  if (threads < 0 || threads > kMaxThreads)
    throw UsageError("--threads: must be in [0, " + std::to_string(kMaxThreads) + "], got " + std::to_string(threads),
                     "threads");
  if (threads > 0) set_threads(threads, "--threads " + std::to_string(threads));
  return params;
}

DeviceChoice attention_device(const Invocation& invocation) {
  const auto& vm = invocation.options;
  DeviceChoice choice;
  choice.device = vm["device"].as<std::string>();
  choice.dtype = parse_dtype(vm["dtype"].as<std::string>());
  choice.comm = vm["comm"].as<std::string>();
  // "mpi" (what `bench comm --comm` calls it, so one LONGCTX_COMM serves both) is the staged path.
  if (choice.comm == "mpi") choice.comm = "staged";
  if (choice.comm != "auto" && choice.comm != "nccl" && choice.comm != "staged")
    throw UsageError("--comm: '" + choice.comm + "' is not a device communicator; allowed: auto, nccl, staged (or mpi)",
                     "comm");
  if (choice.device == "cpu") {
    if (choice.dtype != Dtype::fp32)
      throw UsageError("--dtype " + to_string(choice.dtype) + ": the cpu backend computes in fp32 only (bf16, fp16 "
                       "need --device cuda)", "dtype");
    // Warned, not refused: one LONGCTX_COMM may serve a site's cuda runs and its cpu runs alike (before:
    // silently ignored, as if it had been used).
    if (choice.comm != "auto")
      log::warn_once("--comm " + vm["comm"].as<std::string>() + value_source(invocation, "comm") +
                     ": not used with --device cpu, whose ranks exchange keys and values through MPI");
  } else if (choice.device == "cuda") {
    if (!cuda_compiled_in())
      throw UsageError("--device cuda: this build has no CUDA backend (longctx --version lists the backends)",
                       "device");
    if (invocation.process.world().size() > 1 && choice.dtype == Dtype::fp32)
      throw UsageError("--device cuda --dtype fp32: the fp32 kernels are the single-GPU reference; on several "
                       "ranks use --dtype bf16 or fp16", "dtype");
    // Here, in the config phase, so that under mpirun it is one message, not one per rank and an MPI_Abort.
    if (invocation.process.device() == "cpu")
      throw UsageError("--device cuda: no CUDA device is visible to this process (allowed here: cpu)", "device");
  } else {
    throw UsageError("--device: '" + choice.device + "' is not a backend; allowed: cpu, cuda", "device");
  }
  return choice;
}

std::unique_ptr<comm::Communicator> make_device_comm(ProcessContext& process, const std::string& choice) {
  comm::Communicator& world = process.world();
  const int device = comm::select_device(process.local_rank());
  if (choice == "nccl") return comm::make_nccl_communicator(world, device);
  if (choice == "auto") {
    std::string why;
    // Decided together: a rank without libnccl makes every rank stage.
    std::vector<int32_t> loads{comm::nccl_available(&why) ? 1 : 0};
    world.all_reduce(Span<int32_t>(loads), comm::ReduceOp::min);
    if (loads[0] == 1) {
      try {
        return comm::make_nccl_communicator(world, device);
      } catch (const UsageError& e) {  // the same on every rank: two ranks on one GPU
        why = e.what();
      }
    }
    log::info("--comm auto: staging device buffers through MPI (" + (why.empty() ? "libnccl missing on some rank" : why) + ")");
  }
  return std::make_unique<comm::StagedCommunicator>(world, comm::make_cuda_copier());
}

MPI_Comm mpi_handle(comm::Communicator& comm) {
  auto* mpi = dynamic_cast<comm::MpiCommunicator*>(&comm);
  if (!mpi) throw InternalError("parallel HDF5 needs the MPI communicator, not " + comm.backend());
  return mpi->handle();
}

void check_iterations(int iters, int warmup) {
  if (iters < 1) throw UsageError("--iters: must be >= 1, got " + std::to_string(iters), "iters");
  if (warmup < 0) throw UsageError("--warmup: must be >= 0, got " + std::to_string(warmup), "warmup");
  constexpr int kMaxIterations = 1000000;
  if (iters > kMaxIterations || warmup > kMaxIterations)
    throw UsageError("--iters / --warmup: at most " + std::to_string(kMaxIterations) + " each, got " +
                     std::to_string(iters) + " / " + std::to_string(warmup));
}

void check_rows_fit_in_memory(const std::string& what, const AttentionParams& params, const AttentionDims& global,
                              int rank, int ranks, bool backward, int ranks_on_node, bool on_gpu) {
  AttentionDims local = global;
  local.seq_len = global.seq_len / std::max(ranks, 1);
  const double rows = static_cast<double>(local.batch) * static_cast<double>(local.seq_len) *
                      static_cast<double>(local.heads) * static_cast<double>(local.head_dim) * 4.0 * (backward ? 8 : 4);
  const int threads = omp_get_max_threads();
  double workspace = on_gpu ? 0.0 : attention_workspace_bytes(params, local, rank, ranks, false, backward, threads);
  if (backward && !on_gpu)
    workspace = std::max(workspace, attention_workspace_bytes(params, local, rank, ranks, true, true, threads));
  check_fits_in_memory(what,
                       std::string(backward ? "q, k, v, o, do, dq, dk, dv of its rows" : "q, k, v, o of its rows") +
                           " in float32, " + gibibytes(rows) + ", and the attention's own buffers, " + gibibytes(workspace) +
                           ": lse, the spanning segments' gathered K / V rows and the tiles of " + count_of(threads, "thread"),
                       rows + workspace, ranks_on_node, threads);
}

std::string count_of(int64_t n, const std::string& noun) { return std::to_string(n) + " " + noun + (n == 1 ? "" : "s"); }

std::string fixed(double value, int digits) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << value;
  return out.str();
}

std::string json_count(double count) {
  char text[400];
  std::snprintf(text, sizeof(text), "%.0f", count);
  return text;
}

namespace {

// The length of the UTF-8 sequence that starts at text[i] (2-4), or 0 where none does.
size_t utf8_sequence(const std::string& text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  const size_t length = lead >= 0xC2 && lead <= 0xDF ? 2 : lead >= 0xE0 && lead <= 0xEF ? 3 : lead >= 0xF0 && lead <= 0xF4 ? 4 : 0;
  if (length == 0 || i + length > text.size()) return 0;
  for (size_t k = 1; k < length; ++k)
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  // No overlong form, surrogate or code point past U+10FFFF.
  if ((lead == 0xE0 && byte(i + 1) < 0xA0) || (lead == 0xED && byte(i + 1) > 0x9F) ||
      (lead == 0xF0 && byte(i + 1) < 0x90) || (lead == 0xF4 && byte(i + 1) > 0x8F))
    return 0;
  return length;
}

}  // namespace

std::string json_string(const std::string& text) {
  std::string out = "\"";
  const auto escape = [&out](unsigned char c) {
    char escaped[8];
    std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
    out += escaped;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') { out += "\\n"; continue; }
    if (static_cast<unsigned char>(c) < 0x20) {  // a tab or another control character: JSON takes none raw
      escape(static_cast<unsigned char>(c));
      continue;
    }
    if (static_cast<unsigned char>(c) >= 0x80) {  // UTF-8 as it is; a byte that is none as \u00XX (valid JSON)
      if (const size_t length = utf8_sequence(text, i); length > 0) {
        out.append(text, i, length);
        i += length - 1;
      } else {
        escape(static_cast<unsigned char>(c));
      }
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string json_schedule(const Schedule& schedule) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < schedule.branches.size(); ++i)
    out << (i ? ", " : "") << "[" << schedule.branches[i].segment_length << ", " << schedule.branches[i].dilation << "]";
  out << "]";
  return out.str();
}

uint64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;
}

}  // namespace longctx::cli
