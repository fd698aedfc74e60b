// What this node's memory allows, for checks in the config phase: a job that cannot fit is refused with
// its figure (exit 2) instead of being OOM-killed without a word, or failing after minutes of setup.
#pragma once

#include <cstdint>
#include <string>

namespace longctx {

// The most memory this process's ranks on this node can have, in bytes: the smallest of the node's
// MemTotal, the cgroup's limit (v2 memory.max, v1 memory.limit_in_bytes; Slurm's --mem) and RLIMIT_AS.
uint64_t node_memory_limit_bytes();

// Throws UsageError when `ranks_on_node` ranks needing at least `bytes_per_rank` each cannot fit in
// node_memory_limit_bytes(). `what` names the job ("bench attention N=1048576 B=1 H=16 D=128"); `parts`
// says what the figure counts ("q, k, v, o in float32"). Lower bounds only: no false refusal.
void check_fits_in_memory(const std::string& what, const std::string& parts, double bytes_per_rank, int ranks_on_node);

// "1.5 GiB"
std::string gibibytes(double bytes);

}  // namespace longctx
