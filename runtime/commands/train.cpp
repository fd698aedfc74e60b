// `longctx train` (interfaces.md): the sequence-parallel LongNet trainer. Every rank holds N / P rows of
// the one training sequence; see runtime/train/trainer.hpp for the per-step protocol.
//
// Order of a run: validate every option (exit 2 naming the value) and the data (exit 2/3) -> resume from
// <checkpoint.dir>/latest if there is one (exit 3 on a mismatching checkpoint) -> steps. After each step
// (numbered from 1): activation dump, eval, log line + log.jsonl (rank 0), checkpoint. SIGUSR1/SIGTERM set a
// flag; ranks agree on it inside the step's stats all-reduce (also after a dump's or a checkpoint's write, and
// after each evaluation sequence), finish the step, checkpoint (an interrupted evaluation pending) and exit 75.
#include <dirent.h>
#include <fcntl.h>
#include <omp.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <cctype>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string_view>
#include <vector>

#include "attention/cuda/cuda_attention.hpp"
#include "attention/sequence_parallel.hpp"
#include "io/activation_dump.hpp"
#include "io/atomic_output.hpp"
#include "io/checkpoint.hpp"
#include "io/durable.hpp"
#include "io/token_dataset.hpp"
#include "runtime/commands/attention_options.hpp"
#include "runtime/commands/commands.hpp"
#include "runtime/core/activity.hpp"
#include "runtime/core/check.hpp"
#include "runtime/core/fingerprint.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/memory.hpp"
#include "runtime/train/train_state_io.hpp"

