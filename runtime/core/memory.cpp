#include "runtime/core/memory.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include "runtime/core/error.hpp"
#include "runtime/core/log.hpp"

namespace longctx {
namespace {

// The first number in `path` (a cgroup limit file; "max" or a missing file: no limit).
uint64_t limit_from(const char* path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return std::numeric_limits<uint64_t>::max();
  try {
    return std::stoull(text);
  } catch (const std::exception&) {
    return std::numeric_limits<uint64_t>::max();
  }
}

// A /proc/meminfo figure ("MemTotal:", "MemAvailable:") in bytes; none: UINT64_MAX.
uint64_t meminfo(const std::string& wanted) {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  while (in >> key >> kib) {
    if (key == wanted) return kib * 1024;
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return std::numeric_limits<uint64_t>::max();
}

// The smallest limit file `name` on the way from <mount>/<path> up to <mount> (Slurm's --mem sits on
// the job's cgroup, below the mount's top). Missing directories (another namespace) are skipped.
uint64_t smallest_limit_up(const std::string& mount, std::string path, const char* name) {
  uint64_t limit = std::numeric_limits<uint64_t>::max();
  for (;;) {
    limit = std::min(limit, limit_from((mount + path + "/" + name).c_str()));
    if (path.empty() || path == "/") break;
    path = path.substr(0, path.find_last_of('/'));
  }
  return limit;
}

// This process's cgroup memory limit (v2 memory.max, v1 memory.limit_in_bytes), from /proc/self/cgroup.
uint64_t cgroup_limit() {
  uint64_t limit = std::numeric_limits<uint64_t>::max();
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);) {
    const size_t first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1), path = line.substr(second + 1);
    if (controllers.empty()) {  // v2: "0::/path"
      for (const char* mount : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"})
        limit = std::min(limit, smallest_limit_up(mount, path, "memory.max"));
    } else if (("," + controllers + ",").find(",memory,") != std::string::npos) {
      limit = std::min(limit, smallest_limit_up("/sys/fs/cgroup/memory", path, "memory.limit_in_bytes"));
    }
  }
  return limit;
}

}  // namespace

uint64_t node_memory_limit_bytes() { return std::min(meminfo("MemTotal:"), cgroup_limit()); }

uint64_t process_memory_limit_bytes() {
  rlimit as{};
  if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) return as.rlim_cur;
  return std::numeric_limits<uint64_t>::max();
}

std::string gibibytes(double bytes) {
  char text[48];
  if (bytes < double(uint64_t{1} << 30))
    std::snprintf(text, sizeof text, "%.0f MiB", std::ceil(bytes / double(uint64_t{1} << 20)));
  else if (bytes < double(uint64_t{1} << 40))
    std::snprintf(text, sizeof text, "%.1f GiB", bytes / double(uint64_t{1} << 30));
  else if (bytes < double(uint64_t{1} << 50))
    std::snprintf(text, sizeof text, "%.1f TiB", bytes / double(uint64_t{1} << 40));
  else
    std::snprintf(text, sizeof text, "%.1f PiB", bytes / double(uint64_t{1} << 50));
  return text;
}

std::string memory_pressure_note(double node_need, double node_limit, double available) {
  if (node_need <= available) return "";
  return ", " + gibibytes(node_need) + " on this node, which fits its " + gibibytes(node_limit) + ", but " +
         gibibytes(available) + " are available now (MemAvailable on rank 0's node): other processes hold the "
         "rest, so the run may swap or be killed for memory; free some, or use more nodes";
}

void check_fits_in_memory(const std::string& what, const std::string& parts, double bytes_per_rank, int ranks_on_node,
                          int threads, const std::string& remedy) {
  const int ranks = std::max(ranks_on_node, 1);
  const double node = static_cast<double>(node_memory_limit_bytes());
  const double process = static_cast<double>(process_memory_limit_bytes());
  std::ostringstream message;
  message << what << " needs at least " << gibibytes(bytes_per_rank) << " per rank (" << parts << ")";
  // The libraries (256 MiB), each thread's stack (8 MiB) and, past the first thread, the malloc arena glibc
  // reserves for it (64 MiB of address space; before: not counted, so with 2 threads a run that passed
  // this check could run out of address space by 34 MiB).
  const int all_threads = std::max(threads, 1);
  const double address_space = bytes_per_rank + double(uint64_t{256} << 20) + all_threads * double(uint64_t{8} << 20) +
                               (all_threads - 1) * double(uint64_t{64} << 20);
  // Without ulimit -v, what x86-64 gives a process: 128 TiB (before: said as ulimit -v's 2^64 bytes, "raise
  // it").
  const bool unlimited = process >= double(std::numeric_limits<uint64_t>::max());
  const double addressable = unlimited ? double(uint64_t{1} << 47) : process;
  if (address_space > addressable) {
    // Figures that round alike are given in MiB (before: "needs 1.5 GiB ... but ulimit -v allows 1.5 GiB").
    const bool alike = gibibytes(address_space) == gibibytes(addressable);
    const auto shown = [alike](double bytes) {
      if (!alike) return gibibytes(bytes);
      return std::to_string(static_cast<uint64_t>(std::ceil(bytes / double(uint64_t{1} << 20)))) + " MiB";
    };
    message << " and " << shown(address_space) << " of address space with the libraries and " << all_threads
            << (all_threads > 1 ? " threads" : " thread");
    if (unlimited)
      message << ", more than a process can address (" << gibibytes(addressable)
              << "): " << (remedy.empty() ? "use more ranks or a smaller problem" : remedy);
    else
      message << ", but ulimit -v allows each process " << shown(addressable) << ": raise it, or "
              << (remedy.empty() ? "use more ranks" : remedy);
    throw UsageError(message.str());
  }
  if (bytes_per_rank * ranks <= node) {
    const std::string note = memory_pressure_note(bytes_per_rank * ranks, node, double(meminfo("MemAvailable:")));
    if (!note.empty()) log::warn_once(message.str() + note);
    return;
  }
  if (ranks > 1) message << ", " << gibibytes(bytes_per_rank * ranks) << " for the " << ranks << " ranks on this node";
  message << ", but this node allows " << gibibytes(node)
          << " (the lesser of MemTotal and this cgroup's memory limit): "
          << (remedy.empty() ? "use more nodes or a smaller problem" : remedy);
  throw UsageError(message.str());
}

}  // namespace longctx
