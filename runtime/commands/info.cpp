// `longctx info`: one line per rank (rank, local rank, host, device, launcher, OpenMP threads and the CPUs it
// may run on), printed by rank 0 in rank order, and a warning when a node's ranks run more threads than
// those CPUs. Fails with exit 2 when two ranks on one host would share one GPU.
#include <omp.h>

#include <iostream>
#include <sstream>

#include "runtime/commands/commands.hpp"
#include "runtime/core/log.hpp"

namespace longctx::cli {

namespace {

// A GPU as "host|GPU-uuid" where its label has the uuid ("cuda:0 NVIDIA_H100 GPU-1a2b3c4d"), else the
// placement as it is: two ranks whose CUDA_VISIBLE_DEVICES list the GPUs in other orders see one GPU
// under two indices (before: compared by index, so they were not found).
std::string gpu_identity(const std::string& placement) {
  const size_t bar = placement.rfind('|');
  const size_t uuid = placement.find(" GPU-", bar);
  if (bar == std::string::npos || uuid == std::string::npos) return placement;
  return placement.substr(0, bar + 1) + placement.substr(uuid + 1, placement.find(' ', uuid + 1) - uuid - 1);
}

}  // namespace

std::vector<std::string> find_shared_devices(const std::vector<std::string>& host_device_per_rank) {
  std::vector<std::string> problems;
  for (size_t a = 0; a < host_device_per_rank.size(); ++a) {
    const std::string& placement = host_device_per_rank[a];
    if (placement.substr(placement.rfind('|') + 1) == "cpu") continue;  // CPU ranks share cores freely
    for (size_t b = a + 1; b < host_device_per_rank.size(); ++b) {
      const std::string& other = host_device_per_rank[b];
      if (gpu_identity(placement) != gpu_identity(other)) continue;
      problems.push_back("ranks " + std::to_string(a) + " and " + std::to_string(b) + " share " + placement +
                         (other == placement ? std::string() : " (rank " + std::to_string(b) + ": " + other + ")"));
    }
  }
  return problems;
}

namespace {

std::vector<std::string> gather_strings(comm::Communicator& world, const std::string& mine) {
  std::vector<size_t> lengths(static_cast<size_t>(world.size()));
  const std::vector<int64_t> my_length{static_cast<int64_t>(mine.size())};
  std::vector<int64_t> all_lengths(lengths.size());
  world.all_gather(Span<const int64_t>(my_length), Span<int64_t>(all_lengths));
  size_t total = 0;
  for (size_t i = 0; i < lengths.size(); ++i) total += lengths[i] = static_cast<size_t>(all_lengths[i]);
  std::vector<char> joined(total);
  world.all_gatherv(Span<const char>(mine.data(), mine.size()), Span<char>(joined), lengths);
  std::vector<std::string> out;
  size_t offset = 0;
  for (size_t length : lengths) {
    out.emplace_back(joined.data() + offset, length);
    offset += length;
  }
  return out;
}

int run_info(Invocation& invocation) {
  ProcessContext& process = invocation.process;
  const std::vector<std::string> placements =
      gather_strings(process.world(), process.host() + "|" + process.device());
  if (const auto problems = find_shared_devices(placements); !problems.empty()) {
    std::string message = "two ranks would share one GPU: ";
    for (const auto& p : problems) message += p + "; ";
    throw UsageError(message + "run one rank per GPU");
  }
  std::ostringstream line;
  line << "rank " << process.rank() << "/" << process.world_size() << "  local_rank " << process.local_rank() << "/"
       << process.local_size() << "  host " << process.host() << "  device " << process.device() << "  launcher "
       << to_string(process.launcher().kind) << "  threads " << omp_get_max_threads() << " on " << allowed_cpus()
       << " CPU(s)";
  const std::vector<std::string> lines = gather_strings(process.world(), line.str());
  if (process.rank() == 0)
    for (const auto& l : lines) std::cout << l << "\n";
  std::cout.flush();
  if (const std::string crowded = oversubscription_warning(process, ""); !crowded.empty())
    log::warn(crowded);
  return 0;
}

}  // namespace

Command info_command() {
  return {"info", "one line per rank: rank, local rank, host, device, launcher, threads and CPUs (checks the launch)", "",
          nullptr, run_info};
}

}  // namespace longctx::cli