namespace longctx::cli {
namespace {

// The signal's number once one arrived. Lock-free atomic: the handler may run on any thread (MPI's and
// PMIx's threads inherit the unblocked mask), while the step loop reads it.
std::atomic<int> g_stop_requested{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free flag");
extern "C" void request_stop(int signal) { g_stop_requested.store(signal, std::memory_order_relaxed); }

void declare(po::options_description& d, po::positional_options_description&) {
  d.add_options()
      ("device", po::value<std::string>()->default_value("cpu"), "where attention runs: cpu, or cuda (one GPU per rank; the rest of the model stays on the CPU)")
      ("dtype", po::value<std::string>()->default_value("fp32"), "attention input type: fp32, bf16, fp16 (bf16 / fp16 need --device cuda; under mpirun cuda takes bf16 / fp16)")
      ("comm", po::value<std::string>()->default_value("auto"), "device communicator with --device cuda under mpirun: auto, nccl, staged or mpi (MPI through host memory)")
      ("model.layers", po::value<int64_t>()->default_value(2), "transformer blocks")
      ("model.dim", po::value<int64_t>()->default_value(128), "model width")
      ("model.heads", po::value<int64_t>()->default_value(8), "attention heads (must divide model.dim; keep >= max dilation)")
      ("model.mlp_hidden", po::value<int64_t>()->default_value(0), "MLP hidden width; 0 means 4 * model.dim")
      ("model.segment_lengths", po::value<std::string>()->default_value("256,1024,2048"), "dilated branches: segment lengths w")
      ("model.dilation_rates", po::value<std::string>()->default_value("1,2,4"), "dilated branches: dilation rates r (each at most its segment length)")
      ("model.vocab", po::value<int64_t>()->default_value(32), "vocabulary size (>= 32 for passkey/associative)")
      ("model.prev_token_embedding", po::bool_switch(),
       "add an embedding of each row's previous token (token shift; helps content-based copying)")
      ("model.init_std", po::value<double>()->default_value(0.02), "normal std of initial weights")
      ("model.rope_dims", po::value<int64_t>()->default_value(0),
       "dims of each head that rotate (even); the rest match content at any distance; 0 = all")
      ("model.rope_base", po::value<double>()->default_value(10000.0), "rotary base")
      ("data.task", po::value<std::string>()->default_value("passkey"), "passkey | associative | file")
      ("data.path", po::value<std::string>()->default_value(""), "token dataset (data.task=file)")
      ("data.seq_len", po::value<std::string>()->default_value("8192"), "GLOBAL tokens per sequence (K/M/G suffixes)")
      ("data.supervision", po::value<std::string>()->default_value("all"), "all (LM loss on every token) | answer (passkey/associative: on the answer digits only)")
      ("data.key_digits", po::value<int64_t>()->default_value(5), "digits per key/value")
      ("data.key_repeats", po::value<int64_t>()->default_value(1), "passkey: consecutive copies of the record")
      ("data.records", po::value<int64_t>()->default_value(16), "associative: key -> value records")
      ("data.queries", po::value<int64_t>()->default_value(16), "associative: queries at the end")
      ("data.short_seq_len", po::value<std::string>()->default_value("0"),
       "length curriculum: GLOBAL lengths of the stages before data.seq_len, comma-separated (0: off)")
      ("data.short_steps", po::value<std::string>()->default_value("0"),
       "steps of each data.short_seq_len stage, comma-separated (same count)")
      ("data.curriculum_steps", po::value<int64_t>()->default_value(0), "steps over which the key depth grows to the whole sequence")
      ("data.curriculum_min_span", po::value<int64_t>()->default_value(256), "key depth window at step 0")
      ("data.filler_period", po::value<int64_t>()->default_value(23), "length of the repeated filler sentence")
      ("train.steps", po::value<int64_t>()->default_value(100), "total optimizer steps")
      ("train.lr", po::value<double>()->default_value(1e-3), "peak learning rate")
      ("train.warmup", po::value<int64_t>()->default_value(20), "linear warm-up steps")
      ("train.min_lr_ratio", po::value<double>()->default_value(0.1, "0.1"), "cosine floor as a fraction of train.lr")
      ("train.weight_decay", po::value<double>()->default_value(0.1, "0.1"), "AdamW decoupled weight decay (matrices only)")
      ("train.beta1", po::value<double>()->default_value(0.9, "0.9"), "AdamW beta1")
      ("train.beta2", po::value<double>()->default_value(0.95, "0.95"), "AdamW beta2")
      ("train.clip", po::value<double>()->default_value(1.0), "global gradient-norm clip; 0 disables")
      ("train.answer_weight", po::value<double>()->default_value(1.0),
       "loss weight of answer targets relative to other tokens (passkey/associative; 1 = plain mean)")
      ("train.seed", po::value<uint64_t>()->default_value(1), "seed of parameters and data")
      ("train.threads", po::value<int>()->default_value(0), "OpenMP threads per rank; 0 keeps OMP_NUM_THREADS")
      ("train.regather_kv", po::bool_switch(),
       "the backward gathers each layer's spanning K / V rows again instead of keeping the forward's (cpu: saves "
       "sum over spanning branches of (w'/r) B H D 8 bytes per layer, costs as much traffic)")
      ("train.peak_gflops", po::value<double>()->default_value(128.0),
       "peak fp32 GFLOP/s of ONE rank for MFU (default: one AVX-512 core, 2 FMA x 16 lanes x 2 GHz)")
      ("checkpoint.dir", po::value<std::string>()->default_value(""), "checkpoint directory (resumes from its latest)")
      ("checkpoint.every", po::value<int64_t>()->default_value(0), "checkpoint every N steps (0: only at the end / on a signal)")
      ("checkpoint.keep", po::value<int64_t>()->default_value(3), "committed checkpoints to keep (0 keeps all)")
      ("log.every", po::value<int64_t>()->default_value(1), "log every N steps")
      ("log.jsonl", po::value<std::string>()->default_value(""), "append one JSON object per logged step / eval")
      ("eval.every", po::value<int64_t>()->default_value(0), "evaluate every N steps (0: only at the end)")
      ("eval.sequences", po::value<int64_t>()->default_value(4), "held-out sequences per evaluation")
      ("dump.activations", po::value<std::string>()->default_value(""), "HDF5 file for q, k, v, o dumps")
      ("dump.layers", po::value<std::string>()->default_value("0"), "layers to dump, e.g. 0,1")
      ("dump.steps", po::value<std::string>()->default_value("1"), "steps (1-based) to dump, e.g. 1,100");
}

// The resolved config as a checkpoint's /config stores it (INI). A value INI cannot hold (a line break) ->
// UsageError naming the option.
std::string config_text_of(const Invocation& inv) {
  po::options_description declared;
  po::positional_options_description unused;
  declare(declared, unused);
  return to_ini(inv, declared);
}

template <class T> T opt(const Invocation& inv, const char* name) { return inv.options[name].as<T>(); }

// Throws UsageError(message) unless `ok`. A message about one key (`train.lr must be ...`, `model.layers=0:
// ...`) names it first and no other: the config phase then adds where its value came from. One that names
// two (`train.beta1 / train.beta2`, `checkpoint.every needs checkpoint.dir`) is left as it is, since
// either value may be the one at fault.
void require(bool ok, const std::string& message) {
  if (ok) return;
  std::set<std::string> keys;  // the dotted words of the message: section.key
  const auto word = [](char c) { return std::islower(static_cast<unsigned char>(c)) || c == '_' || c == '.'; };
  for (size_t i = 0; i < message.size();) {
    size_t j = i;
    while (j < message.size() && word(message[j])) ++j;
    const std::string w = message.substr(i, j - i);
    if (w.find('.') != std::string::npos && w.front() != '.' && w.back() != '.') keys.insert(w);
    i = j == i ? i + 1 : j;
  }
  const std::string first = message.substr(0, message.find_first_of(" =:"));
  throw UsageError(message, keys.size() == 1 && keys.count(first) ? first : "");
}

struct RunOptions {
  train::TrainerConfig trainer;
  train::DataConfig data;
  int64_t steps = 0;
  std::string checkpoint_dir, log_jsonl, dump_path;
  int64_t checkpoint_every = 0, checkpoint_keep = 0, log_every = 1, eval_every = 0, eval_sequences = 0;
  std::set<int64_t> dump_layers, dump_steps;
  // Length curriculum: stage i trains at stage_len[i] until step stage_end[i] (cumulative), then data.seq_len.
  std::vector<int64_t> stage_len, stage_end;
  double peak_gflops = 0;
  bool regather_kv = false;
};

// Schedule errors name train's keys (and train has no --allow-uncovered).
const ScheduleOptionNames kScheduleNames{"model.segment_lengths", "model.dilation_rates", "", "data.seq_len="};
constexpr int64_t kMaxLayers = 65536;
// The file in checkpoint.dir that rank 0 locks for the run (lock_checkpoint_dir).
constexpr const char* kLockFile = ".longctx.lock";
// The note in checkpoint.dir of where a fresh run's log.jsonl lines start (JsonLog).
constexpr const char* kLogStart = ".longctx-log-start";

// check_shardable at a curriculum stage's length; the error says which stage.
void check_stage_shardable(const Schedule& schedule, int64_t stage_len, int world_size, SpanningSegments spanning) {
  ScheduleOptionNames names = kScheduleNames;
  names.seq_len = "its length ";
  try {
    check_shardable(schedule, stage_len, world_size, spanning, names);
  } catch (const UsageError& e) {
    throw UsageError("data.short_seq_len=" + std::to_string(stage_len) + ": " + e.what());
  }
}

// check_stage_shardable for the stages that train from step `from` on: a resumed run skips the stages it
// has finished, which need not shard at its world size (before, they refused a resume at another P).
void check_stages_shardable(const RunOptions& r, int64_t from, int world_size, SpanningSegments spanning) {
  for (size_t i = 0; i < r.stage_len.size(); ++i)
    if (r.stage_end[i] > from) check_stage_shardable(r.trainer.model.schedule, r.stage_len[i], world_size, spanning);
}

// What a refused resume from `latest` adds to its message: the older checkpoints in `dir`, newest first, and
// how to resume from one; "" when there is none. By name only (no file is opened: every rank says it).
// `latest`: the checkpoint `latest` names, which is damaged; "" when `latest` itself is unusable (names a
// file that is not there, holds no name): then every checkpoint in `dir` is listed.
std::string older_checkpoints_hint(const std::string& dir, const std::string& latest) {
  std::vector<std::string> older;
  const std::optional<int64_t> latest_step = io::step_in_file_name(latest);
  for (const std::string& path : io::list_checkpoints(dir)) {
    const std::optional<int64_t> step = io::step_in_file_name(path);
    if (step && (latest.empty() || (latest_step && *step < *latest_step)))
      older.insert(older.begin(), std::filesystem::path(path).filename().string());
  }
  if (older.empty()) return "";
  std::string names;
  for (size_t i = 0; i < older.size() && i < 3; ++i) names += (i ? ", " : "") + older[i];
  if (older.size() > 3) names += " and " + std::to_string(older.size() - 3) + " more";
  return ". Nothing was changed. " + std::string(latest.empty() ? "Checkpoints" : "Older checkpoints") + " in " +
         dir + ", newest first: " + names + ". " +
         (latest.empty() ? "" : "If " + std::filesystem::path(latest).filename().string() + " is damaged, ") +
         "`longctx ckpt verify " + dir + "` says which are whole; to resume from one, write its name into " + dir +
         "/latest" + " (the steps after it are trained again)";
}

// The step a run resumes from, as the name `latest` holds says (the load checks it against the file); 0 for
// none, and for a directory or `latest` that cannot be read here: the run phase then says what is wrong.
int64_t resume_step_hint(const RunOptions& r) {
  if (r.checkpoint_dir.empty()) return 0;
  try {
    if (const auto latest = io::find_latest_checkpoint(r.checkpoint_dir))
      return io::step_in_file_name(*latest).value_or(0);
  } catch (const std::exception&) {
  }
  return 0;
}

// The same path: the same file (io::same_file, which needs both to exist) or, for a checkpoint.dir this run
// has yet to make, the same spelling once made absolute and normal ("./ck/" is "ck").
bool same_path(const std::string& a, const std::string& b) {
  const auto normal = [](const std::string& path) {
    std::error_code error;
    const std::filesystem::path full = std::filesystem::absolute(path, error).lexically_normal();
    return full.has_filename() ? full : full.parent_path();
  };
  return io::same_file(a, b) || normal(a) == normal(b);
}

// Whether `path` (log.jsonl, dump.activations) goes straight into a checkpoint.dir that does not exist
// yet: the run makes that directory (lock_checkpoint_dir), so its missing parent is no error. Such an
// output was refused ("directory does not exist") on a fresh run only.
bool in_checkpoint_dir_to_make(const RunOptions& r, const std::string& path) {
  std::error_code error;
  return !r.checkpoint_dir.empty() && !std::filesystem::exists(r.checkpoint_dir, error) &&
         same_path(io::directory_of(path), r.checkpoint_dir);
}

RunOptions validate(const Invocation& inv, int world_size, bool warn = true) {
  RunOptions r;
  model::ModelConfig& m = r.trainer.model;
  m.layers = opt<int64_t>(inv, "model.layers");
  m.dim = opt<int64_t>(inv, "model.dim");
  m.heads = opt<int64_t>(inv, "model.heads");
  m.vocab = opt<int64_t>(inv, "model.vocab");
  m.rope_base = opt<double>(inv, "model.rope_base");
  require(m.rope_base > 1 && std::isfinite(m.rope_base), "model.rope_base must be a finite number > 1");
  m.init_std = opt<double>(inv, "model.init_std");
  m.rope_dims = opt<int64_t>(inv, "model.rope_dims");
  require(m.rope_dims >= 0 && m.rope_dims % 2 == 0 && m.rope_dims <= m.head_dim(),
          "model.rope_dims=" + std::to_string(m.rope_dims) + ": must be even and <= the head dim " +
              std::to_string(m.head_dim()));
  require(m.init_std > 0 && std::isfinite(m.init_std), "model.init_std must be a finite number > 0");
  m.prev_token_embedding = opt<bool>(inv, "model.prev_token_embedding");
  require(m.layers >= 1 && m.layers <= kMaxLayers, "model.layers=" + std::to_string(m.layers) + ": must be in [1, " +
                                                      std::to_string(kMaxLayers) + "]");
  require(m.dim >= 2, "model.dim=" + std::to_string(m.dim) + ": must be >= 2");
  require(m.heads >= 1, "model.heads=" + std::to_string(m.heads) + ": must be >= 1");
  require(m.dim % m.heads == 0, "model.heads=" + std::to_string(m.heads) + " does not divide model.dim=" +
                                    std::to_string(m.dim));
  require(m.head_dim() % 2 == 0, "model.dim / model.heads = " + std::to_string(m.head_dim()) +
                                     ": rotary positions need an even head dimension");
  require(m.vocab >= 2, "model.vocab=" + std::to_string(m.vocab) + ": must be >= 2");
  m.mlp_hidden = opt<int64_t>(inv, "model.mlp_hidden");
  require(m.mlp_hidden >= 0, "model.mlp_hidden must be >= 0");
  if (m.mlp_hidden == 0) m.mlp_hidden = 4 * m.dim;
  const int64_t n = parse_size("data.seq_len", opt<std::string>(inv, "data.seq_len"));
  require(n >= 2, "data.seq_len=" + std::to_string(n) + ": must be >= 2");
  m.schedule = make_schedule(parse_size_list("model.segment_lengths", opt<std::string>(inv, "model.segment_lengths")),
                             parse_size_list("model.dilation_rates", opt<std::string>(inv, "model.dilation_rates")),
                             false, kScheduleNames);
  check_shardable(m.schedule, n, world_size, SpanningSegments::may_end_short, kScheduleNames);
  m.causal = true;  // heads < max dilation: the attention backend warns, naming the branch (warn_coverage)

  r.trainer.seq_len = n;
  r.trainer.seed = opt<uint64_t>(inv, "train.seed");
  r.steps = opt<int64_t>(inv, "train.steps");
  require(r.steps >= 1, "train.steps=" + std::to_string(r.steps) + ": must be >= 1");
  r.trainer.lr.peak = opt<double>(inv, "train.lr");
  require(r.trainer.lr.peak > 0 && std::isfinite(r.trainer.lr.peak), "train.lr must be a finite number > 0");
  r.trainer.lr.warmup_steps = opt<int64_t>(inv, "train.warmup");
  require(r.trainer.lr.warmup_steps >= 0, "train.warmup must be >= 0");
  r.trainer.lr.total_steps = r.steps;
  r.trainer.lr.min_lr_ratio = opt<double>(inv, "train.min_lr_ratio");
  require(r.trainer.lr.min_lr_ratio >= 0 && r.trainer.lr.min_lr_ratio <= 1, "train.min_lr_ratio must be in [0, 1]");
  r.trainer.adamw.weight_decay = opt<double>(inv, "train.weight_decay");
  r.trainer.adamw.beta1 = opt<double>(inv, "train.beta1");
  r.trainer.adamw.beta2 = opt<double>(inv, "train.beta2");
  require(r.trainer.adamw.beta1 >= 0 && r.trainer.adamw.beta1 < 1 && r.trainer.adamw.beta2 >= 0 &&
              r.trainer.adamw.beta2 < 1,
          "train.beta1 / train.beta2 must be in [0, 1)");
  require(r.trainer.adamw.weight_decay >= 0 && std::isfinite(r.trainer.adamw.weight_decay),
          "train.weight_decay must be a finite number >= 0");
  r.trainer.clip_norm = opt<double>(inv, "train.clip");
  require(r.trainer.clip_norm >= 0 && std::isfinite(r.trainer.clip_norm), "train.clip must be >= 0 (0 disables)");
  r.regather_kv = opt<bool>(inv, "train.regather_kv");
  const int threads = opt<int>(inv, "train.threads");
  require(threads >= 0 && threads <= kMaxThreads, "train.threads must be in [0, " + std::to_string(kMaxThreads) + "]");
  if (threads > 0) omp_set_num_threads(threads);
  r.peak_gflops = opt<double>(inv, "train.peak_gflops");
  require(r.peak_gflops > 0 && std::isfinite(r.peak_gflops), "train.peak_gflops must be a finite number > 0");

  train::DataConfig& d = r.data;
  d.task = opt<std::string>(inv, "data.task");
  d.path = opt<std::string>(inv, "data.path");
  d.seq_len = n;
  d.seed = r.trainer.seed;
  d.supervision = opt<std::string>(inv, "data.supervision");
  d.key_digits = opt<int64_t>(inv, "data.key_digits");
  d.key_repeats = opt<int64_t>(inv, "data.key_repeats");
  d.records = opt<int64_t>(inv, "data.records");
  d.queries = opt<int64_t>(inv, "data.queries");
  d.curriculum_steps = opt<int64_t>(inv, "data.curriculum_steps");
  d.curriculum_min_span = opt<int64_t>(inv, "data.curriculum_min_span");
  require(d.curriculum_steps >= 0, "data.curriculum_steps=" + std::to_string(d.curriculum_steps) + ": must be >= 0");
  require(d.curriculum_min_span >= 0,
          "data.curriculum_min_span=" + std::to_string(d.curriculum_min_span) + ": must be >= 0");
  d.filler_period = opt<int64_t>(inv, "data.filler_period");
  d.vocab = m.vocab;
  if (warn && d.task == "file" && d.supervision == "answer")
    log::warn("data.supervision=answer: data.task=file has no answers; the loss covers every token, as with all");

  r.trainer.answer_weight = opt<double>(inv, "train.answer_weight");
  require(r.trainer.answer_weight > 0 && std::isfinite(r.trainer.answer_weight),
          "train.answer_weight must be a finite number > 0");
  const auto lens = parse_size_list("data.short_seq_len", opt<std::string>(inv, "data.short_seq_len"));
  const auto counts = parse_size_list("data.short_steps", opt<std::string>(inv, "data.short_steps"));
  require(lens.size() == counts.size(), "data.short_seq_len has " + std::to_string(lens.size()) +
                                            " stages but data.short_steps has " + std::to_string(counts.size()));
  int64_t end = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    const std::string stage = "data.short_seq_len=" + std::to_string(lens[i]) + " with data.short_steps=" +
                              std::to_string(counts[i]) + " (stage " + std::to_string(i + 1) + ")";
    require(lens[i] >= 0 && counts[i] >= 0, stage + ": both must be >= 0");
    if (lens[i] == 0 && counts[i] == 0) continue;  // the default: no curriculum
    require(lens[i] > 0 && counts[i] > 0, stage + ": a stage needs a length and a step count (0 and 0: none)");
    require(lens[i] >= 2, stage + ": the length must be >= 2");
    require(lens[i] < n, stage + ": the length must be below data.seq_len=" + std::to_string(n));
    require(counts[i] <= std::numeric_limits<int64_t>::max() - end, "data.short_steps add up past 2^63 - 1");
    end += counts[i];
    r.stage_len.push_back(lens[i]);
    r.stage_end.push_back(end);
  }
  if (warn && end >= r.steps)
    log::warn_once("data.short_steps add up to " + std::to_string(end) + " steps, train.steps=" +
                   std::to_string(r.steps) + ": the run never trains at data.seq_len=" + std::to_string(n));
  r.checkpoint_dir = opt<std::string>(inv, "checkpoint.dir");
  r.checkpoint_every = opt<int64_t>(inv, "checkpoint.every");
  r.checkpoint_keep = opt<int64_t>(inv, "checkpoint.keep");
  require(r.checkpoint_every >= 0, "checkpoint.every must be >= 0");
  require(r.checkpoint_keep >= 0, "checkpoint.keep must be >= 0");
  require(r.checkpoint_every == 0 || !r.checkpoint_dir.empty(), "checkpoint.every needs checkpoint.dir");
  r.log_every = opt<int64_t>(inv, "log.every");
  require(r.log_every >= 1, "log.every must be >= 1");
  r.log_jsonl = opt<std::string>(inv, "log.jsonl");
  r.eval_every = opt<int64_t>(inv, "eval.every");
  r.eval_sequences = opt<int64_t>(inv, "eval.sequences");
  require(r.eval_every >= 0, "eval.every must be >= 0");
  require(r.eval_sequences >= 1, "eval.sequences must be >= 1");
  r.dump_path = opt<std::string>(inv, "dump.activations");
  // Where files go, before any step: a bad path would otherwise surface only at the first write.
  if (!r.checkpoint_dir.empty()) io::check_output_directory("checkpoint.dir=" + r.checkpoint_dir, r.checkpoint_dir);
  require(r.log_jsonl.empty() || r.dump_path.empty() || !io::same_file(r.log_jsonl, r.dump_path),
          "log.jsonl and dump.activations name the same file");
  // Nor the temporary file either is written through (before: the dump took a log.jsonl there for a crashed
  // run's file, and the log was lost).
  require(r.log_jsonl.empty() || r.dump_path.empty() || !io::same_file(r.log_jsonl, r.dump_path + ".tmp"),
          "log.jsonl=" + r.log_jsonl + " is dump.activations' temporary file " + r.dump_path + ".tmp; write it elsewhere");
  require(r.log_jsonl.empty() || r.dump_path.empty() || !io::same_file(r.dump_path, r.log_jsonl + ".tmp"),
          "dump.activations=" + r.dump_path + " is log.jsonl's temporary file " + r.log_jsonl + ".tmp; write it elsewhere");
  // The training data is input: no output may land on it (or on its name plus .tmp, renamed over it).
  if (!d.path.empty())
    for (const auto& [option, path] : {std::pair<const char*, const std::string&>{"log.jsonl", r.log_jsonl},
                                       {"dump.activations", r.dump_path}})
      require(path.empty() || (!io::same_file(path, d.path) && !io::same_file(path + ".tmp", d.path)),
              std::string(option) + "=" + path + " is data.path=" + d.path + " (the training data); write it elsewhere");
  // Nor on checkpoint.dir, or on a name its checkpoints take there: a dump renamed onto the directory
  // failed only at the end, every step lost; one named like a checkpoint was replaced by it.
  if (!r.checkpoint_dir.empty())
    for (const auto& [option, path] : {std::pair<const char*, const std::string&>{"log.jsonl", r.log_jsonl},
                                       {"dump.activations", r.dump_path}}) {
      if (path.empty()) continue;
      require(!same_path(path, r.checkpoint_dir),
              std::string(option) + "=" + path + " is checkpoint.dir=" + r.checkpoint_dir + "; write it elsewhere");
      require(!same_path(path + ".tmp", r.checkpoint_dir),
              std::string(option) + "=" + path + " is written as " + path + ".tmp first, which is checkpoint.dir=" +
                  r.checkpoint_dir + "; write it elsewhere");
      const std::string name = std::filesystem::path(path).filename().string();
      require(!(io::is_checkpoint_file_name(name) || name == kLockFile || name == kLogStart) ||
                  !same_path(io::directory_of(path), r.checkpoint_dir),
              std::string(option) + "=" + path + " is a name that checkpoint.dir=" + r.checkpoint_dir +
                  " uses for its checkpoints; write it elsewhere");
    }
  // After the collisions above, whose messages say more. Only in the config phase (warn = false there):
  // run_train validates again on every rank, and rank 0 may by then hold the dump's temporary file, which
  // a later rank would take for another writer's. An output in a checkpoint.dir not made yet is checked
  // once the run has made it (train_command's check).
  if (!warn && !r.log_jsonl.empty() && !in_checkpoint_dir_to_make(r, r.log_jsonl))
    io::check_json_output_path("log.jsonl", r.log_jsonl, "appending would damage it");
  if (!warn && !r.dump_path.empty() && !in_checkpoint_dir_to_make(r, r.dump_path))
    io::check_hdf5_output_path("dump.activations", r.dump_path, io::kActivationFormat);
  for (int64_t l : parse_size_list("dump.layers", opt<std::string>(inv, "dump.layers"))) {
    require(l >= 0 && l < m.layers, "dump.layers: layer " + std::to_string(l) + " outside [0, model.layers)");
    r.dump_layers.insert(l);
  }
  for (int64_t s : parse_size_list("dump.steps", opt<std::string>(inv, "dump.steps"))) {
    require(s >= 1, "dump.steps: step " + std::to_string(s) + " must be >= 1");
    r.dump_steps.insert(s);
    if (warn && !r.dump_path.empty() && s > r.steps)
      log::warn("dump.steps: step " + std::to_string(s) + " comes after train.steps=" + std::to_string(r.steps) +
                ": it is never dumped");
    for (size_t i = 0; warn && i < r.stage_end.size() && !r.dump_path.empty(); ++i)
      if (s <= r.stage_end[i] && (i == 0 || s > r.stage_end[i - 1])) {
        log::warn("dump.steps: step " + std::to_string(s) + " trains at N = " + std::to_string(r.stage_len[i]) +
                  " (data.short_seq_len); dumps hold data.seq_len rows only, so it is not dumped");
        break;
      }
  }
  return r;
}

std::string json_number(double x) {
  if (!std::isfinite(x)) return "null";  // JSON has no nan / inf
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

// FLOPs of one training step (forward + backward) of the whole job: dense matmuls plus attention pairs.
double step_flops(const model::ModelConfig& m, int64_t n) {
  const double pairs = count_pairs(m.schedule, n, m.heads, true, HeadOffsets::paper);
  const double attention = double(m.layers) * (flops_forward(pairs, m.head_dim()) + flops_backward(pairs, m.head_dim()));
  return model::dense_flops_per_token(m) * double(n) + attention;
}

// log.jsonl, written by rank 0. A resumed run first drops its lines after its checkpoint's step (a crash
// after logging but before the next checkpoint left them; this run logs those steps again) and a torn
// last line, so the file reads like one uninterrupted run; an earlier run's lines before them stay. A failed write stops the run: lines are not
// lost silently.
//
// A run that stopped before its first checkpoint (preempted, killed) and is started again in the same
// checkpoint.dir is a fresh run, whose earlier start's lines would be read as a run of their own (steps 1-5,
// then 1, 2, ...). So until its first checkpoint a fresh run keeps a note in checkpoint.dir (kLogStart) of
// which file it logs to (inode), where its lines begin and end (rewritten after each line) and a
// fingerprint of the text before them. A fresh start that finds the file as the note left it (the same
// inode and text before, nothing after the end but a torn line) drops those lines first. Anything else
// (another run appended since, the file replaced) keeps every line: the note never costs another run's.
// Each line says which run wrote it (the id a run keeps through its checkpoints): a resume drops only its own.
constexpr const char* kRunKey = "\"run\": \"";

// Whether `id` can be a run id (what new_run_id makes, or a hand-edited checkpoint's): it goes into JSON.
bool valid_run_id(const std::string& id) {
  return !id.empty() && id.size() <= 32 &&
         std::all_of(id.begin(), id.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

// A new run's id: 16 hex digits from rank 0's random device, the same on every rank of `comm`.
std::string new_run_id(MPI_Comm comm, int rank) {
  uint64_t id = 0;
  if (rank == 0) {
    std::random_device device;
    id = (static_cast<uint64_t>(device()) << 32) ^ device();
  }
  if (comm != MPI_COMM_NULL) LONGCTX_CHECK_MPI(MPI_Bcast(&id, 1, MPI_UINT64_T, 0, comm));
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(id));
  return text;
}

class JsonLog {
 public:
  // `kept_through`: a resumed run keeps its lines through this step and logs the later ones again; -1: a
  // fresh run.
  JsonLog(const std::string& path, bool active, int64_t kept_through, const std::string& checkpoint_dir,
          const std::string& run_id)
      : path_(path) {
    if (!active || path.empty()) return;
    Contents file = read();
    if (kept_through >= 0) {
      trim_after(file, kept_through, run_id);
    } else {  // a fresh run appends, as it always has
      if (!checkpoint_dir.empty()) {
        note_ = checkpoint_dir + "/" + kLogStart;
        drop_earlier_start(file);
      }
      // A last line without its '\n' (a run killed mid-write) would have this run's first line glued to it.
      if (file.torn) {
        file = parse(file.text.substr(0, file.lines.empty() ? 0 : file.lines.back().end));
        io::write_text_durably(file_path(), file.text);
        log::info("log.jsonl: dropped its torn last line (an earlier run stopped while writing it)");
      }
      int64_t earlier = 0;
      for (const Line& line : file.lines) earlier += line.end - line.begin > 1;  // not a blank line
      if (earlier > 0) {
        log::warn("log.jsonl=" + path + " already holds " + std::to_string(earlier) + " line(s) of an earlier run; "
                  "this run starts at step 1 and appends after them (remove the file to start it clean)");
        // Step 1 is logged whatever log.every says: where the steps go down is where this run's lines
        // start, which a resume needs before any checkpoint (trim_after).
        log_step_one_ = true;
      }
    }
    out_.open(path, std::ios::app);
    if (!out_) throw UsageError("log.jsonl=" + path + ": cannot open for appending");
    remember_open_file();
    start_note(file.text);  // `file` is the file as this run starts appending to it
  }
  // The first checkpoint is committed: a restart resumes from it (and trims by step); no note any more.
  void forget_start() {
    if (note_.empty()) return;
    std::remove(note_.c_str());
    note_.clear();
  }
  // Whether `step` is logged off the log.every grid: step 1 of a fresh run appending to earlier lines.
  bool must_log(int64_t step) const { return log_step_one_ && step == 1; }
  void write(const std::string& line) {
    if (!out_.is_open()) return;
    reopen_if_moved();
    out_ << line << "\n" << std::flush;
    if (!out_) throw InternalError("log.jsonl=" + path_ + ": write failed (disk full?); the checkpoints are unaffected");
    end_ += line.size() + 1;
    if (!note_.empty()) write_note();
  }

 private:
  struct Line {
    size_t begin, end;  // [begin, end) of the text, its '\n' included
    int64_t step;       // -1: none
    std::string run;    // its "run" (""; none: a line of a version before runs had ids, or not train's)
  };
  struct Contents {
    std::string text;
    std::vector<Line> lines;  // the complete ones
    bool torn = false;        // a last line without its '\n' (a crash mid-write)
  };
  // Where a rewrite goes: the file the name leads to, so that a link named log.jsonl stays a link to it
  // (before: the link was replaced by a file, and its target kept the dropped lines and got no more).
  std::string file_path() const {
    std::error_code error;
    const std::filesystem::path target = std::filesystem::canonical(path_, error);
    return error ? path_ : target.string();
  }
  // The file as it is (empty when there is none), read once.
  Contents read() const {
    std::ifstream in(path_);
    return parse(in ? std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()) : std::string());
  }
  // `text` in lines: what the file holds after it was cut to `text` (no need to read it again).
  static Contents parse(std::string text_of_file) {
    Contents file;
    file.text = std::move(text_of_file);
    const std::string& text = file.text;
    for (size_t begin = 0; begin < text.size();) {
      const size_t end = text.find('\n', begin);
      if (end == std::string::npos) {
        file.torn = true;
        break;
      }
      // Searched within the line only (a search to the end of the file for a key a line lacks made reading
      // a long log quadratic).
      const std::string_view line(text.data() + begin, end - begin);
      const size_t at = line.find("\"step\": ");
      const int64_t line_step = at != line.npos ? std::strtoll(text.c_str() + begin + at + 8, nullptr, 10) : -1;
      std::string run;
      if (const size_t key = line.find(kRunKey); key != line.npos) {
        const size_t from = key + std::strlen(kRunKey), to = line.find('"', from);
        if (to != line.npos) run = std::string(line.substr(from, to - from));
      }
      file.lines.push_back({begin, end + 1, line_step, std::move(run)});
      begin = end + 1;
    }
    return file;
  }
  static std::string prefix_fingerprint(const std::string& text, size_t bytes) {
    return Fingerprint().add(text.data(), std::min(bytes, text.size())).hex();
  }
  // Not synced: a note lost in a crash is older than the file, which then keeps its lines.
  void remember_open_file() {
    struct stat info {};
    if (::stat(path_.c_str(), &info) != 0) return;
    open_device_ = info.st_dev;
    open_inode_ = info.st_ino;
  }
  // A log.jsonl removed or replaced while the run writes to it (a log rotation, a mistaken rm) is opened
  // again by name, and that is said (before: the lines went on into the removed file, unseen, exit 0).
  void reopen_if_moved() {
    struct stat info {};
    if (::stat(path_.c_str(), &info) == 0 && info.st_dev == open_device_ && info.st_ino == open_inode_) return;
    out_.close();
    out_.clear();
    const Contents file = read();
    out_.open(path_, std::ios::app);
    if (!out_)
      throw InternalError("log.jsonl=" + path_ + ": removed or replaced while the run wrote to it, and cannot be opened "
                          "again; the checkpoints are unaffected");
    log::warn("log.jsonl=" + path_ + ": removed or replaced while the run wrote to it; its next lines go to the file " +
              "now at that name (" + (file.text.empty() ? "a new one" : "appended") + "), the earlier ones went with the old");
    remember_open_file();
    start_note(file.text);  // this start's lines begin here now
  }
  // The note of where this start's lines begin: after `text`, the file out_ appends to as it holds now.
  void start_note(const std::string& text) {
    if (note_.empty()) return;
    begin_ = end_ = text.size();
    before_ = prefix_fingerprint(text, begin_);
    write_note();
  }
  // Said once when it fails (a full disk): a restart then keeps this start's lines, as without a note.
  void write_note() {
    std::ofstream note(note_, std::ios::trunc);
    note << static_cast<uint64_t>(open_inode_) << " " << begin_ << " " << end_ << " " << before_ << "\n";
    note.close();
    if (note || note_failed_) return;
    note_failed_ = true;
    log::warn("log.jsonl: cannot write " + note_ + " (" + std::strerror(errno) + "): if this run stops before its " +
              "first checkpoint, a restart in the same checkpoint.dir keeps the lines it wrote and appends after them");
  }
  // The lines an earlier start of this run wrote, as its note gives them, when the file is as that start
  // left it: dropped, from the file and from `file`.
  void drop_earlier_start(Contents& file) const {
    std::ifstream in(note_);
    uint64_t inode = 0;
    size_t begin = 0, end = 0;
    std::string before;
    struct stat info {};
    if (!(in >> inode >> begin >> end >> before) || ::stat(path_.c_str(), &info) != 0 ||
        static_cast<uint64_t>(info.st_ino) != inode || begin > end || end > file.text.size() || begin == file.text.size() ||
        file.text.find('\n', end) != std::string::npos || prefix_fingerprint(file.text, begin) != before)
      return;
    int64_t dropped = 0;
    for (const Line& line : file.lines) dropped += line.begin >= begin;
    file = parse(file.text.substr(0, begin));
    io::write_text_durably(file_path(), file.text);
    log::info("log.jsonl: dropped " + std::to_string(dropped) + " line(s) of an earlier start of this run, which stopped " +
              "before its first checkpoint (" + note_ + "); this run logs those steps again");
  }
  // Only this run's lines: those with its run id. A run without one (resumed from a checkpoint written
  // before runs had ids) wrote lines without one: its own are the untagged lines from where their steps
  // last went down (a fresh run appended to an earlier run's file starts again at step 1, which it always
  // logs). Another run's lines stay wherever they are (before: two jobs logging to one file, the resumed
  // one dropped the other's later lines).
  void trim_after(const Contents& file, int64_t step, const std::string& run_id) {
    const std::vector<Line>& lines = file.lines;
    size_t run_begin = 0;
    for (size_t i = 0, previous = lines.size(); i < lines.size(); ++i) {
      if (lines[i].step < 0 || !lines[i].run.empty()) continue;
      if (previous < lines.size() && lines[i].step <= lines[previous].step) run_begin = i;
      previous = i;
    }
    const auto ours = [&](size_t i) {
      return run_id.empty() ? lines[i].run.empty() && i >= run_begin : lines[i].run == run_id;
    };
    std::string kept;
    int64_t dropped = file.torn ? 1 : 0;
    for (size_t i = 0; i < lines.size(); ++i) {
      if (ours(i) && lines[i].step > step) {
        ++dropped;
        continue;
      }
      kept.append(file.text, lines[i].begin, lines[i].end - lines[i].begin);
    }
    if (dropped == 0) return;
    io::write_text_durably(file_path(), kept);
    log::info("log.jsonl: dropped " + std::to_string(dropped) + " line(s) after step " + std::to_string(step) +
              " (or torn), which this run logs again from its checkpoint");
  }

  std::string path_;
  std::ofstream out_;
  bool log_step_one_ = false;
  bool note_failed_ = false;  // write_note warned
  dev_t open_device_ = 0;     // the file out_ writes to (its inode also goes into the note)
  ino_t open_inode_ = 0;
  std::string note_;  // checkpoint.dir's kLogStart until the first checkpoint; "" when none
  size_t begin_ = 0, end_ = 0;  // this run's lines in the file
  std::string before_;          // fingerprint of the text before them
};

void dump_layers(io::ActivationDump& dump, model::Model& model, const RunOptions& r, int64_t step,
                 io::RowRange rows) {
  const auto& m = model.config();
  for (int64_t layer : r.dump_layers)
    for (const char* name : {"q", "k", "v", "o"}) {
      Tensor block = model.layer_tensor(layer, name);
      block.reshape({rows.rows(), m.heads, m.head_dim()});
      dump.write(step, layer, name, {r.trainer.seq_len, m.heads, m.head_dim()}, rows, block);
    }
}

// Rank 0 holds an exclusive lock on <checkpoint.dir>/.longctx.lock for the whole run (the kernel drops it
// when the process ends, kill -9 included): two runs sharing one directory would prune and rename each
// other's checkpoints. The file names the holder. A file system without flock (some Lustre mounts) gets a
// warning and no lock.
int g_checkpoint_lock = -1;  // rank 0's lock on <checkpoint.dir>/.longctx.lock, for the run's lifetime
// What lock_checkpoint_dir made, for a run refused before its first step (unlock_checkpoint_dir).
struct {
  std::string lock_file;                // the lock file's path, when this run created it
  std::vector<std::string> directories;  // the directories it created, outermost first
} g_checkpoint_dir_made;

// The holder a lock file names ("pid N on HOST, since ..."), trailing blanks cut; nullopt when nothing
// could be read. Closes `fd`.
std::optional<std::string> read_lock_holder(int fd) {
  char text[256] = {};
  const ssize_t got = ::pread(fd, text, sizeof text - 1, 0);
  ::close(fd);
  if (got <= 0) return std::nullopt;
  std::string holder(text, static_cast<size_t>(got));
  while (!holder.empty() && std::isspace(static_cast<unsigned char>(holder.back()))) holder.pop_back();
  return holder;
}

void lock_checkpoint_dir(const std::string& dir) {
  if (g_checkpoint_lock >= 0) return;
  std::error_code error;
  // The directories missing on the way to `dir` as written (create_directories makes them so: "a/../b"
  // makes a, then b), outermost first: a refused run removes them again. "." and ".." are no directories
  // of their own.
  std::vector<std::string> missing;
  for (std::filesystem::path up = dir; !up.empty() && up != up.root_path(); up = up.parent_path()) {
    if (up.filename() == "." || up.filename() == ".." || up.filename().empty()) continue;
    if (std::filesystem::symlink_status(up, error).type() != std::filesystem::file_type::not_found) break;
    missing.insert(missing.begin(), up.string());
  }
  std::filesystem::create_directories(dir, error);
  if (error) throw UsageError("checkpoint.dir=" + dir + ": cannot create it: " + error.message(), "checkpoint.dir");
  const std::string path = dir + "/" + kLockFile;
  for (;;) {
    bool created = true;
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 && errno == EEXIST) {
      created = false;
      fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0)
      throw UsageError("checkpoint.dir=" + dir + ": cannot open " + path + ": " + std::strerror(errno), "checkpoint.dir");
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int why = errno;
      if (why != EWOULDBLOCK) {
        ::close(fd);
        log::warn("checkpoint.dir=" + dir + ": this file system cannot lock " + path + " (" + std::strerror(why) +
                  "): nothing stops a second run from using the same directory at once");
        return;
      }
      const std::string who = read_lock_holder(fd).value_or("another run");
      throw UsageError("checkpoint.dir=" + dir + " is in use by a run still going (" + who +
                       "): two runs in one directory would delete each other's checkpoints; wait for it to end, "
                       "stop it, or choose another checkpoint.dir. If that host is down or that process is gone, "
                       "a network file system kept its lock: remove " + path, "checkpoint.dir");
    }
    // Locked; but a refused run removes the lock file it made (unlock_checkpoint_dir), and one opened just
    // before that is locked in vain: the file must still be there.
    struct stat locked {}, named {};
    if (::fstat(fd, &locked) == 0 && ::stat(path.c_str(), &named) == 0 && locked.st_dev == named.st_dev &&
        locked.st_ino == named.st_ino) {
      // Only now are the file and the directories this run's: a run refused after losing the race for
      // the lock (above) leaves the winner's alone.
      g_checkpoint_dir_made.directories = missing;
      if (created) g_checkpoint_dir_made.lock_file = path;
      g_checkpoint_lock = fd;
      break;
    }
    ::close(fd);
  }
  const int fd = g_checkpoint_lock;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::time_t now = std::time(nullptr);
  char since[32] = {};
  std::strftime(since, sizeof since, "%Y-%m-%d %H:%M:%S", std::localtime(&now));
  const std::string who = "pid " + std::to_string(::getpid()) + " on " + host + ", since " + since + "\n";
  // Synced: the other ranks read it back (shared_inputs), from other nodes of a network file system too.
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, who.data(), who.size(), 0) != static_cast<ssize_t>(who.size()) ||
      ::fsync(fd) != 0)
    log::warn("checkpoint.dir=" + dir + ": cannot write " + path + " (" + std::strerror(errno) +
              "); the lock holds, unnamed");
}

