// What this node's memory allows, for checks in the config phase: a job that cannot fit is refused with
// its figure (exit 2) instead of being OOM-killed without a word, or failing after minutes of setup.
#pragma once

#include <cstdint>
#include <string>

namespace longctx {

// The most memory the ranks on this node can have together, in bytes: the lesser of the node's MemTotal
// and this process's cgroup limit (v2 memory.max, v1 memory.limit_in_bytes, the smallest on the way up
// from its own cgroup, where Slurm's --mem sits).
uint64_t node_memory_limit_bytes();
// The most one process can map (ulimit -v, RLIMIT_AS); no limit is UINT64_MAX.
uint64_t process_memory_limit_bytes();

// Throws UsageError when one rank needing at least `bytes_per_rank` exceeds process_memory_limit_bytes(),
// or `ranks_on_node` of them exceed node_memory_limit_bytes(). `what` names the job ("bench attention
// N=1048576 B=1 H=16 D=128"); `parts` says what the figure counts ("q, k, v, o in float32"): an estimate
// of the peak that errs low rather than refuse a run that fits (a cgroup shared with other jobs is taken
// as this job's alone). Against ulimit -v, which limits address space, not memory, the process's own is
// added: 256 MiB (libraries, MPI's mappings) and 8 MiB per thread of `threads` (its stack; glibc's malloc arenas are
// not counted: under a limit without room for them it makes none). Before: none, and a run the check let
// through failed at once, some in libgomp's thread creation. The refusal's advice is more ranks or nodes, or
// a smaller problem; `remedy`, where given, in their place, for a job whose need per rank more ranks do not
// lower (bench comm: "use a smaller --bytes").
void check_fits_in_memory(const std::string& what, const std::string& parts, double bytes_per_rank, int ranks_on_node,
                          int threads = 1, const std::string& remedy = "");

// The end of check_fits_in_memory's warning for a job whose ranks on a node need `node_need` bytes, which
// fits `node_limit` but not what /proc/meminfo says is `available` now (other processes hold the rest):
// said, not refused, as they may end and the kernel may reclaim more than MemAvailable guesses. "" when
// it fits `available` (before: MemTotal alone was looked at).
std::string memory_pressure_note(double node_need, double node_limit, double available);

// "1.5 GiB"; below 1 GiB "340 MiB" (before: "0.1 GiB ... allows 0.1 GiB" for a refusal of small sizes); from
// 1 TiB "128.0 TiB", from 1 PiB "2.0 PiB" (before: "262144.0 GiB")
std::string gibibytes(double bytes);

}  // namespace longctx
