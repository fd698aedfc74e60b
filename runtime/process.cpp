#include "runtime/process.hpp"

#include <mpi.h>
#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <bitset>
#include <cerrno>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "attention/cuda/cuda_attention.hpp"
#include "comm/mpi_communicator.hpp"
#include "io/atomic_output.hpp"
#include "runtime/core/check.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/watchdog.hpp"

namespace longctx {

void set_threads(unsigned long long threads, const std::string& given) {
  const int limit = omp_get_thread_limit();
  static std::set<std::string> said;  // (the options are read twice, in the config phase and the run)
  if (threads > static_cast<unsigned long long>(limit) && said.insert(given).second) {
    log::warn(given + " asks " + std::to_string(threads) + " threads of each rank, but OMP_THREAD_LIMIT=" +
              std::to_string(limit) + " caps OpenMP at " + std::to_string(limit) + ": this rank runs " +
              std::to_string(limit));
  }
  omp_set_num_threads(threads > static_cast<unsigned long long>(limit) ? limit : static_cast<int>(threads));
}

namespace {

constexpr size_t kMaskWords = CPU_SETSIZE / 64;

// The CPUs this process may run on, as words of bits; all zero when unknown.
std::vector<uint64_t> affinity_words() {
  std::vector<uint64_t> words(kMaskWords, 0);
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return words;
  for (size_t cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &set)) words[cpu / 64] |= uint64_t{1} << (cpu % 64);
  return words;
}

int bits_of(const uint64_t* words) {
  int count = 0;
  for (size_t w = 0; w < kMaskWords; ++w) count += __builtin_popcountll(words[w]);
  return count;
}

// Whether OpenMP takes OMP_NUM_THREADS: positive whole numbers, comma-separated (one per nesting level),
// blanks around them, each with an optional '+' (libgomp reads them with strtoul; before, '+4' was called
// invalid here and the rank ran its share of the CPUs, not 4). Anything else it ignores (libgomp prints
// "Invalid value" and runs a thread per CPU).
bool openmp_takes_threads(const std::string& text) {
  std::istringstream items(text);
  std::string item;
  int count = 0;
  while (std::getline(items, item, ',')) {
    const size_t first = item.find_first_not_of(" \t"), last = item.find_last_not_of(" \t");
    if (first == std::string::npos) return false;
    std::string digits = item.substr(first, last - first + 1);
    if (digits[0] == '+') digits.erase(0, 1);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos ||
        digits.find_first_not_of('0') == std::string::npos)
      return false;
    ++count;
  }
  return count > 0 && text.back() != ',';
}

// The first count of OMP_NUM_THREADS ("8" of "8,4") as written, past int as it may be (libgomp reads it as
// an unsigned long and keeps its low int: 4294967297 ran 1 thread); 0 where it is unsigned long's largest or
// past it, which libgomp refuses.
unsigned long long first_thread_count(const std::string& text) {
  errno = 0;
  const unsigned long long count = std::strtoull(text.c_str(), nullptr, 10);
  return errno == ERANGE || count >= std::numeric_limits<unsigned long>::max() ? 0 : count;  // (libgomp: ULONG_MAX too)
}

