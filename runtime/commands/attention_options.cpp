#include "runtime/commands/attention_options.hpp"

#include <omp.h>
#include <sys/resource.h>

#include <sstream>

#include "attention/cuda/cuda_attention.hpp"
#include "comm/mpi_communicator.hpp"

namespace longctx::cli {

void declare_attention_options(po::options_description& desc, const std::string& default_segments,
                               const std::string& default_dilations) {
  desc.add_options()
      ("segment-lengths", po::value<std::string>()->default_value(default_segments),
       "segment length w of each branch, comma-separated (K/M/G suffixes)")
      ("dilation-rates", po::value<std::string>()->default_value(default_dilations),
       "dilation rate r of each branch, comma-separated; one r = 1 branch is required")
      ("causal", po::bool_switch(), "causal masking (a query sees keys at positions <= its own)")
      ("head-offsets", po::value<std::string>()->default_value("paper"),
       "head offsets: paper (h mod r) or grouped (torchscale: h / ceil(H/r))")
      ("softmax-scale", po::value<double>()->default_value(0.0), "score scale; 0 means 1/sqrt(head dim)")
      ("allow-uncovered", po::bool_switch(), "accept a schedule without an r = 1 branch (uncovered rows get o = 0, lse = -inf)")
      ("device", po::value<std::string>()->default_value("cpu"), "backend: cpu (cuda when compiled in)")
      ("dtype", po::value<std::string>()->default_value("fp32"), "compute type: fp32 on cpu (bf16|fp16 need --device cuda)")
      ("threads", po::value<int>()->default_value(0), "OpenMP threads per rank; 0 keeps OMP_NUM_THREADS / all cores");
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
  if (!(params.softmax_scale >= 0))
    throw UsageError("--softmax-scale: must be >= 0 (0 means 1/sqrt(head dim)), got " +
                     std::to_string(params.softmax_scale));
  const std::string device = vm["device"].as<std::string>();
  if (device == "cuda")
    throw UsageError(cuda_compiled_in()
                         ? "--device cuda: the CUDA kernels are built but not yet wired into attend, bench and "
                           "train (issue 7); allowed now: cpu"
                         : "--device cuda: this build has no CUDA backend (longctx --version lists the backends)");
  if (device != "cpu") throw UsageError("--device: '" + device + "' is not a backend; allowed: cpu, cuda");
  const std::string dtype = vm["dtype"].as<std::string>();
  if (dtype != "fp32" && dtype != "bf16" && dtype != "fp16")
    throw UsageError("--dtype: '" + dtype + "' is not a dtype; allowed: fp32, bf16, fp16");
  if (dtype != "fp32") throw UsageError("--dtype " + dtype + ": the cpu backend computes in fp32 only");
  const int threads = vm["threads"].as<int>();
  if (threads < 0) throw UsageError("--threads: must be >= 0, got " + std::to_string(threads));
  if (threads > 0) omp_set_num_threads(threads);
  return params;
}

MPI_Comm mpi_handle(comm::Communicator& comm) {
  auto* mpi = dynamic_cast<comm::MpiCommunicator*>(&comm);
  if (!mpi) throw InternalError("parallel HDF5 needs the MPI communicator, not " + comm.backend());
  return mpi->handle();
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') { out += "\\n"; continue; }
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
