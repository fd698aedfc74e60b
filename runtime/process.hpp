// The process context: started once per process, first thing in main(). It initialises MPI, learns
// rank / world size / local rank (MPI_Comm_split_type SHARED) / host, detects the launcher from the
// environment and cross-checks it against what MPI sees, and finalises MPI on the way out.
//
// Launcher detection reads the environment BEFORE trusting MPI:
//   Open MPI (mpirun)  OMPI_COMM_WORLD_SIZE / _RANK / _LOCAL_RANK
//   Slurm (srun)       SLURM_STEP_NUM_TASKS (or SLURM_NTASKS) / SLURM_PROCID / SLURM_LOCALID
//   none               neither (a plain ./longctx: a world of one)
// mpirun inside an sbatch job also carries SLURM_* variables, so Open MPI's variables win.
// When the launcher started N tasks but MPI sees a world of a different size, each task is running
// alone: that is `srun` without PMI (or mpirun of a binary built against another MPI). Continuing
// would have N processes each compute and write the whole problem, so it is a usage error (exit 2).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "comm/communicator.hpp"

namespace longctx {

// The most OpenMP threads per rank --threads / train.threads take, and OMP_NUM_THREADS is cut to (more is
// a typo, not a machine).
constexpr int kMaxThreads = 1024;
// Sets this rank's OpenMP threads to `threads` (as asked, past int too; `given`: how the option reads, for the
// warning), cut to
// OMP_THREAD_LIMIT where that is lower, with a warning: OpenMP never runs more, and the counts every
// command prints and plans its work by (omp_get_max_threads) would otherwise say more than run.
void set_threads(unsigned long long threads, const std::string& given);

enum class LauncherKind { none, open_mpi, slurm, pmi };  // pmi: a PMI-1/2 launcher (MPICH or Intel MPI Hydra)
std::string to_string(LauncherKind kind);

struct LauncherInfo {
  LauncherKind kind = LauncherKind::none;
  int tasks = -1;       // what the launcher says the world size is; -1 when unknown
  int rank = -1;        // what the launcher says this process's rank is; -1 when unknown
  int local_rank = -1;  // the launcher's local rank, -1 when unknown
  // NAME='value' of the first of those variables that is set but no whole number (a rank below 0, tasks
  // below 1): check_launcher_before_mpi refuses it (before: read as unknown, so the checks were skipped).
  std::string invalid;
};

// `getenv` is injectable so tests can pose as any launcher.
using GetEnv = std::function<std::optional<std::string>(const std::string&)>;
LauncherInfo detect_launcher(const GetEnv& getenv);
std::optional<std::string> process_getenv(const std::string& name);
// Fault injection for the no-hang tests: when the environment variable `variable` holds this rank's
// number, the rank stops here for good, outside MPI (as a SIGSTOP or a hung file system would).
void stall_if_named(const char* variable, int rank);
// Fault injection for the tests: where `variable` names `rank`, an exception leaves an OpenMP parallel
// region, which C++ cannot unwind: std::terminate (main's handler ends the job).
void terminate_in_parallel_if_named(const char* variable, int rank);
// The names of every variable in this process's environment.
std::vector<std::string> process_environment_names();

// Whether the Open MPI this process runs on can start tasks by PMI-1/2 (srun --mpi=pmi2): Open MPI 5 never,
// Open MPI 4 with its s1 / s2 components (their variables, by MPI_T, before MPI_Init); nullopt when unknown
// (not Open MPI, or no PMI component seen).
std::optional<bool> open_mpi_speaks_pmi();

// Before MPI_Init: srun started tasks but gave them no PMI / PMIx, or only a PMI-2 this Open MPI cannot use
// (Open MPI would refuse to start with a page of build advice): throws UsageError with the fix. Returns the
// variables to unset before MPI_Init: for one task without PMIx, Open MPI's sign of an srun step (it starts
// as a world of one then, as in the batch script; before, `srun -n 1` without --mpi failed).
std::vector<std::string> check_launcher_before_mpi(
    const LauncherInfo& launcher, const GetEnv& getenv,
    const std::function<std::optional<bool>()>& mpi_speaks_pmi = open_mpi_speaks_pmi);

// Throws UsageError when the launcher and MPI disagree on world size or rank.
void check_launcher(const LauncherInfo& launcher, int mpi_rank, int mpi_world_size);

class ProcessContext {
 public:
  ProcessContext(int* argc, char*** argv);
  ~ProcessContext();
  ProcessContext(const ProcessContext&) = delete;
  ProcessContext& operator=(const ProcessContext&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  // The world rank of this node's local rank 0: the same on the ranks that share this node's memory.
  int node_leader() const { return node_leader_; }
  const std::string& host() const { return host_; }
  const LauncherInfo& launcher() const { return launcher_; }
  // This rank's GPU ("cuda:<index> <name> <uuid prefix>", one per local rank) or "cpu" without one.
  std::string device() const;

  comm::Communicator& world() { return *world_; }

  // Ends every rank now with `code` (MPI_Abort when there are other ranks).
  [[noreturn]] void abort(int code);

 private:
  int rank_ = 0;
  int world_size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  int node_leader_ = 0;
  std::string host_;
  LauncherInfo launcher_;
  std::unique_ptr<comm::Communicator> world_;
};

// The CPUs this process may run on (its affinity mask); 0 when unknown.
int allowed_cpus();

// Rank 0's warning ("" for none, and on the other ranks) when the ranks of some node run more OpenMP
// threads than the CPUs they may run on (the node's ranks together more than the union of their masks, or
// one rank more than its own mask holds): they then take turns on the cores, and a timing measures that.
// Collective over the process's world. `threads_option`: the command's option that sets the threads
// ("--threads", "train.threads"; "" for none: OMP_NUM_THREADS alone), which the advice names.
std::string oversubscription_warning(ProcessContext& process, const std::string& threads_option);

}  // namespace longctx
