// `longctx train` (interfaces.md): the sequence-parallel LongNet trainer. Every rank holds N / P rows of
// the one training sequence; see runtime/train/trainer.hpp for the per-step protocol.
//
// Order of a run: validate every option (exit 2 naming the value) and the data (exit 2/3) -> resume from
// <checkpoint.dir>/latest if there is one (exit 3 on a mismatching checkpoint) -> steps. After each step
// (numbered from 1): activation dump, eval, log line + log.jsonl (rank 0), checkpoint. SIGUSR1/SIGTERM (and
// SIGINT/SIGHUP, where not ignored) set a flag; ranks agree on it inside the step's stats all-reduce (also
// after a dump's or a checkpoint's write, and after each evaluation sequence), finish the step, checkpoint
// (an interrupted evaluation pending) and exit 75.
#include <omp.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "attention/cuda/cuda_attention.hpp"
#include "io/activation_dump.hpp"
#include "io/atomic_output.hpp"
#include "io/checkpoint.hpp"
#include "io/durable.hpp"
#include "runtime/commands/commands.hpp"
#include "runtime/commands/train_options.hpp"
#include "runtime/commands/train_record.hpp"
#include "runtime/commands/train_resume.hpp"
#include "runtime/core/activity.hpp"
#include "runtime/core/heartbeat.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/stop_point.hpp"
#include "runtime/train/checkpoint_dir_lock.hpp"
#include "runtime/train/fault_injection.hpp"
#include "runtime/train/json_log.hpp"
#include "runtime/train/train_state_io.hpp"