// A run refused after the config phase made checkpoint.dir (another rank's check failed, or the ranks'
// comparison did): the lock file and the directories this run created go again, so that exit 2 / 3 leave
// nothing behind. A directory that is not empty by then (someone else's file) stays.
void unlock_checkpoint_dir() {
  // Unlinked while still locked: a run that opened it meanwhile and locks it after the close sees it gone
  // (lock_checkpoint_dir checks) and makes a new one.
  if (!g_checkpoint_dir_made.lock_file.empty()) ::unlink(g_checkpoint_dir_made.lock_file.c_str());
  if (g_checkpoint_lock >= 0) ::close(g_checkpoint_lock);
  g_checkpoint_lock = -1;
  for (auto dir = g_checkpoint_dir_made.directories.rbegin(); dir != g_checkpoint_dir_made.directories.rend(); ++dir)
    if (::rmdir(dir->c_str()) != 0) break;
  g_checkpoint_dir_made = {};
}

// Rank 0, before each checkpoint: the locked file must still be <checkpoint.dir>/.longctx.lock. A directory
// removed (or moved) while the run held it was made again by the next checkpoint, without the lock, and a
// second run was let in: both wrote checkpoints, latest and log.jsonl there.
void require_checkpoint_dir_lock(const std::string& dir) {
  if (g_checkpoint_lock < 0) return;  // no lock (a file system without flock: warned at the start)
  const std::string path = dir + "/" + kLockFile;
  struct stat held {}, there {};
  if (::fstat(g_checkpoint_lock, &held) != 0 || ::stat(path.c_str(), &there) != 0 || held.st_dev != there.st_dev ||
      held.st_ino != there.st_ino)
    throw InternalError("checkpoint.dir=" + dir + " was removed or replaced while this run held it (its lock file " +
                        path + " is gone or another): no checkpoint is written where another run may be writing; "
                        "nothing of this step was saved");
}

