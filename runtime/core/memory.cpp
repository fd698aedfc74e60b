#include "runtime/core/memory.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include "runtime/core/error.hpp"

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

uint64_t mem_total() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  while (in >> key >> kib) {
    if (key == "MemTotal:") return kib * 1024;
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return std::numeric_limits<uint64_t>::max();
}

}  // namespace

uint64_t node_memory_limit_bytes() {
  uint64_t limit = std::min({mem_total(), limit_from("/sys/fs/cgroup/memory.max"),
                             limit_from("/sys/fs/cgroup/memory/memory.limit_in_bytes")});
  rlimit as{};
  if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) limit = std::min<uint64_t>(limit, as.rlim_cur);
  return limit;
}

std::string gibibytes(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GiB", bytes / double(uint64_t{1} << 30));
  return text;
}

void check_fits_in_memory(const std::string& what, const std::string& parts, double bytes_per_rank, int ranks_on_node) {
  const double limit = static_cast<double>(node_memory_limit_bytes());
  const int ranks = std::max(ranks_on_node, 1);
  if (bytes_per_rank * ranks <= limit) return;
  std::ostringstream message;
  message << what << " needs at least " << gibibytes(bytes_per_rank) << " per rank (" << parts << ")";
  if (ranks > 1) message << ", " << gibibytes(bytes_per_rank * ranks) << " for the " << ranks << " ranks on this node";
  message << ", but this node allows " << gibibytes(limit)
          << " (the least of MemTotal, the cgroup's memory limit and ulimit -v): use more nodes or a smaller problem";
  throw UsageError(message.str());
}

}  // namespace longctx