namespace longctx::cli {
namespace {

// The first stop signal's number once one arrived (the one the run stops on and its summary names). Lock-free
// atomics: the handler may run on any thread (MPI's and PMIx's threads inherit the unblocked mask), while
// the step loop reads it.
std::atomic<int> g_stop_requested{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free flag");
// Every signal the handler has seen, a bit each: a SIGINT or SIGHUP seen before, whatever came between
// (Ctrl-C, Slurm's SIGTERM, Ctrl-C), ends the process at once.
std::atomic<uint32_t> g_signals_seen{0};
static_assert(std::atomic<uint32_t>::is_always_lock_free, "the signal handler needs a lock-free mask");
// Set once the run's work begins (the pending evaluation or the first step): before, a SIGINT or SIGHUP
// ends the process at once (nothing of this run to save; a step and a checkpoint would only delay it).
std::atomic<bool> g_working{false};
// Rank 0 says at once that a SIGINT or SIGHUP is taken (Ctrl-C at a terminal: the step may take minutes).
std::atomic<bool> g_says_interrupts{false};
// Set once the run's outcome is settled (its work returned or failed: the checkpoint committed, the code
// known, the summary next): a SIGINT or SIGHUP after it, the same again included, is ignored, as the process
// is ending with that code (before: a second one then ended it by the signal, 130 where log.summary said 75,
// and a requeue wrapper took the job for cancelled; from the signals audit).
std::atomic<bool> g_settled{false};

// SIGINT (Ctrl-C; srun passes it on at a second one, then SIGTERM) and SIGHUP (a terminal closed) stop the
// run as SIGTERM does (before: they ended it at once, the steps since the last checkpoint and the
// log.summary lost). The same one again (whatever came between), or one before the run began its work, ends
// the process as it would have without the handler: its claimed .tmp files removed, then the signal's
// default; one once the run's outcome is settled (g_settled) is ignored. Async-signal-safe: atomics, write(2)
// (errno kept), sigaction, raise.
extern "C" void request_stop(int signal) {
  const int saved_errno = errno;
  const uint32_t bit = signal > 0 && signal < 32 ? uint32_t{1} << signal : 0;
  const uint32_t seen = g_signals_seen.fetch_or(bit, std::memory_order_relaxed);
  const bool interrupt = signal == SIGINT || signal == SIGHUP;
  if (interrupt && g_settled.load(std::memory_order_relaxed)) {
    errno = saved_errno;
    return;
  }
  if (interrupt && ((seen & bit) != 0 || !g_working.load(std::memory_order_relaxed))) {
    io::remove_claims_and_reraise(signal);
    errno = saved_errno;
    return;
  }
  int none = 0;
  const bool first = g_stop_requested.compare_exchange_strong(none, signal, std::memory_order_relaxed);
  if (interrupt && first && g_says_interrupts.load(std::memory_order_relaxed)) {
    static const char kSaid[] =
        "longctx: stopping after this step, with a checkpoint where checkpoint.dir is set (the signal again "
        "stops now, losing the steps since the last checkpoint)\n";
    [[maybe_unused]] const ssize_t written = ::write(STDERR_FILENO, kSaid, sizeof kSaid - 1);
  }
  errno = saved_errno;
}


// FLOPs of one training step (forward + backward) of the whole job: dense matmuls plus attention pairs.
double step_flops(const model::ModelConfig& m, int64_t n) {
  const double pairs = count_pairs(m.schedule, n, m.heads, true, HeadOffsets::paper);
  const double attention = double(m.layers) * (flops_forward(pairs, m.head_dim()) + flops_backward(pairs, m.head_dim()));
  return model::dense_flops_per_token(m) * double(n) + attention;
}

// This rank's rows of the q, k, v and o of each of dump.layers, at `step`, into the dump (global shape [N, H, D]).
void dump_layers(io::ActivationDump& dump, model::Model& model, const TrainOptions& r, int64_t step,
                 io::RowRange rows) {
  const auto& m = model.config();
  for (int64_t layer : r.dump_layers)
    for (const char* name : {"q", "k", "v", "o"}) {
      Tensor block = model.layer_tensor(layer, name);
      block.reshape({rows.rows(), m.heads, m.head_dim()});
      dump.write(step, layer, name, {r.trainer.seq_len, m.heads, m.head_dim()}, rows, block);
    }
}

// eval.sequences, or fewer: evaluation reads each distinct sequence once, and a token file may hold out
// fewer. Warns where it does (once), and where the file holds out none at all.
int64_t sequences_to_evaluate(const TrainOptions& r, const train::Dataset& data) {
  int64_t eval_sequences = r.eval_sequences;
  if (const int64_t distinct = data.eval_sequence_count(); distinct > 0 && distinct < eval_sequences) {
    if (!data.evaluates_on_training_data())  // else the warning below says it
      log::warn_once("eval.sequences=" + std::to_string(eval_sequences) + ", but data.path=" + r.data.path +
                     " holds out " + (distinct == 1 ? "only 1 sequence: each evaluation scores it"
                                                    : count_of(distinct, "sequence") + ": each evaluation scores those " +
                                                          std::to_string(distinct)));
    eval_sequences = distinct;
  }
  if (data.evaluates_on_training_data())
    log::warn_once("data.path=" + r.data.path + " holds a single sequence of data.seq_len + 1 tokens, so none is "
                   "held out: eval_loss / eval_accuracy are measured on the training sequence");
  return eval_sequences;
}

// A token file split at another data.seq_len, whose held-out tail holds tokens the checkpoint's run trained
// on (trained_token_in_held_out): said.
void warn_if_evaluating_trained_tokens(const TrainOptions& r, const train::Resumed& stored, const train::Dataset& data) {
  const int64_t reached = trained_token_in_held_out(r.data, stored, data);
  if (reached >= 0)
    log::warn_once("data.seq_len=" + std::to_string(r.trainer.seq_len) +
                   (stored.data_seq_len == r.trainer.seq_len
                        ? std::string()
                        : " after a checkpoint trained at data.seq_len=" + std::to_string(stored.data_seq_len)) +
                   ": evaluation scores the tokens of data.path=" + r.data.path +
                   " from " + std::to_string(data.held_out_begin() + 1) + " on, but " + trained_by(stored, reached) +
                   " trained on tokens up to " + std::to_string(reached) +
                   ", so eval_loss / eval_accuracy are measured "
                   "partly on training data. A length curriculum in one run (data.short_seq_len, data.short_steps) "
                   "trains its shorter stages only before data.seq_len's held-out tail");
}

// The run's first line (rank 0): model, schedule, N over the ranks, FLOPs per step, the run id, the curriculum.
void print_run_header(const TrainOptions& r, int64_t parameters, int P, const std::string& run_id,
                      const std::string& peak) {
  const size_t stages = r.stage_len.size();
  std::ostringstream head;
  head << "train: " << count_of(r.trainer.model.layers, "layer") << ", dim " << r.trainer.model.dim << ", "
       << count_of(r.trainer.model.heads, "head") << ", " << parameters << " parameters, schedule "
       << to_string(r.trainer.model.schedule) << ", N = " << r.trainer.seq_len << " over " << count_of(P, "rank") << " ("
       << r.trainer.seq_len / P << " rows each), " << step_flops(r.trainer.model, r.trainer.seq_len) / 1e9
       << " GFLOP/step, MFU peak " << peak << "; run "
       << (run_id.empty() ? "without an id (its checkpoint predates them)" : run_id);
  for (size_t i = 0; i < stages; ++i)
    head << (i == 0 ? "; curriculum: N = " : ", N = ") << r.stage_len[i] << " until step " << r.stage_end[i];
  log::info(head.str());
}

// A step's log.jsonl fields (interfaces.md's and more), without the closing brace: its evaluation's fields
// and the run id follow.
std::string step_log_fields(int64_t step, const train::StepStats& stats, double tokens_per_s, double seconds,
                            double mfu, int64_t seq_len, int world_size) {
  return "{\"step\": " + std::to_string(step) + ", \"loss\": " + train::json_number(stats.loss) +
         ", \"tokens_per_s\": " + train::json_number(tokens_per_s) + ", \"seconds\": " + train::json_number(seconds) +
         ", \"lr\": " + train::json_number(stats.lr) + ", \"grad_norm\": " + train::json_number(stats.grad_norm) +
         ", \"mfu\": " + train::json_number(mfu) + ", \"seq_len\": " + std::to_string(seq_len) +
         ", \"world_size\": " + std::to_string(world_size);
}

// The last line of a run that a signal stopped after its checkpoint was committed (exit 75). The run cannot
// tell a scheduler's requeue or time limit from a cancel, so it says what any next run does (before:
// "requeue me", also on a scancel that ends the job).
std::string stopped_line(int signal, const std::string& when) {
  return "stopped on " + signal_name(signal) + " " + when +
         " (exit 75: a requeued job, or any later run with this checkpoint.dir, resumes from it)";
}

int train_run(Invocation& inv, RunRecord& record) {
  comm::Communicator& world = inv.process.world();
  const int P = world.size(), rank = world.rank();
  g_says_interrupts.store(rank == 0, std::memory_order_relaxed);
  const DeviceChoice device = attention_device(inv);  // --device / --dtype / --comm, before anything else
  const TrainOptions r = validate_train_options(inv, P);
  record.path = r.summary_path;
  record.train_steps = r.steps;
  const std::optional<train::NanGradientFault> nan_fault = train::nan_gradient_fault(P);
  const std::optional<train::SignalFault> signal_fault = train::signal_fault_at();
  // The fault above, where it applies: rank 0, in the checkpoint, dump or eval of `step`.
  const auto signal_if_faulted = [&](const char* at, int64_t step) {
    if (signal_fault && rank == 0 && signal_fault->at == at && signal_fault->step == step) std::raise(SIGUSR1);
  };
  const auto data = train::make_dataset(r.data);
  const int64_t eval_sequences = sequences_to_evaluate(r, *data);
  const MPI_Comm mpi = P > 1 ? mpi_handle(world) : MPI_COMM_NULL;
  const std::string config_text = train_config_text(inv);

  // Made before any file is touched.
  const TrainAttention attention = make_train_attention(inv, r, device, "train.threads");
  train::Trainer trainer(r.trainer, world, *attention.impl);
  // Length curriculum: the trainer runs each shorter stage's steps at that stage's length (set_seq_len) and
  // evaluates at data.seq_len. (One trainer per stage held a copy of the parameters, gradients and AdamW
  // moments each, and copied the state at each switch and evaluation.)
  const size_t stages = r.stage_len.size();
  const std::vector<std::unique_ptr<train::Dataset>> stage_data = curriculum_datasets(r);
  if (nan_fault && nan_fault->rank == rank) {
    const auto poison = [step = nan_fault->step](int64_t at, Span<float> gradient) {
      if (at == step && gradient.size() > 0) gradient[0] = std::numeric_limits<float>::quiet_NaN();
    };
    trainer.set_local_gradient_hook(poison);
  }
  // Rank 0's line while one piece of work (a training step, an evaluation, a checkpoint, a resume) runs
  // a period or longer: a step at a length of millions of tokens takes minutes, log.every steps more.
  const Heartbeat alive = activity_heartbeat(rank == 0);
  const StartingPoint start = start_from_checkpoint_dir(r, trainer, *data, config_text, mpi, P, record);
  const bool resumed = start.resumed, new_data_file = start.new_data_file;
  const std::optional<io::TokenIdentity>& data_file = start.data_file;
  const train::Resumed& stored = start.stored;
  // Which run this is (its log.jsonl lines and activation dump say so): a new one, or the checkpoint's. One
  // resumed from a checkpoint written before runs had ids stays a run without one ("", also in the
  // checkpoints it writes), whose lines a resume finds as before: a new id at each resume would make
  // each attempt's lines another run's, never dropped.
  std::string run_id;
  if (!resumed)
    run_id = train::new_run_id(mpi, rank);
  else if (train::valid_run_id(stored.run_id))
    run_id = stored.run_id;
  else if (!stored.run_id.empty())
    log::warn_once("the checkpoint's run_id attribute is not 1-32 hex digits: this run goes on without an id");
  const int64_t first_step = trainer.step();  // 0, or the checkpoint's
  record.first_step = record.step = first_step;
  record.run_id = run_id;
  stop_here_if_set("LONGCTX_FAULT_STOP_BEFORE_WORK");  // a test signals it before its work begins
  g_working.store(true, std::memory_order_relaxed);  // from here a SIGINT / SIGHUP stops after the step
  // Tokens trained on through `step`: the checkpoint's count, then this run's lengths. (Counting every step
  // at this run's lengths was wrong after a resume at another data.seq_len.)
  const auto tokens_seen = [&](int64_t step) { return stored.tokens_seen + r.tokens_through(step) - r.tokens_through(first_step); };
  size_t stage = r.stage_of(trainer.step());
  trainer.set_seq_len(r.length_of(stage));
  // The data the current stage trains on (data.seq_len's past the curriculum).
  const auto source = [&]() -> const train::Dataset& { return stage < stages ? *stage_data[stage] : *data; };
  // Where the next step's data starts: the checkpoint's, or for one written before checkpoints held it,
  // where that run would have gone on (window `step` at this length).
  train::DataPosition position = source().position_of_step(trainer.step());
  if (stored.position) {
    position = *stored.position;
    if (new_data_file) {
      position.token = 0;  // (said at the resume)
    } else if (const std::string problem = source().position_problem(position); !problem.empty()) {
      log::warn_once(problem);  // every rank finds it alike
      position.token = 0;
    }
  }

  if (resumed && !new_data_file) warn_if_evaluating_trained_tokens(r, stored, *data);
  // What its checkpoints record of the token file: which it is, and since when (in tokens_seen) it is trained on.
  std::optional<train::DataFileRecord> data_record;
  if (data_file) {
    data_record = train::DataFileRecord{*data_file, new_data_file       ? stored.tokens_seen
                                                    : stored.data_file ? stored.data_file->tokens_before
                                                                       : 0};
    // And the last token of it trained on before this run, at every length (before: the checkpoint recorded
    // only its own run's length, so after a resume at a longer one, eval and later resumes no longer said
    // that the longer length's held-out tail held tokens trained on; from the own-data journey audit).
    if (resumed && !new_data_file) data_record->reached_before = trained_token_in_history(r.data, stored);
  }
  // A resume from a checkpoint whose evaluation is pending writes that step's line again (an earlier resume
  // that wrote it may have stopped before its next checkpoint).
  const int64_t kept_through = !resumed ? -1 : stored.pending_eval ? trainer.step() - 1 : trainer.step();
  train::JsonLog jsonl(r.log_jsonl, rank == 0, kept_through, r.checkpoint_dir, run_id);
  // A fresh run's note of where its log lines start is for a restart before its first checkpoint; a resume
  // trims by step. One left by a run whose first checkpoint was committed but not named in `latest` (a full
  // disk) goes now (before: it stayed in checkpoint.dir for good; from an audit).
  if (resumed && rank == 0) std::remove(train::log_start_path(r.checkpoint_dir).c_str());
  warn_if_warmup_outlasts(inv, r, trainer.step());
  // Of an earlier dump of this run, the steps and layers this run dumps (dump.steps, dump.layers).
  const auto dumped = [&r](int64_t step, int64_t layer) { return r.dump_steps.count(step) && r.dump_layers.count(layer); };
  // A dump step after `step` that this run dumps: past the curriculum's short stages (their rows are not
  // data.seq_len's) and within train.steps. Before: any later step, so a run whose dump.steps all came after
  // train.steps, or in a short stage, which it warns are never dumped, still wrote a dump file holding nothing.
  const auto dumps_after = [&r](int64_t step) {
    const int64_t short_stages_end = r.stage_end.empty() ? 0 : r.stage_end.back();
    const auto next = r.dump_steps.upper_bound(std::max(step, short_stages_end));
    return next != r.dump_steps.end() && *next <= r.steps;
  };
  // A resumed run also rewrites a dump that may hold steps past its checkpoint (of a run rolled back by hand,
  // or stopped between its dump and its checkpoint), which drops them, whether or not it dumps more itself:
  // those its dump.steps name, and those the file holds (rank 0 looks), which a rolled-back run's dump.steps
  // may not (before: with dump.steps 3 after a run that dumped 3 and 8, step 8 of the abandoned run stayed).
  int64_t stale_dump = resumed && !r.dump_steps.empty() && *r.dump_steps.rbegin() > trainer.step();
  if (resumed && !r.dump_path.empty()) {
    if (rank == 0) stale_dump = stale_dump || io::ActivationDump::last_step(r.dump_path, run_id) > trainer.step();
    if (P > 1) world.broadcast(Span<int64_t>(&stale_dump, 1), 0);
  }
  std::unique_ptr<io::ActivationDump> dump;
  if (!r.dump_path.empty() && (dumps_after(trainer.step()) || stale_dump))
    dump = std::make_unique<io::ActivationDump>(r.dump_path, mpi, trainer.step(), run_id, dumped);
  // dump.steps the checkpoint's step has passed are not trained again: said, as those past train.steps are
  // (before: skipped without a word; from the dumps audit).
  if (resumed && !r.dump_path.empty()) {
    std::string passed;
    for (const int64_t s : r.dump_steps)
      if (s <= trainer.step()) passed += (passed.empty() ? "" : ",") + std::to_string(s);
    if (!passed.empty())
      log::warn_once("dump.steps: step(s) " + passed + " come at or before step " + std::to_string(trainer.step()) +
                     ", where this run resumes from its checkpoint: this run does not dump them (its dump keeps "
                     "those the runs before dumped, of dump.layers)");
  }
  // One that dumps nothing more leaves another run's dump at that name as it was: said (before: silently,
  // where a run that dumps replaces it with a warning; from the outputs audit).
  if (!dump && resumed && !r.dump_path.empty() && rank == 0)
    if (const std::string other = io::ActivationDump::run_of(r.dump_path); !other.empty() && other != run_id)
      log::warn("dump.activations=" + r.dump_path + " holds the activations of another run (run " + other +
                "): this run dumps no step after its checkpoint's step " + std::to_string(trainer.step()) +
                ", so that file is left as it is");


  // MFU's peak: train.peak_gflops for each rank, or kPeakGflopsPerThread for each thread of each rank.
  int64_t threads = omp_get_max_threads();
  if (r.peak_gflops == 0 && P > 1) world.all_reduce(Span<int64_t>(&threads, 1));
  const double peak_gflops = r.peak_gflops > 0 ? r.peak_gflops * P : kPeakGflopsPerThread * static_cast<double>(threads);
  const double peak = peak_gflops * 1e9;
  if (rank == 0) {
    std::ostringstream said;
    said << peak_gflops << " GFLOP/s";
    if (r.peak_gflops > 0)
      said << " (" << r.peak_gflops << " per rank, train.peak_gflops)";
    else
      said << " (" << kPeakGflopsPerThread << " a thread, " << count_of(threads, "thread")
           << (P > 1 ? " over " + count_of(P, "rank") : std::string()) << ")";
    print_run_header(r, trainer.model().layout().total(), P, run_id, said.str());
  }

  // Evaluation at data.seq_len (whatever length the current stage trains at), printed by rank 0; its fields
  // also join that step's log.jsonl line.
  // Its loss is the same on every rank (all-reduced), so every rank refuses a non-finite one alike.
  // A SIGUSR1 / SIGTERM ends it after the sequence it is at (not complete: no figures), unless that was the
  // last: eval.sequences forward passes at data.seq_len can outlast a scheduler's grace time.
  struct Evaluation {
    double loss;
    int stop_signal;                      // a stop was agreed during it (all ranks alike); 0: none
    bool complete;                        // false: that stop ended it early
    int64_t evaluated;                    // sequences
    std::function<std::string()> print;  // prints it (rank 0), returns its log.jsonl fields
  };
  const auto evaluate = [&](int64_t step) {
    const activity::Scope doing("evaluating step " + std::to_string(step));
    const int64_t training_len = trainer.config().seq_len;
    trainer.set_seq_len(r.trainer.seq_len);
    bool asked = false;
    const train::EvalStats e = trainer.evaluate(*data, eval_sequences, [&] {
      if (!asked) signal_if_faulted("eval", step);
      asked = true;
      return g_stop_requested.load();
    });
    trainer.set_seq_len(training_len);
    return Evaluation{e.loss, e.stop_signal, e.complete, e.evaluated, [step, e, seq_len = r.trainer.seq_len] {
                        std::printf("eval step %lld  eval_loss %.4f  eval_accuracy %.4f  (%lld scored targets, N = %lld)\n",
                                    (long long)step, e.loss, e.accuracy, (long long)e.scored, (long long)seq_len);
                        std::fflush(stdout);
                        return ", \"eval_loss\": " + train::json_number(e.loss) + ", \"eval_accuracy\": " + train::json_number(e.accuracy);
                      }};
  };
  bool dump_unpublished = false;  // steps dumped since the dump file was last published
  // The step of the last checkpoint committed in checkpoint.dir (resumed from, or saved by this run); -1: none.
  // The run's record holds it (log.summary reports it); checkpoint() sets it.
  const int64_t& committed = record.committed;
  // The error that stops a diverged run at `step`: `what` says why and what of the step was kept back.
  // `from_parameters`: the step's forward pass overflowed, so the parameters it started from are the cause;
  // a checkpoint of them (step - 1) resumes into the same loss (the data order is part of the checkpoint).
  const auto diverged = [&](int64_t step, const std::string& what, bool from_parameters) {
    std::string tail;
    if (committed >= 0 && from_parameters && committed == step - 1)
      tail = "; the last checkpoint (step " + std::to_string(committed) +
             ") holds the parameters this loss came from, and resuming from it repeats this: resume from an "
             "earlier one, if one is kept";
    else if (committed >= 0)
      tail = ", the last checkpoint (step " + std::to_string(committed) + ") is intact";
    return InternalError("training diverged at step " + std::to_string(step) + ": " + what + tail);
  };
  // The length the last step trained at, a checkpoint's seq_len (at a curriculum boundary the trainer is
  // already at the next stage's: before, that went into the checkpoint, beside the tokens_seen of the steps
  // before it). Resumed: the checkpoint's, which one saved again at its step keeps.
  int64_t trained_len = resumed && stored.seq_len > 0 ? stored.seq_len : trainer.config().seq_len;
  // The step's evaluation that a stop interrupted, which the stop's checkpoint keeps for the resumed run.
  std::optional<train::PendingEval> pending_eval;
  // The last step's log.jsonl fields, which its checkpoint keeps (step_log) for a run resumed at train.steps
  // = that step, which writes its line where this run wrote none (off the log.every grid). Resumed: the
  // checkpoint's, which one saved again at its step keeps.
  std::string step_log = resumed ? stored.step_log : std::string();
  // The last checkpoint committed holds an evaluation pending (the one resumed from, until one is saved).
  const bool& committed_pending = record.committed_pending;
  // The link each save records to the checkpoint before it in this run's history (retention follows them
  // from `latest`): the last committed, or, saved again at its step, that one's own link.
  int64_t committed_previous = resumed ? stored.previous_step : -1;  // record.committed's link
  const auto checkpoint = [&] {
    const activity::Scope doing("checkpointing step " + std::to_string(trainer.step()));
    // The dump is published with each checkpoint that follows a dumped step, so a run killed later (no
    // chance to close it) resumes from the checkpoint with those steps kept; a new dump copies them.
    // Published BEFORE the checkpoint commits: a kill between the two then resumes from the checkpoint
    // before, which dumps those steps again, where the other order lost them for good.
    const bool republish = dump && dump_unpublished;
    std::optional<io::ClaimedEarly> next_dump;
    if (republish) {
      dump->close();
      dump.reset();
      dump_unpublished = false;
      log::info("activation dump " + r.dump_path + " published through step " + std::to_string(trainer.step()));
      // Its next file claimed at once (before: after the checkpoint, and a second run on the same
      // dump.activations could claim it meanwhile, replace this run's dump, and end this run, exit 2; from
      // the dumps audit).
      if (dumps_after(trainer.step())) next_dump.emplace(r.dump_path + ".tmp", mpi);
    }
    io::publish_on_rank0(mpi, "checking checkpoint.dir", [&] { train::require_checkpoint_dir_lock(r.checkpoint_dir); });
    const int64_t previous = record.committed == trainer.step() ? committed_previous : record.committed;
    const std::string path = train::save_checkpoint(trainer, r.checkpoint_dir, r.checkpoint_keep, config_text,
                                                    tokens_seen(trainer.step()), trained_len, position, run_id,
                                                    data_record, mpi, pending_eval, step_log, previous);
    committed_previous = previous;
    record.committed = trainer.step();
    record.committed_path = path;
    record.committed_pending = pending_eval.has_value();
    jsonl.forget_start();
    log::info("checkpoint " + path);
    signal_if_faulted("checkpoint", trainer.step());
    if (next_dump)
      dump = std::make_unique<io::ActivationDump>(r.dump_path, std::move(*next_dump), mpi, trainer.step(), run_id,
                                                  dumped);
  };

  // A log.jsonl line: the step's fields, its evaluation's (if any), the run's id.
  const auto log_line = [&](const std::string& fields, const std::string& eval_fields) {
    return fields + eval_fields + (run_id.empty() ? std::string() : ", " + std::string(train::kRunKey) + run_id + "\"") + "}";
  };
  // The checkpoint resumed from evaluates to `loss`: a non-finite one is refused. (A checkpoint saved off
  // the eval.every grid, or at a stop that left its evaluation pending, was never evaluated: its
  // parameters can overflow the forward pass.) Nothing was trained, so nothing is kept back.
  const auto refuse_resumed = [&](double loss) {
    if (!std::isfinite(loss))
      throw InternalError("the checkpoint resumed from (step " + std::to_string(trainer.step()) +
                          ") evaluates to loss " + std::to_string(loss) +
                          ": its parameters overflow the forward pass; resume from an earlier checkpoint, if one is kept");
  };

  using Clock = std::chrono::steady_clock;
  const auto run_start = Clock::now();
  int stop_signal = 0;  // the signal that stopped the run, agreed by all ranks: each exits alike (0: none)
  int64_t last_eval = -1;
  // The evaluation of the step resumed from that a stop interrupted: done first, and that step's log.jsonl
  // line written with it (the stopped run left the line to this one). A stop during it exits 75 again:
  // the checkpoint still holds it.
  if (stored.pending_eval) {
    const int64_t step = trainer.step();
    log::info("evaluating step " + std::to_string(step) + " first: a stop interrupted its evaluation");
    const Evaluation evaluation = evaluate(step);
    if (!evaluation.complete) {
      log::info(stopped_line(evaluation.stop_signal, "during the pending evaluation of step " + std::to_string(step) +
                                                         ", which the checkpoint still holds"));
      record.signal = evaluation.stop_signal;
      return static_cast<int>(ExitCode::requeue);
    }
    refuse_resumed(evaluation.loss);
    if (rank == 0) {
      const std::string eval_fields = evaluation.print();
      if (!stored.pending_eval->log_fields.empty()) jsonl.write(log_line(stored.pending_eval->log_fields, eval_fields));
    }
    last_eval = step;
    // A stop asked for after its last sequence: the checkpoint is saved again without it (the next run
    // need not evaluate it again), and the run stops there; at train.steps the run is done.
    if (evaluation.stop_signal != 0 && step < r.steps) {
      checkpoint();
      log::info(stopped_line(evaluation.stop_signal, "after the pending evaluation of step " + std::to_string(step)));
      record.signal = evaluation.stop_signal;
      return static_cast<int>(ExitCode::requeue);
    }
  }
  while (trainer.step() < r.steps) {
    const auto t0 = Clock::now();
    const int64_t seq_len = trainer.config().seq_len;
    trained_len = seq_len;
    std::optional<activity::Scope> doing(std::in_place, "training step " + std::to_string(trainer.step() + 1));
    const train::SequenceRows rows = source().train_rows(position, trainer.local_rows());
    train::StepStats stats = trainer.compute_gradients(rows, [] { return g_stop_requested.load(); });
    doing.reset();
    // A diverged step is not applied, logged as a number or checkpointed: checkpoint.keep would otherwise
    // prune good checkpoints for ones full of nan. Every rank sees the same all-reduced loss.
    if (!std::isfinite(stats.loss) || !std::isfinite(stats.grad_norm))
      throw diverged(trainer.step() + 1, "loss " + std::to_string(stats.loss) + ", gradient norm " +
                                             std::to_string(stats.grad_norm) +
                                             " (try a lower train.lr or train.clip); nothing of this step was saved",
                   !std::isfinite(stats.loss));
    trainer.apply_update(stats);
    position = source().after(position);
    // An update can overflow where the gradient did not (a huge train.lr). Checked before anything of
    // the step is dumped, evaluated, logged or checkpointed (checkpoint.keep would prune good checkpoints
    // for it). Parameters and moments are replicated: every rank throws alike.
    if (!stats.update_finite)
      throw diverged(trainer.step(), "its update made parameters or optimizer moments not finite (try a lower "
                                     "train.lr, or train.clip); nothing of this step was saved",
                     false);
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    const int64_t step = trainer.step();
    record.step = step;
    if (dump && stage == stages && r.dump_steps.count(step)) {
      const activity::Scope dumping("dumping the activations of step " + std::to_string(step));
      const model::ModelConfig& m = trainer.model().config();
      const int64_t datasets = 4 * static_cast<int64_t>(r.dump_layers.size());  // q, k, v, o of each layer
      dump->require_room({r.trainer.seq_len, m.heads, m.head_dim()}, datasets, "the activations of step " + std::to_string(step));
      dump_layers(*dump, trainer.model(), r, step, trainer.local_rows());
      dump_unpublished = true;
      signal_if_faulted("dump", step);
      // A stop during the dump's writes (they can take long) stops the run at this step, not the next.
      if (stats.stop_signal == 0) stats.stop_signal = trainer.agree_on_signal(g_stop_requested.load());
    }
    // Every eval.every steps and after the last. A stop agreed in this step, or during its evaluation
    // (before its last sequence), leaves the evaluation pending: the stop's checkpoint holds the step's
    // log.jsonl fields, and the resumed run evaluates this step before it trains on and writes the line
    // (log.jsonl is then the uninterrupted run's). Before, the evaluation ran to its end (eval.sequences
    // forward passes at data.seq_len) even when the stop came before it, and a stop during it trained one
    // more step: both past what a scheduler's grace time may allow. The last step is no exception: it
    // evaluated before its checkpoint, which a kill at the grace time's end lost.
    const bool eval_now = (r.eval_every > 0 && step % r.eval_every == 0) || step == r.steps;
    bool eval_interrupted = eval_now && stats.stop_signal != 0;
    int64_t evaluated = 0;  // sequences of an interrupted evaluation
    std::function<std::string()> print_eval;  // prints the evaluation, returns its log.jsonl fields
    if (eval_now && !eval_interrupted) {
      const Evaluation evaluation = evaluate(step);
      if (evaluation.stop_signal != 0) stats.stop_signal = evaluation.stop_signal;  // stops at this step
      if (!evaluation.complete) {
        eval_interrupted = true;
        evaluated = evaluation.evaluated;
      } else {
        print_eval = evaluation.print;
        last_eval = step;
        // Finite parameters can still overflow the forward pass (a huge train.lr): the next step would
        // diverge, and checkpointing this one would leave a checkpoint that only resumes into nan (with
        // checkpoint.keep pruning a good one for it). Before, the run printed eval_loss -nan and went on.
        if (!std::isfinite(evaluation.loss))
          throw diverged(step, "the evaluation of its parameters has loss " + std::to_string(evaluation.loss) +
                                   " (its update made the forward pass overflow; try a lower train.lr, or train.clip); "
                                   "this step was not logged or checkpointed",
                         false);
      }
    }
    // log.jsonl keeps to the log.every grid (so an interrupted + resumed run's file is the uninterrupted
    // one's); the step a signal stops at is printed too. A pending evaluation's line waits in the checkpoint.
    const bool logged = step % r.log_every == 0 || step == r.steps || eval_now || jsonl.must_log(step);
    const double tokens_per_s = double(seq_len) / seconds;
    const double mfu = step_flops(r.trainer.model, seq_len) / seconds / peak;
    const std::string log_fields = step_log_fields(step, stats, tokens_per_s, seconds, mfu, seq_len, P);
    const bool keeps_pending = eval_interrupted && !r.checkpoint_dir.empty();
    if (keeps_pending) pending_eval = train::PendingEval{r.log_jsonl.empty() ? std::string() : log_fields};
    step_log = r.log_jsonl.empty() ? std::string() : log_fields;
    if (rank == 0 && (logged || stats.stop_signal != 0)) {
      // A step under 0.1 s in two significant digits (before: "s/step 0.000" beside "tokens/s 96110").
      char per_step[32];
      std::snprintf(per_step, sizeof per_step, seconds < 0.1 ? "%.2g" : "%.3f", seconds);
      std::printf("step %6lld  loss %.4f  tokens/s %.0f  s/step %s  lr %.3e  grad_norm %.3f  MFU %.1f%%  N %lld\n",
                  (long long)step, stats.loss, tokens_per_s, per_step, stats.lr, stats.grad_norm, 100 * mfu,
                  (long long)seq_len);
      std::fflush(stdout);
      const std::string eval_fields = print_eval ? print_eval() : std::string();
      if (logged && !keeps_pending) jsonl.write(log_line(log_fields, eval_fields));
    }
    // The next stage of a length curriculum, said after this step's line (before: ahead of it).
    if (stage < stages && r.stage_of(step) != stage) {
      stage = r.stage_of(step);
      const int64_t before = trainer.config().seq_len;
      trainer.set_seq_len(r.length_of(stage));
      // (Two stages of one length: no change to say; nor after the last step, with no step to come: from the
      // dumps audit.)
      if (trainer.config().seq_len != before && step < r.steps)
        log::info("step " + std::to_string(step) + " done: steps from " + std::to_string(step + 1) + " train at N = " +
                  std::to_string(trainer.config().seq_len));
    }
    if (eval_interrupted)
      log::info("the evaluation of step " + std::to_string(step) + " is left undone by the stop (" +
                (evaluated > 0 ? "after " + std::to_string(evaluated) + " of " + std::to_string(eval_sequences) +
                                     " sequences"
                               : std::string("not begun: the stop came before it")) +
                ")" +
                (keeps_pending ? ": the checkpoint keeps it pending, and the resumed run evaluates step " +
                                     std::to_string(step) + " first"
                               : std::string()));
    // A stop asked for after the last step's complete evaluation: the run is done (exit 0, not 75 for a
    // requeue that would only evaluate it again).
    if (stats.stop_signal != 0 && step == r.steps && !eval_interrupted) {
      stats.stop_signal = 0;
      log::info("stop signal after the last step's evaluation: the run is done");
    }
    if (stats.stop_signal != 0) {
      stop_signal = stats.stop_signal;
      break;
    }
    // (Without checkpoint.dir, checkpoint.every is warned about as doing nothing; before, the run then failed
    // at its first step on that grid, "checkpoint directory  is gone", exit 1: from the train audit.)
    if (!r.checkpoint_dir.empty() && r.checkpoint_every > 0 && step % r.checkpoint_every == 0) {
      checkpoint();
      // A stop during the checkpoint's write (it can take long) stops the run here: this step is
      // committed. Before, it trained one more step and checkpointed again.
      if (step < r.steps) {
        const activity::Scope asking("asking for a stop after the checkpoint of step " + std::to_string(step));
        stop_signal = trainer.agree_on_signal(g_stop_requested.load());
        if (stop_signal != 0) break;
      }
    }
  }
  const bool dump_published = dump && dump_unpublished;  // steps dumped since the last publish (from a review)
  if (dump) {
    dump->close();
    dump.reset();
    dump_unpublished = false;
  }
  if (stop_signal != 0) {
    record.signal = stop_signal;
    if (r.checkpoint_dir.empty()) {
      // 75 promises a committed checkpoint to resume from; without one a requeue would start over, so
      // exit as the signal would have (128 + its number). The activation dump is published all the same
      // (before: "nothing saved" was said of it too; from the dumps audit).
      log::info("stopped on " + signal_name(stop_signal) + " at step " + std::to_string(trainer.step()) +
                ": no checkpoint.dir, no checkpoint saved" +
                (dump_published ? " (the activation dump " + r.dump_path + " is published through this step)" : "") +
                " (exit " + std::to_string(128 + stop_signal) + ", not 75)");
      return 128 + stop_signal;
    }
    if (committed != trainer.step()) checkpoint();
    log::info(stopped_line(stop_signal, "at step " + std::to_string(trainer.step())));
    return static_cast<int>(ExitCode::requeue);
  }
  // Resumed at the end: printed, and written to log.jsonl as the step's line from the fields its checkpoint
  // kept, as the uninterrupted run's last line holds it: in place of the step's line without the evaluation,
  // or added where the step was off the log.every grid of the run that trained it (before: never logged).
  if (last_eval != trainer.step()) {
    const Evaluation evaluation = evaluate(trainer.step());
    if (!evaluation.complete) {  // nothing trained: the checkpoint resumed from is the run's
      log::info(stopped_line(evaluation.stop_signal, "during the evaluation of step " + std::to_string(trainer.step()) +
                                                         ", the checkpoint resumed from"));
      record.signal = evaluation.stop_signal;
      return static_cast<int>(ExitCode::requeue);
    }
    refuse_resumed(evaluation.loss);
    if (rank == 0) {
      const std::string eval_fields = evaluation.print();
      if (!stored.step_log.empty()) jsonl.complete_kept_step(log_line(stored.step_log, eval_fields));
    }
  }
  // Also when the checkpoint resumed from held the evaluation done now: it is saved again without it (else
  // each later run of this command would evaluate it again, and trim its line from log.jsonl first).
  if (!r.checkpoint_dir.empty() && (committed != trainer.step() || committed_pending)) checkpoint();
  const double total = std::chrono::duration<double>(Clock::now() - run_start).count();
  log::info("done: at step " + std::to_string(trainer.step()) + ", " + std::to_string(trainer.step() - first_step) +
            " step(s) trained by this run, " + std::to_string(static_cast<int64_t>(std::lround(total))) + " s");
  return 0;
}

// train_run, then log.summary (rank 0), whatever the end: done, stopped, or failed on rank 0 (a failure on
// another rank alone ends the job without one), but a usage or config error (exit 2) before the run's
// work. A summary that cannot be written fails a run that was done (what it ran for is not all there), and
// is said but leaves a stop's 75 (the requeue) or a failure's code.
int run_train(Invocation& inv) {
  catch_train_stop_signals();  // again: MPI_Init or a launcher may have blocked them since main()
  const auto start = std::chrono::steady_clock::now();
  char started[32] = "";
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  if (gmtime_r(&now, &utc)) std::strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", &utc);
  const bool writes = inv.process.world().rank() == 0;
  RunRecord record;
  const auto write_summary = [&](int code, const std::string& error) {
    if (!writes || record.path.empty()) return;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    try {
      // Through a symbolic link, as log.jsonl: the file it leads to is replaced, the link stays. Another run
      // writing the same summary now is waited for, up to 10 s (before: a done run exited 1 when two runs
      // wrote one log.summary at once; from the race audit): the last to finish has the file.
      const std::string text = summary_json(record, code, error, started, seconds, inv.process.world().size());
      for (int attempt = 1;; ++attempt) {
        try {
          io::write_text_durably(io::output_target(record.path), text);
          break;
        } catch (const io::TemporaryInUse&) {
          if (attempt == 200) throw;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
    } catch (const std::exception& e) {
      const std::string what = "log.summary=" + record.path + " could not be written: " + e.what();
      if (code == 0) throw InternalError("the run is done, but " + what);
      log::error(what + " (the run's exit code stays " + std::to_string(code) + ")");
    }
  };
  int code = 0;
  try {
    code = train_run(inv, record);
  } catch (const std::exception&) {  // with the code and message main() ends the run with
    g_settled.store(true, std::memory_order_relaxed);
    const auto [exit_code, message] = exit_of(std::current_exception());
    // A usage or config error before the run's work writes nothing (interfaces.md's exit 2), a summary
    // neither (before: one said "failed", exit 2, for a refusal after the start, as a train.steps below
    // latest's step). One later (a checkpoint's .tmp another process holds) ends a run that trained: said.
    if (exit_code != static_cast<int>(ExitCode::usage) || record.first_step >= 0) write_summary(exit_code, message);
    // An input refused before this run trained a step (a token file damaged where step 1 reads it) ends it as
    // a refusal before its start does: the lock file and the directories this run made go (before: both
    // stayed; from an audit), with a fresh run's note of where its log lines start (it logged none). Rank 0's
    // (unlock_checkpoint_dir does nothing on the others; under mpirun a failure on another rank alone ends
    // the job by MPI_Abort first); after the summary, whose directory stays where it holds it.
    if ((exit_code == static_cast<int>(ExitCode::usage) || exit_code == static_cast<int>(ExitCode::bad_input)) &&
        record.step == record.first_step && record.committed == record.found_step) {
      const std::string dir = inv.options["checkpoint.dir"].as<std::string>();
      if (writes && !dir.empty() && record.found_step < 0) std::remove(train::log_start_path(dir).c_str());
      train::unlock_checkpoint_dir();
    }
    throw;
  }
  g_settled.store(true, std::memory_order_relaxed);
  write_summary(code, "");
  stop_here_if_set("LONGCTX_FAULT_STOP_AFTER_SUMMARY");  // a test signals it once its outcome is settled
  return code;
}

}  // namespace

// A notice that arrives before the first step is acted on there (finish it, checkpoint, 75). Unblocked
// too: a launcher that blocked them would hide the notice, and one already pending is delivered here.
// SIGINT and SIGHUP only where they are not ignored (nohup, a script's background job): left so. SIGPIPE is
// ignored where it is not handled: a closed pipe on stdout / stderr (a `| tee` that the same Ctrl-C ended)
// makes the run's writes fail instead of ending it by default, mid-step or in the handler's own write.
void catch_train_stop_signals() {
  if (struct sigaction pipe {}; ::sigaction(SIGPIPE, nullptr, &pipe) == 0 && pipe.sa_handler == SIG_DFL)
    std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGUSR1, request_stop);
  std::signal(SIGTERM, request_stop);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGUSR1);
  sigaddset(&stop_signals, SIGTERM);
  for (const int interrupt : {SIGINT, SIGHUP}) {
    struct sigaction current {};
    if (::sigaction(interrupt, nullptr, &current) != 0 || current.sa_handler == SIG_IGN) continue;
    std::signal(interrupt, request_stop);
    sigaddset(&stop_signals, interrupt);
  }
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
}

Command train_command() {
  return {"train", "train the sequence-parallel LongNet LM (passkey, associative, token file)", "", declare_train_options,
          run_train, check_train_invocation, [](const Invocation& inv) { return train_shared_inputs(inv); },
          train::unlock_checkpoint_dir, /*results_in_files=*/true};
}

}  // namespace longctx::cli