// The data of each shorter stage of the length curriculum (data.seq_len's is train::make_dataset(r.data)).
std::vector<std::unique_ptr<train::Dataset>> curriculum_datasets(const RunOptions& r) {
  std::vector<std::unique_ptr<train::Dataset>> stages;
  for (int64_t seq_len : r.stage_len) {
    train::DataConfig stage = r.data;
    stage.seq_len = seq_len;
    stage.seq_len_option = "data.short_seq_len";
    stage.split_seq_len = r.data.seq_len;  // the held-out tail stays data.seq_len's
    stages.push_back(train::make_dataset(stage));
  }
  return stages;
}

// A fault-injection variable's whole number: digits only, at most 18.
bool whole_number(const std::string& text, int64_t& out) {
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos) return false;
  out = std::stoll(text);
  return true;
}

// LONGCTX_FAULT_NAN_GRADIENT=S[:R]: rank R (default 0) puts a nan into its own gradient of step S, before the
// all-reduce. It tests a finite loss with a non-finite gradient, which real numbers reach only through
// rounding that depends on the build and the CPU (a huge train.lr: dS = P * (dP - delta) cancels exactly in
// one build and leaves an overflowing remainder in another).
struct NanGradientFault {
  int64_t step = 0;
  int rank = 0;
};

