// `train`'s options: see train_options.hpp.
#include "runtime/commands/train_options.hpp"

#include <omp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>

#include "attention/cuda/cuda_attention.hpp"
#include "io/activation_dump.hpp"
#include "io/atomic_output.hpp"
#include "io/checkpoint.hpp"
#include "io/digest.hpp"
#include "io/durable.hpp"
#include "io/token_dataset.hpp"
#include "runtime/commands/commands.hpp"
#include "runtime/core/fingerprint.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/memory.hpp"
#include "runtime/train/checkpoint_dir_lock.hpp"
#include "runtime/train/fault_injection.hpp"
#include "runtime/train/json_log.hpp"
#include "runtime/train/train_state_io.hpp"

namespace longctx::cli {

const ScheduleOptionNames kTrainScheduleNames{"model.segment_lengths", "model.dilation_rates", "", "data.seq_len="};

namespace {

template <class T> T opt(const Invocation& inv, const char* name) { return inv.options[name].as<T>(); }

// Throws UsageError(message) unless `ok`. A message about one key (`train.lr must be ...`, `model.layers=0:
// ...`) names it first and no other: the config phase then adds where its value came from. One that names
// two (`train.beta1 / train.beta2`) is left as it is, since
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

constexpr int64_t kMaxLayers = 65536;

// check_shardable at a curriculum stage's length; the error says which stage.
void check_stage_shardable(const Schedule& schedule, int64_t stage_len, int world_size, SpanningSegments spanning) {
  ScheduleOptionNames names = kTrainScheduleNames;
  names.seq_len = "its length ";
  try {
    check_shardable(schedule, stage_len, world_size, spanning, names);
  } catch (const UsageError& e) {  // (the option the value came from: the stage's length, or the schedule's)
    throw UsageError("data.short_seq_len=" + std::to_string(stage_len) + ": " + e.what(),
                     e.option() == option_key(names.seq_len) ? "data.short_seq_len" : e.option());
  }
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

}  // namespace

void declare_train_options(po::options_description& d, po::positional_options_description&) {
  const std::string peak_per_thread = std::to_string(kPeakGflopsPerThread);
  d.add_options()
      ("device", po::value<std::string>()->default_value("cpu"), "where attention runs: cpu, or cuda (one GPU per rank; the rest of the model stays on the CPU)")
      ("dtype", po::value<std::string>()->default_value("fp32"), "the type the attention kernels read q, k, v in: fp32, bf16, fp16 (bf16 / fp16 need --device cuda; under mpirun cuda takes bf16 / fp16; fp32 accumulation)")
      ("comm", po::value<std::string>()->default_value("auto"), "device communicator with --device cuda under mpirun: auto, nccl, staged or mpi (MPI through host memory)")
      ("model.layers", po::value<int64_t>()->default_value(2), "transformer blocks")
      ("model.dim", po::value<int64_t>()->default_value(128), "model width")
      ("model.heads", po::value<int64_t>()->default_value(8), "attention heads (must divide model.dim; keep >= max dilation)")
      ("model.mlp_hidden", po::value<int64_t>()->default_value(0), "MLP hidden width; 0 means 4 * model.dim")
      ("model.segment_lengths", po::value<std::string>()->default_value("256,1024,2048"), "dilated branches: segment lengths w")
      ("model.dilation_rates", po::value<std::string>()->default_value("1,2,4"), "dilated branches: dilation rates r (each at most its segment length)")
      ("model.vocab", po::value<int64_t>()->default_value(32), "vocabulary size (>= 32 for passkey/associative; for data.task=file at least the token file's vocab: 256 for a `data import --text` corpus, --vocab for one of --ids)")
      ("model.prev_token_embedding", po::bool_switch(),
       "add an embedding of each row's previous token (token shift; helps content-based copying)")
      ("model.init_std", po::value<double>()->default_value(0.02), "normal std of initial weights (of the output projections wo and w2: init_std / sqrt(2 model.layers))")
      ("model.rope_dims", po::value<int64_t>()->default_value(0),
       "dims of each head that rotate (even); the rest match content at any distance; 0 = all")
      ("model.rope_base", po::value<double>()->default_value(10000.0), "rotary base")
      ("data.task", po::value<std::string>()->default_value("passkey"), "passkey | associative | file")
      ("data.path", po::value<std::string>()->default_value(""), "token dataset (data.task=file)")
      ("data.allow_new_file", po::bool_switch(),
       "data.task=file: resume on a token file other than the one the checkpoint's run trained on (another token "
       "count or digest), training from its first token; without it such a resume is refused (exit 3)")
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
      ("data.curriculum_min_span", po::value<std::string>()->default_value("256"),
       "key depth window at step 0, in tokens (K/M/G suffixes, as the lengths take)")
      ("data.filler_period", po::value<int64_t>()->default_value(23), "length of the repeated filler sentence")
      ("train.steps", po::value<int64_t>()->default_value(100), "total optimizer steps")
      ("train.lr", po::value<double>()->default_value(1e-3), "peak learning rate")
      ("train.warmup", po::value<int64_t>()->default_value(20), "linear warm-up steps (more than train.steps: train.lr is never reached, and a warning says so)")
      ("train.min_lr_ratio", po::value<double>()->default_value(0.1, "0.1"), "cosine floor as a fraction of train.lr (reached at step train.steps + 1: the last step's lr is just above it; with train.warmup >= train.steps - 1 there is no decay)")
      ("train.weight_decay", po::value<double>()->default_value(0.1, "0.1"), "AdamW decoupled weight decay (matrices only)")
      ("train.beta1", po::value<double>()->default_value(0.9, "0.9"), "AdamW beta1")
      ("train.beta2", po::value<double>()->default_value(0.95, "0.95"), "AdamW beta2")
      ("train.clip", po::value<double>()->default_value(1.0), "global gradient-norm clip; 0 disables")
      ("train.answer_weight", po::value<double>()->default_value(1.0),
       "loss weight of answer targets relative to other tokens (passkey/associative; 1 = plain mean)")
      ("train.seed", po::value<uint64_t>()->default_value(1), "seed of parameters and data")
      ("train.threads", po::value<int>()->default_value(0), "OpenMP threads per rank; 0: OMP_NUM_THREADS, or without it the rank's share of the CPUs it may run on (shared with the ranks of its node allowed on them)")
      ("train.regather_kv", po::bool_switch(),
       "the backward gathers each layer's spanning K / V rows again instead of keeping the forward's (cpu: saves "
       "sum over spanning branches of (w'/r) B H D 8 bytes per layer, costs as much traffic)")
      ("train.peak_gflops", po::value<double>()->default_value(0.0),
       ("peak fp32 GFLOP/s of ONE rank for MFU; 0: " + peak_per_thread +
        " for each thread of each rank (one AVX-512 core, 2 FMA x 16 lanes x 2 GHz)")
           .c_str())
      ("checkpoint.dir", po::value<std::string>()->default_value(""), "checkpoint directory (resumes from its latest)")
      ("checkpoint.every", po::value<int64_t>()->default_value(0), "checkpoint every N steps (0: only at the end / on a signal)")
      ("checkpoint.keep", po::value<int64_t>()->default_value(3), "committed checkpoints to keep (0 keeps all)")
      ("log.every", po::value<int64_t>()->default_value(1), "log every N steps")
      ("log.jsonl", po::value<std::string>()->default_value(""), "append one JSON object per logged step / eval")
      ("log.summary", po::value<std::string>()->default_value(""),
       "when the run ends, rank 0 writes (replaces) this file: one JSON object saying how it ended (exit code, "
       "steps, checkpoint, whether it advanced checkpoint.dir); see the README")
      ("eval.every", po::value<int64_t>()->default_value(0), "evaluate every N steps (0: only at the end)")
      ("eval.sequences", po::value<int64_t>()->default_value(4), "held-out sequences per evaluation")
      ("dump.activations", po::value<std::string>()->default_value(""), "HDF5 file for q, k, v, o dumps")
      ("dump.layers", po::value<std::string>()->default_value("0"), "layers to dump, e.g. 0,1")
      ("dump.steps", po::value<std::string>()->default_value("1"), "steps (1-based) to dump, e.g. 1,100");
}

std::string train_config_text(const Invocation& inv) {
  po::options_description declared;
  po::positional_options_description unused;
  declare_train_options(declared, unused);
  return to_ini(inv, declared);
}

void check_stages_shardable(const TrainOptions& r, int64_t from, int world_size, SpanningSegments spanning) {
  for (size_t i = 0; i < r.stage_len.size(); ++i)
    if (r.stage_end[i] > from) check_stage_shardable(r.trainer.model.schedule, r.stage_len[i], world_size, spanning);
}

int64_t resume_step_hint(const TrainOptions& r) {
  if (r.checkpoint_dir.empty()) return 0;
  try {
    if (const auto latest = io::find_latest_checkpoint(r.checkpoint_dir))
      return io::step_in_file_name(*latest).value_or(0);
  } catch (const std::exception&) {
  }
  return 0;
}

bool in_checkpoint_dir_to_make(const TrainOptions& r, const std::string& path) {
  std::error_code error;
  return !r.checkpoint_dir.empty() && !std::filesystem::exists(r.checkpoint_dir, error) &&
         same_path(io::directory_of(path), r.checkpoint_dir);
}

size_t TrainOptions::stage_of(int64_t step) const {
  size_t i = 0;
  while (i < stage_len.size() && step >= stage_end[i]) ++i;
  return i;
}

int64_t TrainOptions::tokens_through(int64_t step) const {
  int64_t tokens = 0, done = 0;
  for (size_t i = 0; i < stage_len.size() && done < step; ++i) {
    const int64_t in_stage = std::min(step, stage_end[i]) - done;
    tokens += in_stage * stage_len[i];
    done += in_stage;
  }
  return tokens + (step - done) * trainer.seq_len;
}

// Options that act only with another setting, set (to other than their default) without it: said, by name
// and where the value came from (before: nothing happened, without a word: dump.steps without
// dump.activations dumped nothing).
static void warn_inert_options(const Invocation& inv, const TrainOptions& r) {
  const std::string& task = r.data.task;
  const bool synthetic = task != "file";
  const std::string synthetic_only = "data.task=" + task + " reads no synthetic-task options";
  const std::pair<std::string, std::string> inert[] = {
      {"dump.layers", r.dump_path.empty() ? "dump.activations is not set: nothing is dumped" : ""},
      {"dump.steps", r.dump_path.empty() ? "dump.activations is not set: nothing is dumped" : ""},
      {"checkpoint.keep", r.checkpoint_dir.empty() ? "checkpoint.dir is not set: no checkpoints are written" : ""},
      // (Before: an error, which named neither where it came from nor how to run a config that sets it,
      // such as passkey.ini, without checkpoints: checkpoint.dir= alone now does.)
      {"checkpoint.every", r.checkpoint_dir.empty() ? "checkpoint.dir is not set: no checkpoints are written" : ""},
      {"data.key_digits", synthetic ? "" : synthetic_only},
      {"data.filler_period", synthetic ? "" : synthetic_only},
      {"data.curriculum_steps", synthetic ? "" : synthetic_only},
      {"data.curriculum_min_span",
       !synthetic ? synthetic_only : r.data.curriculum_steps == 0 ? "data.curriculum_steps=0: no depth curriculum" : ""},
      {"train.answer_weight", !synthetic ? "data.task=file has no answers"
                              : r.data.supervision == "answer"
                                  ? "data.supervision=answer scores the answers alone (their weight cancels)"
                                  : ""},
      // (Before, these went unsaid with the file task.)
      {"data.key_repeats", !synthetic ? synthetic_only : task == "passkey" ? "" : "data.task=passkey alone reads it"},
      {"data.records", !synthetic ? synthetic_only : task == "associative" ? "" : "data.task=associative alone reads it"},
      {"data.queries", !synthetic ? synthetic_only : task == "associative" ? "" : "data.task=associative alone reads it"},
  };
  for (const auto& [option, why] : inert)
    if (!why.empty() && !holds_default(inv, option))
      log::warn_once(option + "=" + value_text(inv, option) + value_source(inv, option) + " has no effect: " + why);
  // A depth curriculum that cannot do what --help says (before: run without a word; from the train audit).
  const train::DataConfig& d = r.data;
  if (!synthetic || d.curriculum_steps == 0) return;
  const std::string min_span = "data.curriculum_min_span=" + value_text(inv, "data.curriculum_min_span") +
                               value_source(inv, "data.curriculum_min_span");
  if (d.curriculum_min_span >= d.seq_len) {
    log::warn_once(min_span + " is not below data.seq_len=" + std::to_string(d.seq_len) + ": the keys lie anywhere " +
                   "in the sequence from step 1 (no depth curriculum)");
    return;
  }
  for (size_t i = 0; i < r.stage_len.size(); ++i)
    if (d.curriculum_min_span >= r.stage_len[i] && (i == 0 ? 0 : r.stage_end[i - 1]) < d.curriculum_steps) {
      log::warn_once(min_span + " is not below the length curriculum's stage " + std::to_string(i + 1) + " (" +
                     std::to_string(r.stage_len[i]) + " tokens): there the keys lie anywhere in the sequence");
      break;
    }
  if (d.curriculum_steps > r.steps)
    log::warn_once("data.curriculum_steps=" + value_text(inv, "data.curriculum_steps") +
                   value_source(inv, "data.curriculum_steps") + " is more than train.steps=" + std::to_string(r.steps) +
                   ": the key depth does not reach the whole sequence in this run");
}

void warn_if_warmup_outlasts(const Invocation& inv, const TrainOptions& r, int64_t from_step) {
  // A short run with the default warm-up (20 steps) never reached train.lr, without a word (a try-out of
  // 5 steps trained at a quarter of it at most). Not said by a resume that trains nothing more.
  if (r.trainer.lr.warmup_steps <= r.steps || from_step >= r.steps) return;
  const double reached = 100.0 * double(r.steps) / double(r.trainer.lr.warmup_steps);
  char percent[32];
  std::snprintf(percent, sizeof percent, "%.3g%%", reached);
  log::warn_once("train.warmup=" + value_text(inv, "train.warmup") +
                 (holds_default(inv, "train.warmup") ? " (its default)" : value_source(inv, "train.warmup")) +
                 " is more than train.steps=" + std::to_string(r.steps) + ": the learning rate climbs to " + percent +
                 " of train.lr by the last step and never reaches it; give train.warmup at most train.steps");
}

TrainOptions validate_train_options(const Invocation& inv, int world_size, bool warn) {
  TrainOptions r;
  model::ModelConfig& m = r.trainer.model;
  m.layers = opt<int64_t>(inv, "model.layers");
  m.dim = opt<int64_t>(inv, "model.dim");
  m.heads = opt<int64_t>(inv, "model.heads");
  m.vocab = opt<int64_t>(inv, "model.vocab");
  m.rope_base = opt<double>(inv, "model.rope_base");
  require(m.rope_base > 1 && std::isfinite(m.rope_base), "model.rope_base must be a finite number > 1");
  m.init_std = opt<double>(inv, "model.init_std");
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
  // After the checks of heads and dim, as head_dim() divides by heads (model.heads=0 was a SIGFPE here).
  m.rope_dims = opt<int64_t>(inv, "model.rope_dims");
  require(m.rope_dims >= 0 && m.rope_dims % 2 == 0 && m.rope_dims <= m.head_dim(),
          "model.rope_dims=" + std::to_string(m.rope_dims) + ": must be even and <= the head dim " +
              std::to_string(m.head_dim()));
  require(m.vocab >= 2, "model.vocab=" + std::to_string(m.vocab) + ": must be >= 2");
  m.mlp_hidden = opt<int64_t>(inv, "model.mlp_hidden");
  require(m.mlp_hidden >= 0, "model.mlp_hidden must be >= 0");
  if (m.mlp_hidden == 0) m.mlp_hidden = 4 * m.dim;
  const int64_t n = parse_size("data.seq_len", opt<std::string>(inv, "data.seq_len"));
  require(n >= 2, "data.seq_len=" + std::to_string(n) + ": must be >= 2");
  m.schedule = make_schedule(parse_size_list("model.segment_lengths", opt<std::string>(inv, "model.segment_lengths")),
                             parse_size_list("model.dilation_rates", opt<std::string>(inv, "model.dilation_rates")),
                             false, kTrainScheduleNames);
  check_shardable(m.schedule, n, world_size, SpanningSegments::may_end_short, kTrainScheduleNames);
  m.causal = true;  // heads < max dilation: the attention backend warns, naming the branch (warn_coverage)

  r.trainer.seq_len = n;
  r.trainer.seed = opt<uint64_t>(inv, "train.seed");
  r.steps = opt<int64_t>(inv, "train.steps");
  require(r.steps >= 1, "train.steps=" + std::to_string(r.steps) + ": must be >= 1");
  // The token counters (tokens_seen, the data position, the curriculum's spans) are int64 (from a review: at
  // 1e10 steps of 1e9 tokens they wrapped).
  require(r.steps <= std::numeric_limits<int64_t>::max() / n,
          "train.steps=" + std::to_string(r.steps) + ": at data.seq_len=" + std::to_string(n) + " that is past 2^63 - 1 tokens; at most " +
              std::to_string(std::numeric_limits<int64_t>::max() / n) + " steps");
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
  if (threads > 0) set_threads(threads, "train.threads=" + std::to_string(threads));
  r.peak_gflops = opt<double>(inv, "train.peak_gflops");
  require(r.peak_gflops >= 0 && std::isfinite(r.peak_gflops),
          "train.peak_gflops must be a finite number > 0, or 0 (" + std::to_string(kPeakGflopsPerThread) +
              " a thread)");

  train::DataConfig& d = r.data;
  d.task = opt<std::string>(inv, "data.task");
  d.path = opt<std::string>(inv, "data.path");
  // Before: ignored, and the run trained on passkey sequences with a checkpoint whose config names the file.
  require(d.path.empty() || (d.task != "passkey" && d.task != "associative"),
          "data.path=" + d.path + " is read only with data.task=file (data.task=" + d.task +
              " makes its own sequences): give data.task=file to train on it, or leave data.path out");
  r.allow_new_data_file = opt<bool>(inv, "data.allow_new_file");
  require(!r.allow_new_data_file || d.task == "file",
          "data.allow_new_file is about a token file (data.task=file); data.task=" + d.task + " reads none");
  d.seq_len = n;
  d.seed = r.trainer.seed;
  d.supervision = opt<std::string>(inv, "data.supervision");
  d.key_digits = opt<int64_t>(inv, "data.key_digits");
  d.key_repeats = opt<int64_t>(inv, "data.key_repeats");
  d.records = opt<int64_t>(inv, "data.records");
  d.queries = opt<int64_t>(inv, "data.queries");
  d.curriculum_steps = opt<int64_t>(inv, "data.curriculum_steps");
  d.curriculum_min_span = parse_size("data.curriculum_min_span", opt<std::string>(inv, "data.curriculum_min_span"));
  require(d.curriculum_steps >= 0, "data.curriculum_steps=" + std::to_string(d.curriculum_steps) + ": must be >= 0");
  require(d.curriculum_min_span >= 0,
          "data.curriculum_min_span=" + std::to_string(d.curriculum_min_span) + ": must be >= 0");
  d.filler_period = opt<int64_t>(inv, "data.filler_period");
  d.vocab = m.vocab;
  if (warn && d.task == "file" && d.supervision == "answer")
    log::warn_once("data.supervision=answer: data.task=file has no answers; the loss covers every token, as with all");

  r.trainer.answer_weight = opt<double>(inv, "train.answer_weight");
  require(r.trainer.answer_weight > 0 && std::isfinite(r.trainer.answer_weight),
          "train.answer_weight must be a finite number > 0");
  const auto lens = parse_size_list("data.short_seq_len", opt<std::string>(inv, "data.short_seq_len"));
  const auto counts = parse_size_list("data.short_steps", opt<std::string>(inv, "data.short_steps"));
  require(lens.size() == counts.size(), "data.short_seq_len gives " + count_of(static_cast<int64_t>(lens.size()), "stage length") +
                                            " but data.short_steps " + count_of(static_cast<int64_t>(counts.size()), "step count") +
                                            ": one of each per stage");
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
    // A length curriculum trains short sequences first: one that does not grow is said (it runs as given).
    if (warn && !r.stage_len.empty() && lens[i] < r.stage_len.back())
      log::warn_once(stage + ": shorter than the stage before it (" + std::to_string(r.stage_len.back()) +
                     "); a length curriculum usually grows toward data.seq_len (this one runs as given)");
    r.stage_len.push_back(lens[i]);
    r.stage_end.push_back(end);
  }
  if (warn && end >= r.steps)
    log::warn_once("data.short_steps add up to " + std::to_string(end) + " steps, train.steps=" +
                   std::to_string(r.steps) + ": the run never trains at data.seq_len=" + std::to_string(n));
  r.checkpoint_dir = opt<std::string>(inv, "checkpoint.dir");
  // "ck/" as "ck": the paths made from it (checkpoints, log.summary's) read "ck/step_...", not "ck//step_...".
  while (r.checkpoint_dir.size() > 1 && r.checkpoint_dir.back() == '/') r.checkpoint_dir.pop_back();
  // Checkpoint names hold eight digits of step: past them a run trained its step, then failed to save it
  // (before; from the eval audit).
  require(r.checkpoint_dir.empty() || r.steps <= io::kMaxCheckpointStep,
          "train.steps=" + std::to_string(r.steps) +
              ": checkpoints are named step_%08d.h5, so with checkpoint.dir at most " +
              std::to_string(io::kMaxCheckpointStep) + " steps");
  r.checkpoint_every = opt<int64_t>(inv, "checkpoint.every");
  r.checkpoint_keep = opt<int64_t>(inv, "checkpoint.keep");
  require(r.checkpoint_every >= 0, "checkpoint.every must be >= 0");
  require(r.checkpoint_keep >= 0, "checkpoint.keep must be >= 0");
  r.log_every = opt<int64_t>(inv, "log.every");
  require(r.log_every >= 1, "log.every must be >= 1");
  r.log_jsonl = opt<std::string>(inv, "log.jsonl");
  r.eval_every = opt<int64_t>(inv, "eval.every");
  r.eval_sequences = opt<int64_t>(inv, "eval.sequences");
  require(r.eval_every >= 0, "eval.every must be >= 0");
  require(r.eval_sequences >= 1, "eval.sequences must be >= 1");
  const std::string dump_given = opt<std::string>(inv, "dump.activations");  // as given: "-" is refused below
  r.dump_path = io::output_target(dump_given);
  r.summary_path = opt<std::string>(inv, "log.summary");
  // Where files go, before any step: a bad path would otherwise surface only at the first write.
  io::refuse_standard_output("checkpoint.dir=-", "checkpoint.dir", r.checkpoint_dir, "directory");
  for (const auto& [option, path] : {std::pair<std::string, const std::string&>{"log.jsonl", r.log_jsonl},
                                     {"dump.activations", dump_given},
                                     {"log.summary", r.summary_path}})
    io::refuse_standard_output(option + "=-", option, path);
  // A checkpoint file given as the directory (to resume from it): said how (before: "is not a directory" alone;
  // from the user-mistakes audit).
  if (std::error_code error; !r.checkpoint_dir.empty() && std::filesystem::is_regular_file(r.checkpoint_dir, error) &&
                             io::step_in_file_name(r.checkpoint_dir))
    throw UsageError("checkpoint.dir=" + r.checkpoint_dir + " is a checkpoint file, not a directory: give its " +
                         "directory (" + io::directory_of(r.checkpoint_dir) + "), which resumes from the checkpoint " +
                         "its `latest` names (to resume from this one, write its name there)",
                     "checkpoint.dir");
  if (!r.checkpoint_dir.empty()) io::check_output_directory("checkpoint.dir=" + r.checkpoint_dir, r.checkpoint_dir);
  // The files the run writes (each through `<path>.tmp`), where a link given leads, also to a file not there yet
  // (before: log.jsonl and log.summary were compared by the link's own name, so a link to another output, to
  // checkpoint.dir's latest or to another's .tmp passed, and the run wrote over it; from the outputs audit).
  const std::string log_target = io::output_target(r.log_jsonl), summary_target = io::output_target(r.summary_path);
  const std::vector<std::pair<const char*, const std::string&>> outputs{
      {"log.jsonl", log_target}, {"dump.activations", r.dump_path}, {"log.summary", summary_target}};
  // No two of them the same file, nor one the temporary file another is written through (before: the dump
  // took a log.jsonl there for a crashed run's file, and the log was lost).
  for (size_t i = 0; i < outputs.size(); ++i)
    for (size_t j = 0; j < outputs.size(); ++j) {
      const auto& [option, path] = outputs[i];
      const auto& [other, other_path] = outputs[j];
      if (i == j || path.empty() || other_path.empty()) continue;
      require(j < i || !io::same_file(path, other_path), std::string(option) + " and " + other + " name the same file");
      const std::string owner = std::string(other) + (std::string(other).back() == 's' ? "'" : "'s");
      require(!io::same_file(path, other_path + ".tmp"),
              std::string(option) + "=" + path + " is " + owner + " temporary file " + other_path + ".tmp; write it elsewhere");
    }
  // The training data is input: no output may land on it (or on its name plus .tmp, renamed over it).
  if (!d.path.empty())
    for (const auto& [option, path] : outputs)
      require(path.empty() || (!io::same_file(path, d.path) && !io::same_file(path + ".tmp", d.path)),
              std::string(option) + "=" + path + " is data.path=" + d.path + " (the training data); write it elsewhere");
  // Nor on checkpoint.dir, or on a name its checkpoints take there: a dump renamed onto the directory
  // failed only at the end, every step lost; one named like a checkpoint was replaced by it.
  if (!r.checkpoint_dir.empty())
    for (const auto& [option, path] : outputs) {
      if (path.empty()) continue;
      require(!same_path(path, r.checkpoint_dir),
              std::string(option) + "=" + path + " is checkpoint.dir=" + r.checkpoint_dir + "; write it elsewhere");
      require(!same_path(path + ".tmp", r.checkpoint_dir),
              std::string(option) + "=" + path + " is written as " + path + ".tmp first, which is checkpoint.dir=" +
                  r.checkpoint_dir + "; write it elsewhere");
      const std::string name = std::filesystem::path(path).filename().string();
      require(!(io::is_checkpoint_file_name(name) || name == train::kLockFile || name == train::kLogStart) ||
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
  // A link to where no file can be made (a directory that does not exist, other than the checkpoint.dir the
  // run makes; a loop): log.jsonl is appended to through the link (before: refused only once the run had
  // started, exit 2 with a "failed" log.summary).
  if (std::error_code error; !r.log_jsonl.empty() && std::filesystem::is_symlink(r.log_jsonl, error) &&
                             !std::filesystem::exists(r.log_jsonl, error) && log_target == r.log_jsonl) {
    const std::filesystem::path to = std::filesystem::read_symlink(r.log_jsonl, error);
    const std::filesystem::path target = to.is_absolute() ? to : std::filesystem::path(r.log_jsonl).parent_path() / to;
    require(in_checkpoint_dir_to_make(r, target.string()),
            "log.jsonl=" + r.log_jsonl + " is a symbolic link to " + to.string() +
                ", where no file can be made (its directory does not exist, or the links loop)");
  }
  if (!warn && !r.dump_path.empty() && !in_checkpoint_dir_to_make(r, r.dump_path))
    io::check_hdf5_output_path("dump.activations", r.dump_path, io::kActivationFormat);
  if (!warn && !r.summary_path.empty() && !in_checkpoint_dir_to_make(r, r.summary_path))
    io::check_json_output_path("log.summary", r.summary_path, "writing would replace it");
  // Replaced when the run ends: never the file this process prints to (/dev/stdout of a batch job leads to its
  // output file; before, that file was replaced, or as root /dev/stdout itself).
  if (!r.summary_path.empty()) {
    struct stat summary {}, stream {};
    for (const auto& [fd, name] : {std::pair<int, const char*>{0, "input"}, {1, "output"}, {2, "error output"}})
      require(::stat(r.summary_path.c_str(), &summary) != 0 || ::fstat(fd, &stream) != 0 ||
                  summary.st_dev != stream.st_dev || summary.st_ino != stream.st_ino,
              "log.summary=" + r.summary_path + " is this process's standard " + name +
                  ", which the summary would replace: give it a file of its own");
  }
  for (int64_t l : parse_size_list("dump.layers", opt<std::string>(inv, "dump.layers"))) {
    // (About dump.layers's value: require names no source where a message names two.) Past the model's layers
    // without dump.activations, it is said to have no effect, as dump.steps past train.steps is (before: exit 2).
    if (l < 0 || (l >= m.layers && !r.dump_path.empty()))
      throw UsageError("dump.layers: layer " + std::to_string(l) + " outside [0, model.layers=" +
                           std::to_string(m.layers) + ")",
                       "dump.layers");
    r.dump_layers.insert(l);
  }
  for (int64_t s : parse_size_list("dump.steps", opt<std::string>(inv, "dump.steps"))) {
    require(s >= 1, "dump.steps: step " + std::to_string(s) + " must be >= 1");
    r.dump_steps.insert(s);
    if (warn && !r.dump_path.empty() && s > r.steps)
      log::warn_once("dump.steps: step " + std::to_string(s) + " comes after train.steps=" + std::to_string(r.steps) +
                     ": it is never dumped");
    for (size_t i = 0; warn && i < r.stage_end.size() && !r.dump_path.empty(); ++i)
      if (s <= r.stage_end[i] && (i == 0 || s > r.stage_end[i - 1])) {
        log::warn_once("dump.steps: step " + std::to_string(s) + " trains at N = " + std::to_string(r.stage_len[i]) +
                       " (data.short_seq_len); dumps hold data.seq_len rows only, so it is not dumped");
        break;
      }
  }
  if (warn) warn_inert_options(inv, r);
  return r;
}

std::vector<std::unique_ptr<train::Dataset>> curriculum_datasets(const TrainOptions& r) {
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

TrainAttention make_train_attention(Invocation& inv, const TrainOptions& r, const DeviceChoice& device,
                                    const std::string& threads_option) {
  comm::Communicator& world = inv.process.world();
  TrainAttention made;
  if (device.device == "cpu") {
    auto sharded = std::make_unique<model::ShardedAttention>(world);
    if (r.regather_kv) sharded->never_keep();
    made.impl = std::move(sharded);
    if (const std::string crowded = oversubscription_warning(inv.process, threads_option); !crowded.empty())
      log::warn(crowded);  // tokens_per_s and mfu are timings
  } else if (world.size() == 1) {
    made.impl = std::make_unique<model::LocalAttention>(make_attention_backend("cuda", device.dtype));
  } else {
    made.device_comm = make_device_comm(inv.process, device.comm);
    made.impl = std::make_unique<model::GpuShardedAttention>(*made.device_comm, device.dtype);
  }
  if (device.device == "cuda")
    log::info("attention on " + cuda_description() + " (" + to_string(device.dtype) + ")" +
              (made.device_comm ? ", device communicator " + made.device_comm->backend() : std::string()));
  return made;
}

void check_token_digest(const std::string& path, const std::string& named) {
  // (Before: train and eval read such a file as it was, and eval's same_data said true; from the fuzz audit.)
  uint64_t most = kTokenCheckBytes;
  if (const char* given = std::getenv("LONGCTX_TOKEN_CHECK_BYTES"); given && *given) {
    try {
      const int64_t parsed = parse_size("LONGCTX_TOKEN_CHECK_BYTES", given);
      if (parsed < 0) throw UsageError("negative");
      most = static_cast<uint64_t>(parsed);
    } catch (const UsageError&) {
      throw UsageError(std::string("environment variable LONGCTX_TOKEN_CHECK_BYTES='") + given +
                       "': give a byte count (K, M or G suffix; 0: no check)");
    }
  }
  std::error_code error;
  const uintmax_t bytes = std::filesystem::file_size(path, error);
  if (error || most == 0) return;  // (the reader says why it cannot be read)
  if (bytes > most) {
    log::info(named + ": " + human_bytes(static_cast<int64_t>(bytes)) + ", more than LONGCTX_TOKEN_CHECK_BYTES (" +
              human_bytes(static_cast<int64_t>(most)) + ") has a run read first; `longctx data verify " +
              log::shell_path(path) + "` checks every token against the file's digest");
    return;
  }
  const io::TokenVerifyReport report = io::verify_tokens(path);
  if (!report.opened || report.ok) return;
  throw InputError(named + " is damaged: " + report.summary() + " (checked before the run, as `longctx data verify " +
                   log::shell_path(path) + "` does; import it again)");
}

int64_t last_trained_token(const train::DataConfig& config, const train::Resumed& stored, bool one_length) {
  if (stored.data_seq_len <= 0) return -1;
  train::DataConfig then = config;
  then.seq_len = stored.data_seq_len;
  then.split_seq_len = 0;
  int64_t trained_end = -1;
  try {
    trained_end = train::make_dataset(then)->training_end();
  } catch (const Error&) {  // the file holds no sequence of that length now: another file
    return -1;
  }
  // The last token it trained on: before its first pass over the file ends (its windows follow each other
  // from token 0, so the position is its token count), the position's; after, its tail's (before: the
  // tail's always, which named tokens a short run never reached, and warned where nothing overlapped).
  int64_t reached = trained_end - 1;
  // (Tokens trained on an earlier file, before a resume with data.allow_new_file, are not this file's.)
  const int64_t earlier_files = stored.data_file ? stored.data_file->tokens_before : 0;
  const int64_t seen = stored.tokens_seen - earlier_files, n = stored.data_seq_len;
  if (stored.position && stored.position->token == seen) {
    reached = std::min(reached, stored.position->token);
  } else if (one_length && stored.seq_len == n && seen % n == 0) {
    // After it, at one length from token 0 (no curriculum, and a token count of whole windows of it, which a
    // resume at another length rarely leaves): its last whole window's last target (before: the training
    // end's token, past the windows of a file that holds one sequence and a part; from the eval audit). At
    // several lengths a window may start anywhere a stage left the position, so any token could be one.
    reached = (trained_end - 1) / n * n;
  }
  return std::max<int64_t>(reached, -1);
}

int64_t trained_token_in_history(const train::DataConfig& config, const train::Resumed& stored, bool one_length) {
  const int64_t before = stored.data_file ? stored.data_file->reached_before : -1;
  return std::max(before, last_trained_token(config, stored, one_length));
}

std::string trained_by(const train::Resumed& stored, int64_t reached) {
  if (stored.data_file && stored.data_file->reached_before >= 0 && stored.data_file->reached_before == reached)
    return "the runs before the checkpoint's last resume (data.seq_len=" + std::to_string(stored.data_seq_len) +
           " since)";
  return "the checkpoint's run (data.seq_len=" + std::to_string(stored.data_seq_len) + ")";
}

int64_t trained_token_in_held_out(const train::DataConfig& config, const train::Resumed& stored,
                                  const train::Dataset& data, bool one_length) {
  if (data.held_out_begin() < 0) return -1;
  // At the checkpoint's own length its run trained only before the tail; the runs it resumed, at any.
  const int64_t reached = stored.data_seq_len != config.seq_len ? trained_token_in_history(config, stored, one_length)
                          : stored.data_file                     ? stored.data_file->reached_before
                                                                 : -1;
  return reached > data.held_out_begin() ? reached : -1;
}

void check_train_fits_in_memory(const Invocation& inv, const TrainOptions& r, const DeviceChoice& device, bool eval) {
  // train: parameters, gradients and the AdamW moments (replicated), and per layer the activations the
  // backward keeps for this rank's rows, plus the logits and their gradient; eval: the parameters, one
  // layer's activations and the logits. Float32, a lower bound.
  const int P = inv.process.world().size();
  const model::ModelConfig& m = r.trainer.model;
  const double rows = static_cast<double>(r.trainer.seq_len / P);
  double kept = 0;  // per layer: the spanning branches' gathered K / V rows, kept for the backward
  if (P > 1 && !r.regather_kv && device.device == "cpu" && !eval)
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
  // eval: no backward (the logits alone, the final norm's input and output), nothing kept for it, one
  // layer's activations at a time (the forward reuses them), and the parameters without gradients or moments.
  // Both: the rotary table's cos and sin (rope dims per row).
  const double rotary = f(m.rope_dims > 0 ? m.rope_dims : m.head_dim());
  const double once = rotary + (eval ? f(m.vocab) + 2.0 * f(m.dim) : 2.0 * f(m.vocab) + 9.0 * f(m.dim) + 2.0 * f(m.mlp_hidden));
  const double layers_held = eval ? 1.0 : f(m.layers);
  const double floats = (eval ? 1.0 : 4.0) * f(model::make_layout(m).total()) +
                        rows * (layers_held * (8.0 * f(m.dim) + 2.0 * f(m.mlp_hidden) + 4.0 + f(m.heads)) + once) +
                        f(m.layers) * kept + workspace;
  check_fits_in_memory(std::string(eval ? "eval" : "train") + " (model.layers=" + std::to_string(m.layers) +
                           ", model.dim=" + std::to_string(m.dim) + ", " + (eval ? "--seq-len=" : "data.seq_len=") +
                           std::to_string(r.trainer.seq_len) + " over " + count_of(P, "rank") + ")",
                       eval ? "parameters, one layer's activations of its rows at a time, the logits and the "
                              "attention's own buffers, in float32"
                            : "parameters, gradients, AdamW moments, each layer's activations of its rows and the K / V "
                              "rows it gathered, the backward's working rows and the attention's own buffers, in float32",
                       floats * 4, inv.process.local_size(), omp_get_max_threads());
}

void check_train_invocation(const Invocation& inv) {
  const DeviceChoice device = attention_device(inv);
  const int P = inv.process.world().size();
  const TrainOptions r = validate_train_options(inv, P, false);
  // The config a checkpoint stores: a value it cannot hold (a line break) is refused before anything is
  // made (before: after checkpoint.dir and its lock were).
  train_config_text(inv);
  const int64_t resume_step = resume_step_hint(r);
  check_stages_shardable(r, resume_step, P, SpanningSegments::may_end_short);
  train::nan_gradient_fault(P);
  train::signal_fault_at();
  check_train_fits_in_memory(inv, r, device);
  if (device.device == "cuda") {
    check_shardable(r.trainer.model.schedule, r.trainer.seq_len, P, SpanningSegments::whole, kTrainScheduleNames);
    check_stages_shardable(r, resume_step, P, SpanningSegments::whole);
  }
  train::make_dataset(r.data);  // the token file's metadata too (exit 3 when it is no token file)
  curriculum_datasets(r);
  if (r.data.task == "file" && inv.process.world().rank() == 0)
    check_token_digest(r.data.path, "data.path=" + r.data.path);
  // Last: a run refused above creates nothing. (A refusal after this, of another rank's check or of the
  // ranks' comparison, removes what it made: undo_check.)
  if (!r.checkpoint_dir.empty() && inv.process.world().rank() == 0) {
    // The outputs validate left unchecked, in a checkpoint.dir that did not exist: it does after the lock.
    const bool log_unchecked = !r.log_jsonl.empty() && in_checkpoint_dir_to_make(r, r.log_jsonl);
    const bool dump_unchecked = !r.dump_path.empty() && in_checkpoint_dir_to_make(r, r.dump_path);
    const bool summary_unchecked = !r.summary_path.empty() && in_checkpoint_dir_to_make(r, r.summary_path);
    train::lock_checkpoint_dir(r.checkpoint_dir);
    if (log_unchecked) io::check_json_output_path("log.jsonl", r.log_jsonl, "appending would damage it");
    if (dump_unchecked) io::check_hdf5_output_path("dump.activations", r.dump_path, io::kActivationFormat);
    if (summary_unchecked) io::check_json_output_path("log.summary", r.summary_path, "writing would replace it");
    // Under the lock, so a temporary file held now is no other run's: a link or a directory at
    // step_N.h5.tmp would otherwise stop the run at step N's checkpoint.
    io::check_checkpoint_temporaries("checkpoint.dir=" + r.checkpoint_dir, r.checkpoint_dir);
  }
}

std::vector<std::pair<std::string, std::string>> train_shared_inputs(const Invocation& inv, const std::string& path_option) {
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
    const int fd = open_made_elsewhere(dir + "/" + train::kLockFile, patience_for(inv.process.world()));
    seen.emplace_back("checkpoint.dir's lock file (rank 0 wrote it)",
                      fd < 0 ? std::string("(none: ") + std::strerror(errno) + ")"
                             : "\"" + train::read_lock_holder(fd).value_or("") + "\"");
  }
  if (inv.options["data.task"].as<std::string>() == "file") {
    const std::string path = inv.options["data.path"].as<std::string>();
    const io::TokenReader tokens(path);
    const int64_t count = tokens.token_count(), sample = std::min<int64_t>(count, 4096);
    seen.emplace_back("the token count of " + path_option, std::to_string(count));
    // Sampled contents: a stale copy of the same length trained on other tokens with no error.
    Fingerprint fingerprint;
    for (const int64_t begin : {int64_t{0}, count - sample}) {
      const std::vector<int32_t> some = tokens.read(begin, begin + sample);
      fingerprint.add(some.data(), some.size() * sizeof(int32_t));
    }
    seen.emplace_back("the first and last 4096 tokens of " + path_option, "fingerprint " + fingerprint.hex());
    // All of them, as the import summed them (a copy that differs in the middle only).
    const std::optional<uint64_t> digest = tokens.identity().digest;
    seen.emplace_back("the digest of " + path_option + "'s tokens", digest ? io::digest_text(*digest) : "(none: imported before digests)");
  }
  return seen;
}
}  // namespace longctx::cli
