#include "runtime/process.hpp"

#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "attention/cuda/cuda_attention.hpp"
#include "comm/mpi_communicator.hpp"
#include "io/atomic_output.hpp"
#include "runtime/core/check.hpp"
#include "runtime/core/watchdog.hpp"

namespace longctx {
namespace {

int env_int(const GetEnv& getenv, const std::string& name) {
  const auto value = getenv(name);
  if (!value || value->empty()) return -1;
  try {
    size_t used = 0;
    const int parsed = std::stoi(*value, &used);
    return used == value->size() ? parsed : -1;
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

std::string to_string(LauncherKind kind) {
  switch (kind) {
    case LauncherKind::open_mpi: return "Open MPI";
    case LauncherKind::slurm: return "Slurm";
    case LauncherKind::pmi: return "PMI (MPICH/Hydra)";
    case LauncherKind::none: break;
  }
  return "none";
}

std::optional<std::string> process_getenv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (!value) return std::nullopt;
  return std::string(value);
}

void stall_if_named(const char* variable, int rank) {
  const auto named = process_getenv(variable);
  if (named && *named == std::to_string(rank))
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

std::vector<std::string> process_environment_names() {
  std::vector<std::string> names;
  for (char** entry = environ; *entry; ++entry) {
    const std::string text = *entry;
    names.push_back(text.substr(0, text.find('=')));
  }
  return names;
}

LauncherInfo detect_launcher(const GetEnv& getenv) {
  LauncherInfo info;
  if (getenv("OMPI_COMM_WORLD_SIZE")) {
    info.kind = LauncherKind::open_mpi;
    info.tasks = env_int(getenv, "OMPI_COMM_WORLD_SIZE");
    info.rank = env_int(getenv, "OMPI_COMM_WORLD_RANK");
    info.local_rank = env_int(getenv, "OMPI_COMM_WORLD_LOCAL_RANK");
  } else if (getenv("SLURM_PROCID") && (getenv("SLURM_STEP_ID") || getenv("SLURM_STEPID")) &&
             (getenv("SLURM_STEP_NUM_TASKS") || getenv("SLURM_NTASKS"))) {
    // A task of an srun job step.
    info.kind = LauncherKind::slurm;
    info.tasks = env_int(getenv, getenv("SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS");
    info.rank = env_int(getenv, "SLURM_PROCID");
    info.local_rank = env_int(getenv, "SLURM_LOCALID");
  } else if (getenv("PMI_SIZE") && getenv("PMI_RANK")) {
    // MPICH's or Intel MPI's mpiexec (Hydra). An Open MPI build started by it runs each task as a world of
    // one, which check_launcher reports.
    info.kind = LauncherKind::pmi;
    info.tasks = env_int(getenv, "PMI_SIZE");
    info.rank = env_int(getenv, "PMI_RANK");
    info.local_rank = env_int(getenv, "MPI_LOCALRANKID");
  } else if (getenv("SLURM_JOB_ID")) {
    // The batch script (or an salloc shell) itself: one process, whatever SLURM_NTASKS says the job has.
    info.kind = LauncherKind::slurm;
  }
  return info;
}

namespace {
const char* const kSrunWithoutPmi =
    "This is srun without PMI: each task would run MPI_Init alone and compute and write the whole problem. "
    "Launch with `srun --mpi=pmix ...` (see `srun --mpi=list`), or run `mpirun` inside the allocation.";
}  // namespace

void check_launcher_before_mpi(const LauncherInfo& launcher, const GetEnv& getenv) {
#ifdef OPEN_MPI
  if (launcher.kind == LauncherKind::pmi && launcher.tasks > 1) {
    // Open MPI does not speak Hydra's PMI: each task would be a world of one computing the whole problem.
    std::ostringstream message;
    message << "an MPICH-style mpiexec (PMI_SIZE=" << launcher.tasks << ") started this task, but longctx is "
            << "built with Open MPI; use Open MPI's mpirun, or rebuild against that MPI with jobs/build.sh.";
    throw UsageError(message.str());
  }
#endif
  if (launcher.kind != LauncherKind::slurm || launcher.tasks <= 1) return;  // one task needs no PMI
  for (const char* variable : {"PMIX_RANK", "PMIX_NAMESPACE", "PMI_RANK", "PMI_FD", "PMI_SIZE"})
    if (getenv(variable)) return;
  std::ostringstream message;
  message << "Slurm started " << launcher.tasks << " task(s) (this is task " << launcher.rank
          << ") without PMI or PMIx in the environment. " << kSrunWithoutPmi;
  throw UsageError(message.str());
}

void check_launcher(const LauncherInfo& launcher, int mpi_rank, int mpi_world_size) {
  if (launcher.kind == LauncherKind::none) return;
  if (launcher.tasks >= 0 && launcher.tasks != mpi_world_size) {
    std::ostringstream message;
    message << to_string(launcher.kind) << " started " << launcher.tasks << " tasks, but MPI sees a world of "
            << mpi_world_size << " in this one (rank " << mpi_rank << "). ";
    if (launcher.kind == LauncherKind::slurm)
      message << kSrunWithoutPmi;
    else
      message << "The binary is linked against a different MPI than the mpirun that started it; rebuild "
                 "with jobs/build.sh or use the matching mpirun.";
    throw UsageError(message.str());
  }
  if (launcher.rank >= 0 && launcher.rank != mpi_rank) {
    std::ostringstream message;
    message << to_string(launcher.kind) << " says this is rank " << launcher.rank << " but MPI says rank "
            << mpi_rank << "; the launcher and the MPI library disagree.";
    throw UsageError(message.str());
  }
}

ProcessContext::ProcessContext(int* argc, char*** argv) {
  launcher_ = detect_launcher(process_getenv);
  check_launcher_before_mpi(launcher_, process_getenv);
  int provided = 0;
  LONGCTX_CHECK_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  LONGCTX_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  LONGCTX_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &world_size_));
  char name[MPI_MAX_PROCESSOR_NAME];
  int length = 0;
  LONGCTX_CHECK_MPI(MPI_Get_processor_name(name, &length));
  host_.assign(name, static_cast<size_t>(length));
  set_process_identity(rank_, host_);

  MPI_Comm node = MPI_COMM_NULL;
  LONGCTX_CHECK_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
  LONGCTX_CHECK_MPI(MPI_Comm_rank(node, &local_rank_));
  LONGCTX_CHECK_MPI(MPI_Comm_size(node, &local_size_));
  LONGCTX_CHECK_MPI(MPI_Comm_free(&node));

  world_ = comm::make_mpi_world(600.0);
}

ProcessContext::~ProcessContext() {
  world_.reset();
  int finalized = 0;
  MPI_Finalized(&finalized);
  // main() met every rank just before (a timed barrier); one that stops right after it would still hold
  // the others in MPI_Finalize: the watchdog (armed for --comm-timeout) ends the job then.
  watchdog::Guard guard("MPI_Finalize at the end of the job");
  if (!finalized) MPI_Finalize();
}

void ProcessContext::abort(int code) {
  // No destructor runs after this, on any rank, and Open MPI may SIGKILL the rank that holds a claimed
  // temporary file before it handles its SIGTERM: this rank removes the job's claims first.
  io::remove_claims_before_abort();
  if (world_size_ > 1) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

std::string ProcessContext::device() const {
  const std::string gpu = cuda_device_label(local_rank_);
  return gpu.empty() ? "cpu" : gpu;
}

}  // namespace longctx