std::optional<NanGradientFault> nan_gradient_fault(int world_size) {
  const auto value = process_getenv("LONGCTX_FAULT_NAN_GRADIENT");
  if (!value) return std::nullopt;
  const std::string& v = *value;
  const size_t colon = v.find(':');
  NanGradientFault fault;
  int64_t rank = 0;
  if (!whole_number(v.substr(0, colon), fault.step) || fault.step < 1 ||
      (colon != std::string::npos && (!whole_number(v.substr(colon + 1), rank) || rank >= world_size)))
    throw UsageError("LONGCTX_FAULT_NAN_GRADIENT=" + v + ": expected STEP or STEP:RANK (a step >= 1, a rank below " +
                     std::to_string(world_size) + ")");
  fault.rank = static_cast<int>(rank);
  log::warn_once("LONGCTX_FAULT_NAN_GRADIENT: rank " + std::to_string(fault.rank) + " puts a nan into its gradient at step " +
                 std::to_string(fault.step) + " (fault injection for the tests)");
  return fault;
}

// LONGCTX_FAULT_SIGNAL_AT=checkpoint:S, dump:S or eval:S: rank 0 raises SIGUSR1 on itself as it ends writing
// step S's checkpoint (or activation dump), or after the first sequence of step S's evaluation, as a signal
// that arrives there would: the tests that such a signal stops the run at that step, where a real one
// lands only by timing. (The other ranks get none: they learn it from rank 0, as from a real one.)
struct SignalFault {
  std::string at;  // checkpoint, dump or eval
  int64_t step = 0;
};