// Without OMP_NUM_THREADS, OpenMP gives each rank a thread per CPU it may run on, and ranks allowed on
// the same CPUs (mpirun --bind-to none, srun without binding) then ran k times as many threads as there
// were CPUs, taking turns on them (2 ranks on 2 cores: 4 threads, each step slower than with 2). Each
// rank takes its share instead: its CPUs over the ranks of its node allowed on any of them, at least 1.
// Collective over `node`; --threads / train.threads and OMP_NUM_THREADS still decide when given.
void share_cpus(MPI_Comm node) {
  const std::vector<uint64_t> mine = affinity_words();
  int ranks = 1;
  LONGCTX_CHECK_MPI(MPI_Comm_size(node, &ranks));
  std::vector<uint64_t> all(kMaskWords * static_cast<size_t>(ranks));
  LONGCTX_CHECK_MPI(MPI_Allgather(mine.data(), static_cast<int>(kMaskWords), MPI_UINT64_T, all.data(),
                                  static_cast<int>(kMaskWords), MPI_UINT64_T, node));
  const char* given = std::getenv("OMP_NUM_THREADS");
  // (Past unsigned long libgomp says "Invalid value" and ignores it: before, taken as given here, and the
  // rank ran a thread per CPU, not its share.)
  if (given && *given && (!openmp_takes_threads(given) || first_thread_count(given) == 0)) {
    log::warn("OMP_NUM_THREADS='" + std::string(given) + "' is no positive whole number, which OpenMP ignores: " +
              "this rank takes its share of the CPUs, as without it");
    given = nullptr;
  } else if (given && *given && first_thread_count(given) > static_cast<unsigned long long>(kMaxThreads)) {
    // As --threads allows (before: libgomp's 99999999999999 cut to int, 276447231 threads a rank, taken; and
    // 4294967297, whose int is 1, ran one thread without a word). Its count as written, not libgomp's int.
    // (Said by the OMP_THREAD_LIMIT warning below where that caps it lower.)
    if (omp_get_thread_limit() >= kMaxThreads)
      log::warn("OMP_NUM_THREADS='" + std::string(given) + "' asks " + std::to_string(first_thread_count(given)) +
                " threads of each rank, more than the " + std::to_string(kMaxThreads) +
                " --threads allows: this rank runs " + std::to_string(kMaxThreads));
    omp_set_num_threads(kMaxThreads);
  }
  // OMP_THREAD_LIMIT: what OpenMP runs at most, and so what the counts say (before: threads 2 printed and
  // planned for, 1 run). Said where OMP_NUM_THREADS asks more, with its count as written (before: 1024 for
  // 2000, once cut to --threads's most); the share below is cut to it without a word.
  if (given && *given && omp_get_max_threads() > omp_get_thread_limit())
    set_threads(first_thread_count(given), "OMP_NUM_THREADS='" + std::string(given) + "'");
  const int cpus = bits_of(mine.data());
  if ((given && *given) || cpus == 0) return;
  int sharing = 0;
  for (int r = 0; r < ranks; ++r) {
    bool overlaps = false;
    for (size_t w = 0; w < kMaskWords; ++w) overlaps = overlaps || (all[r * kMaskWords + w] & mine[w]) != 0;
    sharing += overlaps ? 1 : 0;
  }
  const int share = std::max(1, cpus / std::max(1, sharing));
  omp_set_num_threads(std::min(share, omp_get_thread_limit()));
}

// A watchdog's end where MPI_Abort cannot serve (before MPI_Init; inside MPI_Finalize, which it could crash):
// this process says so, `note` after the message, and exits 1; the launcher ends the job.
std::function<void(const std::string&)> say_and_exit(const std::string& note) {
  return [note](const std::string& message) {
    log::error(message + note);
    std::fflush(nullptr);
    std::_Exit(static_cast<int>(ExitCode::internal));
  };
}

// What sets the start-up's timeout, for the watchdog's message: its value as set (before: "600 s" where
// LONGCTX_FAULT_STARTUP_TIMEOUT had set another; from the regression audit).
std::string startup_set_by(double seconds) {
  std::ostringstream text;
  text << "at start-up, before the options are read, " << seconds << " s, whatever --comm-timeout says";
  return text.str();
}

// The timeout of MPI_Init and the start-up's collectives, before the options are read (so --comm-timeout,
// which may come from a config file, is not known yet): 600 s; LONGCTX_FAULT_STARTUP_TIMEOUT, a positive
// number of seconds, for the test of a rank stopped there (before: LONGCTX_COMM_TIMEOUT, which a
// --comm-timeout of higher precedence could not override; from the regression audit).
double startup_timeout() {
  const char* text = std::getenv("LONGCTX_FAULT_STARTUP_TIMEOUT");
  if (!text || !*text) return 600.0;
  char* end = nullptr;
  errno = 0;
  const double seconds = std::strtod(text, &end);
  return errno == 0 && end != text && *end == '\0' && std::isfinite(seconds) && seconds > 0 ? seconds : 600.0;
}

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