std::optional<SignalFault> signal_fault_at() {
  const auto value = process_getenv("LONGCTX_FAULT_SIGNAL_AT");
  if (!value) return std::nullopt;
  const std::string& v = *value;
  const size_t colon = v.find(':');
  SignalFault fault;
  fault.at = v.substr(0, colon);
  if ((fault.at != "checkpoint" && fault.at != "dump" && fault.at != "eval") || colon == std::string::npos ||
      !whole_number(v.substr(colon + 1), fault.step) || fault.step < 1)
    throw UsageError("LONGCTX_FAULT_SIGNAL_AT=" + v + ": expected checkpoint:STEP, dump:STEP or eval:STEP (a step >= 1)");
  log::warn_once("LONGCTX_FAULT_SIGNAL_AT: rank 0 raises SIGUSR1 in the " + fault.at + " of step " +
                 std::to_string(fault.step) + " (fault injection for the tests)");
  return fault;
}

int run_train(Invocation& inv) {
  catch_train_stop_signals();  // again: MPI_Init or a launcher may have blocked them since main()
  comm::Communicator& world = inv.process.world();
  const int P = world.size(), rank = world.rank();
  const DeviceChoice device = attention_device(inv);  // --device / --dtype / --comm, before anything else
  const RunOptions r = validate(inv, P);
  const std::optional<NanGradientFault> nan_fault = nan_gradient_fault(P);
  const std::optional<SignalFault> signal_fault = signal_fault_at();
  // The fault above, where it applies: rank 0, in the checkpoint, dump or eval of `step`.
  const auto signal_if_faulted = [&](const char* at, int64_t step) {
    if (signal_fault && rank == 0 && signal_fault->at == at && signal_fault->step == step) std::raise(SIGUSR1);
  };
  const auto data = train::make_dataset(r.data);
  // Evaluation reads each distinct sequence once: a token file may hold out fewer than eval.sequences.
  int64_t eval_sequences = r.eval_sequences;
  if (const int64_t distinct = data->eval_sequence_count(); distinct > 0 && distinct < eval_sequences) {
    if (!data->evaluates_on_training_data())  // else the warning below says it
      log::warn_once("eval.sequences=" + std::to_string(eval_sequences) + ", but data.path=" + r.data.path +
                     " holds out " + std::to_string(distinct) + ": each evaluation scores those " +
                     std::to_string(distinct));
    eval_sequences = distinct;
  }
  if (data->evaluates_on_training_data())
    log::warn_once("data.path=" + r.data.path + " holds a single sequence of data.seq_len + 1 tokens, so none is "
                   "held out: eval_loss / eval_accuracy are measured on the training sequence");
  const MPI_Comm mpi = P > 1 ? mpi_handle(world) : MPI_COMM_NULL;
  const std::string config_text = config_text_of(inv);

  // Attention on the CPU ranks, on this rank's GPU, or on one GPU per rank (made before any file is touched).
  std::unique_ptr<comm::Communicator> device_comm;
  std::unique_ptr<model::SequenceAttention> attention_impl;
  if (device.device == "cpu") {
    auto sharded = std::make_unique<model::ShardedAttention>(world);
    if (r.regather_kv) sharded->never_keep();
    attention_impl = std::move(sharded);
  } else if (P == 1) {
    attention_impl = std::make_unique<model::LocalAttention>(make_attention_backend("cuda", device.dtype));
  } else {
    device_comm = make_device_comm(inv.process, device.comm);
    attention_impl = std::make_unique<model::GpuShardedAttention>(*device_comm, device.dtype);
  }
  if (device.device == "cuda")
    log::info("attention on " + cuda_description() + " (" + to_string(device.dtype) + ")" +
              (device_comm ? ", device communicator " + device_comm->backend() : std::string()));
  model::SequenceAttention& attention = *attention_impl;
  train::Trainer trainer(r.trainer, world, attention);
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
  // The stage that trains step `step` (0-based); `stages`: past the curriculum, at data.seq_len.
  const auto stage_of = [&](int64_t step) {
    size_t i = 0;
    while (i < stages && step >= r.stage_end[i]) ++i;
    return i;
  };
  // The sequence length stage `i` trains at.
  const auto length_of = [&](size_t i) { return i < stages ? r.stage_len[i] : r.trainer.seq_len; };
  // Tokens trained on through `step` updates: the curriculum's shorter stages first, then data.seq_len.
  const auto tokens_through = [&](int64_t step) {
    int64_t tokens = 0, done = 0;
    for (size_t i = 0; i < stages && done < step; ++i) {
      const int64_t in_stage = std::min(step, r.stage_end[i]) - done;
      tokens += in_stage * r.stage_len[i];
      done += in_stage;
    }
    return tokens + (step - done) * r.trainer.seq_len;
  };
  bool resumed = false;
  train::Resumed stored;  // the checkpoint's data position and tokens_seen (its steps at the lengths they had)
  try {  // a resume refused here (exit 2 / 3) removes the lock file this run made, as the config phase's refusals
    std::optional<std::string> latest;
    try {
      if (!r.checkpoint_dir.empty()) latest = io::find_latest_checkpoint(r.checkpoint_dir);
    } catch (const InputError& e) {  // `latest` names a file that is gone, or holds no name: which are there
      throw InputError(e.what() + older_checkpoints_hint(r.checkpoint_dir, ""));
    }
    if (latest) {
      try {
        const activity::Scope doing("resuming from " + *latest);
        stored = train::load_checkpoint(trainer, *latest, config_text, mpi);
      } catch (const train::CheckpointOfAnotherModel&) {
        throw;  // its own message says what to do; an older checkpoint holds that model too
      } catch (const InputError& e) {
        // A damaged latest is refused (resuming elsewhere silently would train steps again): the message
        // says which older checkpoints there are and how to resume from one.
        throw InputError(e.what() + older_checkpoints_hint(r.checkpoint_dir, *latest));
      }
      // A run cannot go back: a latest past train.steps means the options name another run (or a typo).
      // Before this it printed "done" and exited 0 having trained nothing, which a script took for success.
      if (trainer.step() > r.steps)
        throw UsageError("train.steps=" + std::to_string(r.steps) + ": checkpoint.dir's latest, " + *latest +
                             ", is at step " + std::to_string(trainer.step()) + " already; give train.steps >= " +
                             std::to_string(trainer.step()) +
                             " (equal evaluates it and exits), or use another checkpoint.dir",
                         "train.steps");
      log::info("resumed from " + *latest + " at step " + std::to_string(trainer.step()));
      resumed = true;
    }
    check_stages_shardable(r, trainer.step(), P, SpanningSegments::may_end_short);
  } catch (const Error& e) {
    if (e.code() == ExitCode::usage || e.code() == ExitCode::bad_input) unlock_checkpoint_dir();
    throw;
  }
  // Which run this is (its log.jsonl lines and activation dump say so): a new one, or the checkpoint's. One
  // resumed from a checkpoint written before runs had ids stays a run without one ("", also in the
  // checkpoints it writes), whose lines a resume finds as before: a new id at each resume would make
  // each attempt's lines another run's, never dropped.
  std::string run_id;
  if (!resumed)
    run_id = new_run_id(mpi, rank);
  else if (valid_run_id(stored.run_id))
    run_id = stored.run_id;
  else if (!stored.run_id.empty())
    log::warn_once("the checkpoint's run_id attribute is not 1-32 hex digits: this run goes on without an id");
  const int64_t first_step = trainer.step();  // 0, or the checkpoint's
  // Tokens trained on through `step`: the checkpoint's count, then this run's lengths. (Counting every step
  // at this run's lengths was wrong after a resume at another data.seq_len.)
  const auto tokens_seen = [&](int64_t step) { return stored.tokens_seen + tokens_through(step) - tokens_through(first_step); };
  size_t stage = stage_of(trainer.step());
  trainer.set_seq_len(length_of(stage));
  // The data the current stage trains on (data.seq_len's past the curriculum).
  const auto source = [&]() -> const train::Dataset& { return stage < stages ? *stage_data[stage] : *data; };
  // Where the next step's data starts: the checkpoint's, or for one written before checkpoints held it,
  // where that run would have gone on (window `step` at this length).
  train::DataPosition position = source().position_of_step(trainer.step());
  if (stored.position) {
    position = *stored.position;
    if (const std::string problem = source().position_problem(position); !problem.empty()) {
      log::warn_once(problem);  // every rank finds it alike
      position.token = 0;
    }
  }
  // A token file split at another data.seq_len: the checkpoint's run trained on tokens up to its own
  // held-out tail, which at this length may start later than the tail evaluated now (a longer length
  // holds out whole sequences of it, from an earlier token; a shorter one holds out a file the longer
  // length trained on whole). Its evaluation would score tokens the model was trained on: said.
  if (resumed && stored.data_seq_len > 0 && stored.data_seq_len != r.trainer.seq_len && data->held_out_begin() >= 0) {
    train::DataConfig then = r.data;
    then.seq_len = stored.data_seq_len;
    then.split_seq_len = 0;
    int64_t trained_end = -1;
    try {
      trained_end = train::make_dataset(then)->training_end();
    } catch (const Error&) {  // the file holds no sequence of that length now: another file
    }
    // The last token it trained on: before its first pass over the file ends (its windows follow each other
    // from token 0, so the position is its token count), the position's; after, its tail's (before: the
    // tail's always, which named tokens a short run never reached, and warned where nothing overlapped).
    int64_t reached = trained_end - 1;
    if (stored.position && stored.position->token == stored.tokens_seen) reached = std::min(reached, stored.position->token);
    if (reached > data->held_out_begin())
      log::warn_once("data.seq_len=" + std::to_string(r.trainer.seq_len) + " after a checkpoint trained at data.seq_len=" +
                     std::to_string(stored.data_seq_len) + ": evaluation scores the tokens of data.path=" + r.data.path +
                     " from " + std::to_string(data->held_out_begin() + 1) + " on, but the checkpoint's run trained on "
                     "tokens up to " + std::to_string(reached) + ", so eval_loss / eval_accuracy are measured "
                     "partly on training data. A length curriculum in one run (data.short_seq_len, data.short_steps) "
                     "trains its shorter stages only before data.seq_len's held-out tail");
  }

  // A resume from a checkpoint whose evaluation is pending writes that step's line again (an earlier resume
  // that wrote it may have stopped before its next checkpoint).
  const int64_t kept_through = !resumed ? -1 : stored.pending_eval ? trainer.step() - 1 : trainer.step();
  JsonLog jsonl(r.log_jsonl, rank == 0, kept_through, r.checkpoint_dir, run_id);
  // Of an earlier dump of this run, the steps and layers this run dumps (dump.steps, dump.layers).
  const auto dumped = [&r](int64_t step, int64_t layer) { return r.dump_steps.count(step) && r.dump_layers.count(layer); };
  std::unique_ptr<io::ActivationDump> dump;
  if (!r.dump_path.empty() && !r.dump_steps.empty() && *r.dump_steps.rbegin() > trainer.step())
    dump = std::make_unique<io::ActivationDump>(r.dump_path, mpi, trainer.step(), run_id, dumped);

  const double peak = r.peak_gflops * 1e9 * P;
  if (rank == 0) {
    std::ostringstream head;
    head << "train: " << count_of(r.trainer.model.layers, "layer") << ", dim " << r.trainer.model.dim << ", "
         << count_of(r.trainer.model.heads, "head") << ", " << trainer.model().layout().total() << " parameters, schedule "
         << to_string(r.trainer.model.schedule) << ", N = " << r.trainer.seq_len << " over " << count_of(P, "rank") << " ("
         << r.trainer.seq_len / P << " rows each), " << step_flops(r.trainer.model, r.trainer.seq_len) / 1e9
         << " GFLOP/step, MFU peak " << r.peak_gflops << " GFLOP/s per rank; run "
         << (run_id.empty() ? "without an id (its checkpoint predates them)" : run_id);
    for (size_t i = 0; i < stages; ++i)
      head << (i == 0 ? "; curriculum: N = " : ", N = ") << r.stage_len[i] << " until step " << r.stage_end[i];
    log::info(head.str());
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
                        return ", \"eval_loss\": " + json_number(e.loss) + ", \"eval_accuracy\": " + json_number(e.accuracy);
                      }};
  };
  bool dump_unpublished = false;  // steps dumped since the dump file was last published
  // The step of the last checkpoint committed in checkpoint.dir (resumed from, or saved by this run); -1: none.
  int64_t committed = resumed ? trainer.step() : -1;
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
  // The last checkpoint committed holds an evaluation pending (the one resumed from, until one is saved).
  bool committed_pending = stored.pending_eval.has_value();
  const auto checkpoint = [&] {
    const activity::Scope doing("checkpointing step " + std::to_string(trainer.step()));
    // The dump is published with each checkpoint that follows a dumped step, so a run killed later (no
    // chance to close it) resumes from the checkpoint with those steps kept; a new dump copies them.
    // Published BEFORE the checkpoint commits: a kill between the two then resumes from the checkpoint
    // before, which dumps those steps again, where the other order lost them for good.
    const bool republish = dump && dump_unpublished;
    if (republish) {
      dump->close();
      dump.reset();
      dump_unpublished = false;
      log::info("activation dump " + r.dump_path + " published through step " + std::to_string(trainer.step()));
    }
    io::publish_on_rank0(mpi, "checking checkpoint.dir", [&] { require_checkpoint_dir_lock(r.checkpoint_dir); });
    const std::string path = train::save_checkpoint(trainer, r.checkpoint_dir, r.checkpoint_keep, config_text,
                                                    tokens_seen(trainer.step()), trained_len, position, run_id, mpi,
                                                    pending_eval);
    committed = trainer.step();
    committed_pending = pending_eval.has_value();
    jsonl.forget_start();
    log::info("checkpoint " + path);
    signal_if_faulted("checkpoint", trainer.step());
    if (republish && *r.dump_steps.rbegin() > trainer.step())
      dump = std::make_unique<io::ActivationDump>(r.dump_path, mpi, trainer.step(), run_id, dumped);
  };

  // A log.jsonl line: the step's fields, its evaluation's (if any), the run's id.
  const auto log_line = [&](const std::string& fields, const std::string& eval_fields) {
    return fields + eval_fields + (run_id.empty() ? std::string() : ", " + std::string(kRunKey) + run_id + "\"") + "}";
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
      log::info("stopped on a signal during the pending evaluation of step " + std::to_string(step) +
                ", which the checkpoint still holds; requeue me");
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
      log::info("stopped on a signal after the pending evaluation of step " + std::to_string(step) + "; requeue me");
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
    if (dump && stage == stages && r.dump_steps.count(step)) {
      const activity::Scope dumping("dumping the activations of step " + std::to_string(step));
      dump_layers(*dump, trainer.model(), r, step, trainer.local_rows());
      dump_unpublished = true;
      signal_if_faulted("dump", step);
      // A stop during the dump's writes (they can take long) stops the run at this step, not the next.
      if (stats.stop_signal == 0) stats.stop_signal = trainer.agree_on_signal(g_stop_requested.load());
    }
    if (stage < stages && stage_of(step) != stage) {
      stage = stage_of(step);
      trainer.set_seq_len(length_of(stage));
      log::info("step " + std::to_string(step) + " done: steps from " + std::to_string(step + 1) + " train at N = " +
                std::to_string(trainer.config().seq_len));
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
    const std::string log_fields =
        "{\"step\": " + std::to_string(step) + ", \"loss\": " + json_number(stats.loss) +
        ", \"tokens_per_s\": " + json_number(tokens_per_s) + ", \"seconds\": " + json_number(seconds) +
        ", \"lr\": " + json_number(stats.lr) + ", \"grad_norm\": " + json_number(stats.grad_norm) +
        ", \"mfu\": " + json_number(mfu) + ", \"seq_len\": " + std::to_string(seq_len) +
        ", \"world_size\": " + std::to_string(P);
    const bool keeps_pending = eval_interrupted && !r.checkpoint_dir.empty();
    if (keeps_pending) pending_eval = train::PendingEval{r.log_jsonl.empty() ? std::string() : log_fields};
    if (rank == 0 && (logged || stats.stop_signal != 0)) {
      std::printf("step %6lld  loss %.4f  tokens/s %.0f  s/step %.3f  lr %.3e  grad_norm %.3f  MFU %.1f%%  N %lld\n",
                  (long long)step, stats.loss, tokens_per_s, seconds, stats.lr, stats.grad_norm, 100 * mfu,
                  (long long)seq_len);
      std::fflush(stdout);
      const std::string eval_fields = print_eval ? print_eval() : std::string();
      if (logged && !keeps_pending) jsonl.write(log_line(log_fields, eval_fields));
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
    if (r.checkpoint_every > 0 && step % r.checkpoint_every == 0) {
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
  if (dump) {
    dump->close();
    dump.reset();
    dump_unpublished = false;
  }
  if (stop_signal != 0) {
    if (r.checkpoint_dir.empty()) {
      // 75 promises a committed checkpoint to resume from; without one a requeue would start over, so
      // exit as the signal would have (128 + its number).
      log::info("stopped on a signal at step " + std::to_string(trainer.step()) +
                ": no checkpoint.dir, nothing saved (exit " + std::to_string(128 + stop_signal) + ", not 75)");
      return 128 + stop_signal;
    }
    if (committed != trainer.step()) checkpoint();
    log::info("stopped on a signal at step " + std::to_string(trainer.step()) + "; requeue me");
    return static_cast<int>(ExitCode::requeue);
  }
  if (last_eval != trainer.step()) {  // resumed at the end: printed, no log.jsonl line (that step has one)
    const Evaluation evaluation = evaluate(trainer.step());
    if (!evaluation.complete) {  // nothing trained: the checkpoint resumed from is the run's
      log::info("stopped on a signal during the evaluation of step " + std::to_string(trainer.step()) +
                " (the checkpoint resumed from); requeue me");
      return static_cast<int>(ExitCode::requeue);
    }
    refuse_resumed(evaluation.loss);
    if (rank == 0) evaluation.print();
  }
  // Also when the checkpoint resumed from held the evaluation done now: it is saved again without it (else
  // each later run of this command would evaluate it again, and trim its line from log.jsonl first).
  if (!r.checkpoint_dir.empty() && (committed != trainer.step() || committed_pending)) checkpoint();
  const double total = std::chrono::duration<double>(Clock::now() - run_start).count();
  log::info("done: at step " + std::to_string(trainer.step()) + ", " + std::to_string(trainer.step() - first_step) +
            " step(s) trained by this run, " + std::to_string(static_cast<int64_t>(std::lround(total))) + " s");
  return 0;
}

}  // namespace

// A notice that arrives before the first step is acted on there (finish it, checkpoint, 75). Unblocked
// too: a launcher that blocked them would hide the notice, and one already pending is delivered here.
void catch_train_stop_signals() {
  std::signal(SIGUSR1, request_stop);
  std::signal(SIGTERM, request_stop);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGUSR1);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
}

Command train_command() {
  // Options and data are checked in the config phase too, where the ranks agree (one message, no MPI_Abort).
  const auto check = [](const Invocation& inv) {
    const DeviceChoice device = attention_device(inv);
    const int P = inv.process.world().size();
    const RunOptions r = validate(inv, P, false);
    // The config a checkpoint stores: a value it cannot hold (a line break) is refused before anything is
    // made (before: after checkpoint.dir and its lock were).
    config_text_of(inv);
    const int64_t resume_step = resume_step_hint(r);
    check_stages_shardable(r, resume_step, P, SpanningSegments::may_end_short);
    nan_gradient_fault(P);
    signal_fault_at();
    // Parameters, gradients and the AdamW moments (replicated), and per layer the activations the
    // backward keeps for this rank's rows, plus the logits and their gradient: float32, a lower bound.
    const model::ModelConfig& m = r.trainer.model;
    const double rows = static_cast<double>(r.trainer.seq_len / P);
    double kept = 0;  // per layer: the spanning branches' gathered K / V rows, kept for the backward
    if (P > 1 && !r.regather_kv && device.device == "cpu")
      for (const Branch& b : m.schedule.branches)
        if (!branch_is_local(b, r.trainer.seq_len, r.trainer.seq_len / P))
          kept += 2.0 * static_cast<double>(effective_segment_length(b, r.trainer.seq_len) / b.dilation * m.dim);
    const auto f = [](int64_t x) { return static_cast<double>(x); };
    // Per layer also lse and the norms' statistics (4 + H per row); once, the backward's working rows
    // (dh, dx, dh2, dout, dq, dk, dv, the final norm's input and output: 9 dim; dg, du: 2 mlp_hidden) and
    // one attention call's own buffers on the CPU (before: neither, and a run the check let through peaked
    // at 2-3x its figure).
    AttentionParams attention;
    attention.schedule = m.schedule;
    attention.causal = true;
    // (Its gathered rows are the layer's kept ones, counted above, unless train.regather_kv gathers anew.)
    const double workspace =
        device.device == "cpu"
            ? std::max(0.0, attention_workspace_bytes(attention, AttentionDims{1, r.trainer.seq_len / P, m.heads, m.head_dim()},
                                                      inv.process.world().rank(), P, true, false, omp_get_max_threads()) /
                                    4.0 - kept)
            : 0.0;
    const double floats = 4.0 * f(model::make_layout(m).total()) +
                          rows * (f(m.layers) * (8.0 * f(m.dim) + 2.0 * f(m.mlp_hidden) + 4.0 + f(m.heads)) +
                                  2.0 * f(m.vocab) + 9.0 * f(m.dim) + 2.0 * f(m.mlp_hidden)) +
                          f(m.layers) * kept + workspace;
    check_fits_in_memory("train (model.layers=" + std::to_string(m.layers) + ", model.dim=" + std::to_string(m.dim) +
                             ", data.seq_len=" + std::to_string(r.trainer.seq_len) + " over " + count_of(P, "rank") +
                             ")",
                         "parameters, gradients, AdamW moments, each layer's activations of its rows and the K / V "
                         "rows it gathered, the backward's working rows and the attention's own buffers, in float32",
                         floats * 4, inv.process.local_size(), omp_get_max_threads());
    if (device.device == "cuda") {
      check_shardable(r.trainer.model.schedule, r.trainer.seq_len, P, SpanningSegments::whole, kScheduleNames);
      check_stages_shardable(r, resume_step, P, SpanningSegments::whole);
    }
    train::make_dataset(r.data);  // the token file's metadata too (exit 3 when it is no token file)
    curriculum_datasets(r);
    // Last: a run refused above creates nothing. (A refusal after this, of another rank's check or of the
    // ranks' comparison, removes what it made: undo_check.)
    if (!r.checkpoint_dir.empty() && inv.process.world().rank() == 0) {
      // The outputs validate left unchecked, in a checkpoint.dir that did not exist: it does after the lock.
      const bool log_unchecked = !r.log_jsonl.empty() && in_checkpoint_dir_to_make(r, r.log_jsonl);
      const bool dump_unchecked = !r.dump_path.empty() && in_checkpoint_dir_to_make(r, r.dump_path);
      lock_checkpoint_dir(r.checkpoint_dir);
      if (log_unchecked) io::check_json_output_path("log.jsonl", r.log_jsonl, "appending would damage it");
      if (dump_unchecked) io::check_hdf5_output_path("dump.activations", r.dump_path, io::kActivationFormat);
      // Under the lock, so a temporary file held now is no other run's: a link or a directory at
      // step_N.h5.tmp would otherwise stop the run at step N's checkpoint.
      io::check_checkpoint_temporaries("checkpoint.dir=" + r.checkpoint_dir, r.checkpoint_dir);
    }
  };
  // What each rank must see alike (main.cpp compares it with rank 0's): the lock file rank 0 wrote in
  // checkpoint.dir just before (a rank that did not see it, a node-local directory, wrote its first
  // checkpoint into nothing after all the steps, or resumed from another step of a stale copy), the token
  // file's length and sampled contents, and dump.activations' directory (its collective writes to two
  // files hung).
  const auto shared_inputs = [](const Invocation& inv) {
    std::vector<std::pair<std::string, std::string>> seen;
    // The probe first: it is collective, and the reads below may throw on one rank only (which then goes
    // on to main.cpp's agreement while the others would wait in the probe).
    const std::string dump = inv.options["dump.activations"].as<std::string>();
    if (!dump.empty() && inv.process.world().size() > 1)
      seen.emplace_back("dump.activations' directory " + io::directory_of(dump) + " (rank 0's probe file)",
                        probe_directory(inv.process.world(), io::directory_of(dump)));
    const std::string dir = inv.options["checkpoint.dir"].as<std::string>();
    if (!dir.empty()) {
      // Every rank looked for checkpoint.dir in the config phase, before rank 0 made it: a network file
      // system may answer from that lookup (open_made_elsewhere looks again).
      const int fd = open_made_elsewhere(dir + "/" + kLockFile, patience_for(inv.process.world()));
      seen.emplace_back("checkpoint.dir's lock file (rank 0 wrote it)",
                        fd < 0 ? std::string("(none: ") + std::strerror(errno) + ")"
                               : "\"" + read_lock_holder(fd).value_or("") + "\"");
    }
    if (inv.options["data.task"].as<std::string>() == "file") {
      const std::string path = inv.options["data.path"].as<std::string>();
      const io::TokenReader tokens(path);
      const int64_t count = tokens.token_count(), sample = std::min<int64_t>(count, 4096);
      seen.emplace_back("the token count of data.path", std::to_string(count));
      // Sampled contents: a stale copy of the same length trained on other tokens with no error.
      Fingerprint fingerprint;
      for (const int64_t begin : {int64_t{0}, count - sample}) {
        const std::vector<int32_t> some = tokens.read(begin, begin + sample);
        fingerprint.add(some.data(), some.size() * sizeof(int32_t));
      }
      seen.emplace_back("the first and last 4096 tokens of data.path", "fingerprint " + fingerprint.hex());
    }
    return seen;
  };
  return {"train", "train the sequence-parallel LongNet LM (passkey, associative, token file)", "", declare,
          run_train, check, shared_inputs, unlock_checkpoint_dir};
}

}  // namespace longctx::cli