// The variable that says the tasks of this srun step: the step's count where srun set it, else the job's.
const char* step_tasks_variable(const GetEnv& getenv) {
  return getenv("SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS";
}

// The tasks of this srun step (-1 when unknown).
int step_tasks(const GetEnv& getenv) { return env_int(getenv, step_tasks_variable(getenv)); }

// An MPICH / Intel MPI mpiexec (Hydra) run inside an srun step (`srun --pty bash`, then `mpiexec -n 4`):
// its PMI_SIZE / PMI_RANK disagree with the step's task count / SLURM_PROCID, where srun --mpi=pmi2's agree.
// Hydra is the launcher then (before, each of its tasks passed for the step's one task).
bool hydra_inside_step(const GetEnv& getenv) {
  if (!getenv("PMI_SIZE") || !getenv("PMI_RANK")) return false;
  return env_int(getenv, "PMI_SIZE") != step_tasks(getenv) ||
         env_int(getenv, "PMI_RANK") != env_int(getenv, "SLURM_PROCID");
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

void terminate_in_parallel_if_named(const char* variable, int rank) {
  const auto named = process_getenv(variable);
  if (!named || *named != std::to_string(rank)) return;
  // From the region's last thread: a worker where OpenMP gives it two, as where a kernel's allocation fails.
#pragma omp parallel num_threads(2)
  {
    if (omp_get_thread_num() == omp_get_num_threads() - 1)
      throw std::runtime_error("injected exception in an OpenMP region on rank " + *named + " (" + variable + ")");
  }
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
  // The value of `name`, at least `least`; one that is set (not empty) but is not is recorded as invalid.
  const auto read = [&](const std::string& name, int least) {
    const int value = env_int(getenv, name);
    const auto text = getenv(name);
    if (text && !text->empty() && value < least && info.invalid.empty()) info.invalid = name + "='" + *text + "'";
    return value;
  };
  // Set and not empty: an empty variable counts as unset, as everywhere (before: OMPI_COMM_WORLD_SIZE= made a
  // plain run "launcher Open MPI"; from the launch audit).
  const auto set = [&](const char* name) {
    const auto value = getenv(name);
    return value && !value->empty();
  };
  if (set("OMPI_COMM_WORLD_SIZE")) {
    info.kind = LauncherKind::open_mpi;
    info.tasks = read("OMPI_COMM_WORLD_SIZE", 1);
    info.rank = read("OMPI_COMM_WORLD_RANK", 0);
    info.local_rank = read("OMPI_COMM_WORLD_LOCAL_RANK", 0);
  } else if (set("SLURM_PROCID") && (set("SLURM_STEP_ID") || set("SLURM_STEPID")) &&
             (set("SLURM_STEP_NUM_TASKS") || set("SLURM_NTASKS")) && !hydra_inside_step(getenv)) {
    // A task of an srun job step.
    info.kind = LauncherKind::slurm;
    info.tasks = read(step_tasks_variable(getenv), 1);
    info.rank = read("SLURM_PROCID", 0);
    info.local_rank = read("SLURM_LOCALID", 0);
  } else if (set("PMI_SIZE") && set("PMI_RANK")) {
    // MPICH's or Intel MPI's mpiexec (Hydra). An Open MPI build started by it runs each task as a world of
    // one, which check_launcher reports.
    info.kind = LauncherKind::pmi;
    info.tasks = read("PMI_SIZE", 1);
    info.rank = read("PMI_RANK", 0);
    info.local_rank = read("MPI_LOCALRANKID", 0);
  } else if (set("SLURM_JOB_ID")) {
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

std::optional<bool> open_mpi_speaks_pmi() {
#if defined(OPEN_MPI) && OMPI_MAJOR_VERSION >= 5
  return false;
#elif defined(OPEN_MPI)
  // Open MPI's tool interface, which may start before MPI_Init, lists every component's variables: those
  // of its PMI framework's components are named pmix_<component>_... (ext3x: PMIx).
  int provided = 0, count = 0;
  if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS) return std::nullopt;
  bool components = false, pmi = false;
  if (MPI_T_cvar_get_num(&count) == MPI_SUCCESS) {
    for (int i = 0; i < count; ++i) {
      char name[256] = {}, description[8] = {};
      int name_length = sizeof name, description_length = sizeof description, verbosity = 0, bind = 0, scope = 0;
      MPI_Datatype type = MPI_DATATYPE_NULL;
      MPI_T_enum enumtype = MPI_T_ENUM_NULL;
      if (MPI_T_cvar_get_info(i, name, &name_length, &verbosity, &type, &enumtype, description, &description_length,
                              &bind, &scope) != MPI_SUCCESS)
        continue;
      const std::string variable = name;
      if (variable.rfind("pmix_", 0) != 0) continue;
      components = components || variable.rfind("pmix_ext", 0) == 0 || variable.rfind("pmix_pmix", 0) == 0;
      pmi = pmi || variable.rfind("pmix_s1_", 0) == 0 || variable.rfind("pmix_s2_", 0) == 0;
    }
  }
  // No MPI_T_finalize: MPI_Init follows, and Open MPI 4.1 releases without open-mpi/ompi#10409 crash in
  // MPI_Init after MPI_T_init_thread + MPI_T_finalize where they have UCX. The tool interface stays
  // open for the process's life, which MPI allows.
  if (pmi) return true;
  if (components) return false;
  return std::nullopt;
#else
  return std::nullopt;
#endif
}

std::vector<std::string> check_launcher_before_mpi(const LauncherInfo& launcher, const GetEnv& getenv,
                                                   const std::function<std::optional<bool>()>& mpi_speaks_pmi) {
  if (!launcher.invalid.empty())
    throw UsageError(to_string(launcher.kind) + "'s " + launcher.invalid +
                     " is no whole number of tasks or rank (tasks >= 1, ranks >= 0); the launcher sets it: one set by "
                     "hand, or left over from another job?");
#ifdef OPEN_MPI
  if (launcher.kind == LauncherKind::pmi && launcher.tasks > 1) {
    // Open MPI does not speak Hydra's PMI: each task would be a world of one computing the whole problem.
    std::ostringstream message;
    message << "an MPICH-style mpiexec (PMI_SIZE=" << launcher.tasks << ") started this task, but longctx is "
            << "built with Open MPI; use Open MPI's mpirun, or rebuild against that MPI with jobs/build.sh.";
    throw UsageError(message.str());
  }
#endif
  if (launcher.kind != LauncherKind::slurm || launcher.tasks < 1) return {};  // not srun (the batch script)
  const auto any_set = [&](std::initializer_list<const char*> variables) {
    for (const char* variable : variables)
      if (getenv(variable)) return true;
    return false;
  };
  if (any_set({"PMIX_RANK", "PMIX_NAMESPACE"})) return {};
  // srun --mpi=pmi2: PMI-2, which Open MPI 4 reads only when built --with-pmi (its s1 / s2 components;
  // Debian's has none) and Open MPI 5 never. Unknown (components built in): let MPI_Init try.
  const bool pmi = any_set({"PMI_RANK", "PMI_FD", "PMI_SIZE"});
#ifdef OPEN_MPI
  const bool usable_pmi = pmi && mpi_speaks_pmi().value_or(true);
#else
  const bool usable_pmi = pmi;
  (void)mpi_speaks_pmi;
#endif
  if (usable_pmi) return {};
  if (launcher.tasks == 1) {
    // One task needs no PMI, as in the batch script. But Open MPI 4.1 takes a Slurm step (SLURM_STEP_ID
    // beside SLURM_NODELIST) that gave it no PMIx for a broken build and refuses to start ("OMPI was not
    // built with SLURM's PMI support"; srun -n 1 under MpiDefault=none): hidden from it, it starts as a
    // world of one. The launcher was read before.
#ifdef OPEN_MPI
    return {"SLURM_STEP_ID"};
#else
    return {};
#endif
  }
  std::ostringstream message;
  message << "Slurm started " << launcher.tasks << " task(s) (this is task " << launcher.rank << ") ";
  if (pmi)
    message << "with PMI-2 (srun --mpi=pmi2), which this Open MPI cannot use: it speaks PMIx only (it has no "
               "PMI-1/2 component, mca_pmix_s1 / s2), and MPI_Init would fail. Launch with `srun --mpi=pmix "
               "...` (see `srun --mpi=list`), or run `mpirun` inside the allocation.";
  else
    message << "without PMI or PMIx in the environment. " << kSrunWithoutPmi;
  throw UsageError(message.str());
}

void check_launcher(const LauncherInfo& launcher, int mpi_rank, int mpi_world_size) {
  if (launcher.kind == LauncherKind::none) return;
  if (launcher.tasks >= 0 && launcher.tasks != mpi_world_size) {
    std::ostringstream message;
    message << to_string(launcher.kind) << " started " << launcher.tasks << " tasks, but MPI sees a world of "
            << mpi_world_size << " in this one (rank " << mpi_rank << "). ";
    if (launcher.kind == LauncherKind::slurm) {
      message << kSrunWithoutPmi;
    } else {
      message << "The binary is linked against a different MPI than the mpirun that started it (rebuild with "
                 "jobs/build.sh, or use the matching mpirun)";
      // A world of one: also no launcher at all, its variables inherited (before: the rebuild alone was
      // suggested for a stale OMPI_COMM_WORLD_SIZE; from the launch audit).
      if (mpi_world_size == 1)
        message << ", or no launcher started it and "
                << (launcher.kind == LauncherKind::open_mpi ? "OMPI_COMM_WORLD_SIZE" : "PMI_SIZE")
                << " is left over from another job or set by hand (unset it)";
      message << ".";
    }
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
  for (const std::string& variable : check_launcher_before_mpi(launcher_, process_getenv)) unsetenv(variable.c_str());
  // MPI_Init meets the job's tasks (PMIx's fence): one that exited before it or is stopped held the others
  // there for good (before: documented as a window). Under the watchdog, for the start-up's timeout: each
  // waiting task says so and exits 1 (MPI_Abort needs MPI), and the launcher ends the job.
  const double startup = startup_timeout();
  if (launcher_.tasks > 1) watchdog::arm(startup, say_and_exit(""), startup_set_by(startup));
  int provided = 0;
  {
    const std::string task = launcher_.rank >= 0 ? std::to_string(launcher_.rank) + " " : std::string();
    const watchdog::Guard guard("MPI_Init on " + to_string(launcher_.kind) + "'s task " + task + "of " +
                                std::to_string(launcher_.tasks) +
                                " (a task of the job that exited before MPI_Init or is stopped keeps the others "
                                "there)");
    LONGCTX_CHECK_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  }
  LONGCTX_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  LONGCTX_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &world_size_));
  char name[MPI_MAX_PROCESSOR_NAME];
  int length = 0;
  LONGCTX_CHECK_MPI(MPI_Get_processor_name(name, &length));
  host_.assign(name, static_cast<size_t>(length));
  set_process_identity(rank_, host_);

  // The node's ranks and their CPUs: collectives with no timeout of their own, under the watchdog, which
  // main arms again with --comm-timeout once the options are read (before: a rank stopped here held the
  // others for good; from the launch audit).
  if (world_size_ > 1)
    watchdog::arm(
        startup,
        [this](const std::string& message) {
          log::error(message);
          abort(static_cast<int>(ExitCode::internal));
        },
        startup_set_by(startup));
  else
    watchdog::disarm();  // a launcher's task count that MPI does not see: check_launcher says so
  MPI_Comm node = MPI_COMM_NULL;
  {
    const watchdog::Guard guard("the start-up (the ranks of each node and their CPUs: MPI_Comm_split_type, "
                                "MPI_Allgather, MPI_Allreduce)");
    LONGCTX_CHECK_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
    LONGCTX_CHECK_MPI(MPI_Comm_rank(node, &local_rank_));
    LONGCTX_CHECK_MPI(MPI_Comm_size(node, &local_size_));
    share_cpus(node);
    LONGCTX_CHECK_MPI(MPI_Allreduce(&rank_, &node_leader_, 1, MPI_INT, MPI_MIN, node));
  }
  LONGCTX_CHECK_MPI(MPI_Comm_free(&node));

  world_ = comm::make_mpi_world(startup);
}

ProcessContext::~ProcessContext() {
  const double timeout = world_ ? world_->timeout_seconds() : 0;
  world_.reset();
  int finalized = 0;
  MPI_Finalized(&finalized);
  // main() met every rank just before (a timed barrier); one that stops right after it would still hold
  // the others in MPI_Finalize: the watchdog ends the job then, after --comm-timeout. Not with MPI_Abort,
  // which MPI_Finalize under way on this rank's own thread could crash (a segfault in 1 of 4 runs of the
  // hang audit): this rank says so and exits 1, and the launcher ends the job.
  if (world_size_ > 1 && timeout > 0) watchdog::arm(timeout, say_and_exit(" (this rank's work is done)"));
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

int allowed_cpus() { return bits_of(affinity_words().data()); }

std::string oversubscription_warning(ProcessContext& process, const std::string& threads_option) {
  comm::Communicator& world = process.world();
  // Per rank: its node (its leader's world rank: host names may repeat, in containers), its threads, and
  // the CPUs it may run on, as mask words.
  constexpr size_t kFields = 2 + kMaskWords;
  std::vector<uint64_t> mine{static_cast<uint64_t>(process.node_leader()), static_cast<uint64_t>(omp_get_max_threads())};
  const std::vector<uint64_t> mask = affinity_words();
  mine.insert(mine.end(), mask.begin(), mask.end());
  const int P = world.size();
  std::vector<uint64_t> all(kFields * static_cast<size_t>(P));
  world.all_gather(Span<const uint64_t>(mine), Span<uint64_t>(all));
  if (world.rank() != 0) return "";

  struct Node {
    int ranks = 0;
    uint64_t threads = 0;
    std::bitset<CPU_SETSIZE> cpus;
    int crowded_rank = -1;  // a rank with more threads than its own mask
  };
  std::map<uint64_t, Node> nodes;
  for (int r = 0; r < P; ++r) {
    const uint64_t* f = all.data() + static_cast<size_t>(r) * kFields;
    Node& node = nodes[f[0]];
    std::bitset<CPU_SETSIZE> own;
    for (size_t w = 0; w < kMaskWords; ++w) own |= std::bitset<CPU_SETSIZE>(f[2 + w]) << (64 * w);
    if (own.none()) return "";  // a rank that could not tell: no claim either way
    node.ranks += 1;
    node.threads += f[1];
    node.cpus |= own;
    if (f[1] > own.count() && node.crowded_rank < 0) node.crowded_rank = r;
  }
  std::string first, advice;
  int crowded = 0;
  for (const auto& [leader, node] : nodes) {
    const std::string where = leader == 0 ? process.host() : "the node of rank " + std::to_string(leader);
    const size_t cpus = node.cpus.count(), ranks = static_cast<size_t>(node.ranks);
    std::string what, fix;
    if (node.threads > cpus) {
      what = std::to_string(ranks) + " rank(s) on " + where + " run " + std::to_string(node.threads) +
             " OpenMP threads on " + std::to_string(cpus) + " CPU(s)";
      fix = ranks > cpus ? "run at most " + std::to_string(cpus) + " rank(s) there"
                         : "give each rank at most " + std::to_string(cpus / ranks) +
                               " thread(s) (" + (threads_option.empty() ? "" : threads_option + ", ") +
                               "OMP_NUM_THREADS)";
    } else if (node.crowded_rank >= 0) {  // the node has room, but not where the rank may run
      what = "rank " + std::to_string(node.crowded_rank) + " on " + where + " runs more OpenMP threads than the " +
             "CPUs it is bound to";
      fix = "bind each rank to as many cores as it runs threads (mpirun --map-by slot:PE=T --bind-to core, srun "
            "--cpus-per-task=T), or give it fewer threads";
    }
    if (what.empty()) continue;
    if (crowded++ > 0) continue;
    first = what;
    advice = fix;
  }
  if (crowded == 0) return "";
  return first + (crowded > 1 ? " (and " + std::to_string(crowded - 1) + " more node(s) alike)" : "") +
         ": they take turns on the cores, so timings understate the hardware; " + advice;
}

std::string ProcessContext::device() const {
  const std::string gpu = cuda_device_label(local_rank_);
  return gpu.empty() ? "cpu" : gpu;
}

}  // namespace longctx
