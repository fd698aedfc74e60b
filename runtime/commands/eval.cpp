// `longctx eval CHECKPOINT.h5|DIR`: scores a checkpoint of `longctx train` on held-out sequences of its task
// at the lengths given (--seq-len: the one it trained at, and longer ones: extrapolation), the passkey task
// by the depth of its record too (--depths: a needle-in-a-haystack table). Read-only: nothing is written,
// checkpoint.dir is not locked (a run may go on training there). Sharded over the ranks as `train` is, so
// a length one rank cannot hold runs on several; the figures are the same at any P up to rounding.
//
// The model and the task are the checkpoint's /config (train's options, parsed by train's own parser and
// checks); eval overrides only the length, the data file (--data-path) and where attention runs. The
// sequences are the ones `train`'s evaluation scores: held-out sequence i of (train.seed, length) for the
// synthetic tasks, the token file's held-out tail at each length for `file`.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

#include "io/checkpoint.hpp"
#include "io/durable.hpp"
#include "io/token_dataset.hpp"
#include "runtime/commands/commands.hpp"
#include "runtime/commands/train_options.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/fingerprint.hpp"
#include "runtime/core/heartbeat.hpp"
#include "runtime/core/log.hpp"
#include "runtime/train/json_log.hpp"
#include "runtime/train/train_state_io.hpp"

namespace longctx::cli {
namespace {

constexpr const char* kDefaultDepths = "0,25,50,75,100";

void declare_eval(po::options_description& d, po::positional_options_description& positional) {
  d.add_options()
      ("path", po::value<std::string>(),
       "a checkpoint of `longctx train`, or its checkpoint.dir (the one `latest` names; without `latest`, its "
       "newest step_*.h5, as a resume takes)")
      ("seq-len", po::value<std::string>()->default_value(""),
       "GLOBAL lengths to evaluate at, comma-separated, K/M/G suffixes (default: the length the checkpoint's last "
       "step trained at: its data.seq_len, or a curriculum stage's); "
       "each must shard at the world size as data.seq_len must in train")
      ("sequences", po::value<int64_t>()->default_value(8),
       "held-out sequences per length (and per depth); a token file may hold out fewer")
      ("depths", po::value<std::string>()->default_value(kDefaultDepths),
       "passkey: where the record lies, in percent of the sequence (0: right after its start, the farthest from "
       "the question; 100: right before it), comma-separated; `random` (any task): drawn as train's evaluation draws it")
      ("segment-lengths", po::value<std::string>()->default_value(""),
       "the attention's segment lengths w to evaluate with (default: the checkpoint's model.segment_lengths; no "
       "parameter depends on them): a branch as long as the sequence lets a query reach every key")
      ("dilation-rates", po::value<std::string>()->default_value(""),
       "the attention's dilation rates r to evaluate with (default: the checkpoint's model.dilation_rates)")
      ("data-path", po::value<std::string>()->default_value(""),
       "data.task=file: the token dataset to read (default: the checkpoint's data.path; LONGCTX_DATA_PATH, "
       "train's data.path too, is not used for a checkpoint of another task)")
      ("device", po::value<std::string>()->default_value("cpu"), "where attention runs: cpu, or cuda (one GPU per rank)")
      ("dtype", po::value<std::string>()->default_value("fp32"), "the type the attention kernels read q, k, v in: fp32, "
       "bf16, fp16 (bf16 / fp16 need --device cuda; under mpirun cuda takes bf16 / fp16)")
      ("comm", po::value<std::string>()->default_value("auto"), "device communicator with --device cuda under mpirun: "
       "auto, nccl, staged or mpi")
      ("threads", po::value<int>()->default_value(0), "OpenMP threads per rank (0: as train.threads=0)")
      ("json", po::bool_switch(), "print one JSON object per line, one per length (and depth): checkpoint, step, "
       "task, seq_len, trained_seq_len, depth (percent, or null), sequences, loss, accuracy, scored, seconds, world_size, "
       "schedule ([[w, r], ...]), same_data (whether the token file is the one the checkpoint's run trained on, by its "
       "token count and digest; null: a synthetic task, or a file or checkpoint that predates digests)");
  positional.add("path", 1);
}

template <class T> T opt(const Invocation& inv, const char* name) { return inv.options[name].as<T>(); }

// What eval runs: the checkpoint, train's options as its /config has them (with eval's overrides), and the
// cells to score.
struct EvalPlan {
  std::string checkpoint;         // the file read
  int64_t step = 0;
  int64_t trained_seq_len = 0;    // the length its last step trained at (data.seq_len, or a curriculum stage's)
  std::unique_ptr<Invocation> train;  // train's invocation made of /config
  TrainOptions options;           // validated; data.seq_len is the longest length evaluated
  DeviceChoice device;
  std::vector<int64_t> lengths;
  bool default_length = false;    // lengths is the checkpoint's (no --seq-len given)
  std::optional<int64_t> trained_file_tokens;  // the token count of the file its run trained on, where recorded
  std::vector<double> depths;     // percents of the sequence; {-1}: a random depth
  int64_t sequences = 0;
  bool json = false;
  ScheduleOptionNames names;      // of the schedule's options, for messages: train's, or eval's where given
};

const Command& train_command_of(const std::vector<Command>& commands) {
  for (const Command& c : commands)
    if (c.name == "train") return c;
  throw InternalError("no train command");
}

// The items of a comma-separated list as written, blanks around them trimmed ("50,,60" has an empty one).
std::vector<std::string> list_items(const std::string& text) {
  std::vector<std::string> items;
  size_t from = 0;
  while (true) {
    const size_t comma = std::min(text.find(',', from), text.size());
    std::string item = text.substr(from, comma - from);
    const size_t b = item.find_first_not_of(' '), e = item.find_last_not_of(' ');
    items.push_back(b == std::string::npos ? "" : item.substr(b, e - b + 1));
    if (comma == text.size()) return items;
    from = comma + 1;
  }
}

// --depths: percents in [0, 100], written as decimal numbers, or `random` (the draw of train's evaluation;
// what the other tasks do anyway). {-1}: random.
std::vector<double> parse_depths(const Invocation& inv, const std::string& task) {
  const std::string text = opt<std::string>(inv, "depths");
  const std::vector<std::string> items = list_items(text);  // blanks around each item dropped, as for numbers
  if (items.size() == 1 && items.front() == "random") return {-1};
  if (task != "passkey") {
    if (inv.sources.at("depths") != "default")
      throw UsageError("--depths=" + text + ": only the passkey task has one record to place (the checkpoint's data.task is " +
                           task + "): leave --depths out",
                       "depths");
    return {-1};
  }
  if (items.size() > 1 && std::find(items.begin(), items.end(), "random") != items.end())
    throw UsageError("--depths=" + text + ": `random` stands alone (each sequence's depth drawn as train draws it), "
                         "not in a list of percents",
                     "depths");
  std::vector<double> depths;
  for (const std::string& item : items) {
    char* end = nullptr;
    const double percent = std::strtod(item.c_str(), &end);
    const bool decimal = !item.empty() && item.find_first_not_of("0123456789.") == std::string::npos;
    if (!decimal || end != item.c_str() + item.size() || percent > 100)
      throw UsageError("--depths=" + text + ": '" + item + "' is not a percent in [0, 100] (or give `random`)",
                       "depths");
    if (std::find(depths.begin(), depths.end(), percent) != depths.end())
      throw UsageError("--depths=" + text + ": " + item + " is given twice", "depths");
    depths.push_back(percent);
  }
  return depths;
}

// The data of one cell: the checkpoint's task at `length` (passkey: its record at `depth` percent).
train::DataConfig cell_data(const EvalPlan& plan, int64_t length, double depth) {
  train::DataConfig d = plan.options.data;
  d.seq_len = length;
  d.seq_len_option = "--seq-len";
  d.split_seq_len = 0;
  d.eval_depth = depth < 0 ? -1 : depth / 100;
  return d;
}

// The checkpoint `given` names (a directory: the one its `latest` names) and what eval reads of it first:
// /config, step, and the length its last step trained at (root attribute seq_len; a curriculum stage's).
// One that a running train removed between the reading of `latest` and the opening is followed to the one
// `latest` names now (up to 5 times).
struct CheckpointHead {
  std::string path, config;
  int64_t step = 0, seq_len = 0;
  std::optional<int64_t> data_tokens;  // root attribute data_tokens (a file task's token file), where there
};
CheckpointHead read_head(const std::string& given) {
  CheckpointHead head;
  read_checkpoint_in(given, 5, [&head](const std::string& path) {
    const io::CheckpointReader reader(path);
    if (!reader.file().has_attribute("model_layers"))
      throw InputError(path + ": not a checkpoint of `longctx train` (it has no model_layers attribute): no model to "
                       "evaluate");
    // Values no training writes are damage, before anything is sized by them (a seq_len of 1e12 was refused
    // for its memory, exit 2).
    train::require_sound_attributes(reader, "`longctx ckpt verify` checks the whole file");
    head = {path, reader.config(), reader.step(), reader.seq_len(), std::nullopt};
    if (reader.file().has_attribute("data_tokens"))
      head.data_tokens = reader.file().read_int64_attribute("data_tokens");
  });
  return head;
}

// The checkpoint's model.*, data.* and train.seed (every held-out sequence is drawn from it), for train's
// parser; a key train does not know is an InputError (`in_config` names the file's /config).
std::map<std::string, std::string> train_values_of(const std::map<std::string, std::string>& saved,
                                                   const std::string& in_config) {
  po::options_description declared;
  po::positional_options_description unused;
  declare_train_options(declared, unused);
  std::map<std::string, std::string> values;
  for (const auto& [key, value] : saved) {
    const bool needed = key.rfind("model.", 0) == 0 || key.rfind("data.", 0) == 0 || key == "train.seed";
    if (needed && !declared.find_nothrow(key, false))  // the model or the data would not be the checkpoint's
      throw InputError(in_config + key + " = " + value +
                       " is no option of this longctx's train (a checkpoint of a newer version?): cannot rebuild its "
                       "model and data");
    if (needed) values[key] = value;
  }
  return values;
}

// `task` (a /config's data.task) as a problem: "" for a task of this train, else why not. (train refuses an
// unknown task where it makes the dataset, which eval and verify do not reach first.)
std::string task_problem(const std::string& in_config, const std::string& task) {
  if (task == "passkey" || task == "associative" || task == "file") return "";
  return in_config + "data.task = " + task + " is no task of this longctx's train";
}

// `values` (option -> value) as train's command line, through train's parser alone (no environment, no
// config file): what eval and verify rebuild of a checkpoint's /config.
Invocation parse_as_train(ProcessContext& process, const std::map<std::string, std::string>& values) {
  std::vector<std::string> args;
  for (const auto& [key, value] : values) args.push_back("--" + key + "=" + value);
  const GetEnv none = [](const std::string&) { return std::optional<std::string>(); };
  po::options_description parsed;
  return parse_invocation(process, train_command_of(all_commands()), args, none, {}, parsed);
}

EvalPlan plan_eval(const Invocation& inv) {
  EvalPlan plan;
  const CheckpointHead head = read_head(opt<std::string>(inv, "path"));
  plan.checkpoint = head.path;
  plan.step = head.step;
  plan.trained_file_tokens = head.data_tokens;
  const int64_t last_len = head.seq_len;
  const std::string in_config = plan.checkpoint + ": /config: ";
  const std::map<std::string, std::string> saved = train::ini_values(head.config, plan.checkpoint + ": /config");
  const auto setting = [&saved](const std::string& key, const std::string& otherwise) {
    const auto it = saved.find(key);
    return it == saved.end() ? otherwise : it->second;
  };
  try {
    plan.trained_seq_len = last_len >= 2 ? last_len : parse_size("data.seq_len", setting("data.seq_len", "8192"));
  } catch (const UsageError& e) {
    throw InputError(in_config + e.what());
  }
  const std::string task = setting("data.task", "passkey");
  if (const std::string problem = task_problem(in_config, task); !problem.empty()) throw InputError(problem);

  const int threads = opt<int>(inv, "threads");
  if (threads < 0 || threads > kMaxThreads)
    throw UsageError("--threads=" + std::to_string(threads) + ": must be in [0, " + std::to_string(kMaxThreads) + "]",
                     "threads");
  const std::string seq_len = opt<std::string>(inv, "seq-len");
  plan.lengths = seq_len.empty() ? std::vector<int64_t>{plan.trained_seq_len} : parse_size_list("seq-len", seq_len);
  plan.default_length = seq_len.empty();
  for (size_t i = 0; i < plan.lengths.size(); ++i) {
    const int64_t n = plan.lengths[i];
    if (n < 2) throw UsageError("--seq-len=" + seq_len + ": each length must be >= 2", "seq-len");
    if (std::find(plan.lengths.begin(), plan.lengths.begin() + static_cast<std::ptrdiff_t>(i), n) != plan.lengths.begin() + static_cast<std::ptrdiff_t>(i))
      throw UsageError("--seq-len=" + seq_len + ": " + std::to_string(n) + " is given twice",
                       "seq-len");
  }
  plan.sequences = opt<int64_t>(inv, "sequences");
  if (plan.sequences < 1 || plan.sequences > 1000000)
    throw UsageError("--sequences=" + std::to_string(plan.sequences) + ": must be in [1, 1000000]",
                     "sequences");
  plan.depths = parse_depths(inv, task);
  std::string data_path = opt<std::string>(inv, "data-path");
  // LONGCTX_DATA_PATH is also train's data.path: exported for a job's train runs, it is no request of eval's
  // for a checkpoint that reads no file (before: refused, exit 2; from the eval and config audits).
  if (const auto source = inv.sources.find("data-path");
      !data_path.empty() && task != "file" && source != inv.sources.end() && source->second.rfind("env ", 0) == 0) {
    log::warn_once(env_name("data-path") + "=" + data_path + " is not used: the checkpoint's data.task is " + task +
                   ", which makes its own sequences");
    data_path.clear();
  }
  if (!data_path.empty() && task != "file")
    throw UsageError("--data-path=" + data_path + ": the checkpoint's data.task is " + task +
                         ", which makes its own sequences (only data.task=file reads a file)",
                     "data-path");
  plan.json = opt<bool>(inv, "json");

  // train's options: the checkpoint's model, data and seed (every held-out sequence is drawn from it) as
  // train's command line, through train's parser and checks, with eval's overrides; train.steps 1; the
  // rest (checkpoints, logs) as train's defaults, which eval does not use. Not the environment's LONGCTX_*
  // (those are eval's).
  std::map<std::string, std::string> values = train_values_of(saved, in_config);
  values["data.seq_len"] = std::to_string(*std::max_element(plan.lengths.begin(), plan.lengths.end()));
  // Eval trains nothing: train's bound on steps x seq_len (2^63 tokens) is not its to meet at the default
  // 100 steps (before: --seq-len 1e17 was refused as the checkpoint's /config, exit 3).
  values["train.steps"] = "1";
  values["data.short_seq_len"] = "0";
  values["data.short_steps"] = "0";
  values["train.threads"] = std::to_string(threads);
  for (const char* choice : {"device", "dtype", "comm"}) values[choice] = opt<std::string>(inv, choice);
  if (!data_path.empty()) values["data.path"] = data_path;
  // Another schedule: checked here, naming eval's options (the model's parameters do not depend on it).
  plan.names = ScheduleOptionNames{"the checkpoint's model.segment_lengths", "the checkpoint's model.dilation_rates", "",
                                   "--seq-len="};
  const std::string segments = opt<std::string>(inv, "segment-lengths"), dilations = opt<std::string>(inv, "dilation-rates");
  if (!segments.empty() || !dilations.empty()) {
    if (!segments.empty()) {
      values["model.segment_lengths"] = segments;
      plan.names.segment_lengths = "--segment-lengths";
    }
    if (!dilations.empty()) {
      values["model.dilation_rates"] = dilations;
      plan.names.dilation_rates = "--dilation-rates";
    }
    make_schedule(parse_size_list(segments.empty() ? "model.segment_lengths" : "segment-lengths", values["model.segment_lengths"]),
                  parse_size_list(dilations.empty() ? "model.dilation_rates" : "dilation-rates", values["model.dilation_rates"]),
                  false, plan.names);
  }
  try {
    plan.train = std::make_unique<Invocation>(parse_as_train(inv.process, values));
  } catch (const UsageError& e) {
    throw InputError(in_config + e.what());
  }
  plan.device = attention_device(*plan.train);
  try {
    // At one rank: whether each length shards at P is check_cells', which names --seq-len.
    plan.options = validate_train_options(*plan.train, 1, false);
    // The task's own settings (model.vocab for the synthetic tasks, key_digits, records) at the length the
    // checkpoint trained at: what fails here is the checkpoint's. (A token file is read in check_cells.)
    if (task != "file") train::make_dataset(cell_data(plan, plan.trained_seq_len, -1));
  } catch (const UsageError& e) {
    throw InputError(in_config + e.what());
  }
  return plan;
}

// The token file as messages name it: --data-path where given, else the checkpoint's data.path.
std::string data_path_name(const Invocation& inv) {
  return opt<std::string>(inv, "data-path").empty() ? "the checkpoint's data.path" : "--data-path";
}

// The checks of every cell, before any work (the config phase): each length shards at the world size
// (whole spanning segments on GPUs), the task fits it, the token file is there; the longest fits in memory.
void check_cells(const Invocation& inv, const EvalPlan& plan) {
  const int P = inv.process.world().size();
  const ScheduleOptionNames& names = plan.names;
  const std::string& file = plan.options.data.path;
  std::error_code error;
  if (plan.options.data.task == "file" && opt<std::string>(inv, "data-path").empty() && file.empty())
    throw InputError("the checkpoint's data.path is empty (data.task=file with no token file named): --data-path "
                     "names the token dataset it trained on");
  if (plan.options.data.task == "file" && opt<std::string>(inv, "data-path").empty() && !std::filesystem::exists(file, error))
    throw InputError("the checkpoint's data.path=" + file + " is not there" +
                     (std::filesystem::path(file).is_relative() ? " (from this working directory)" : std::string()) +
                     ": --data-path reads the token dataset where it is now");
  const std::string file_name = data_path_name(inv) + "=" + file;
  std::optional<int64_t> tokens;  // the token file's length
  if (plan.options.data.task == "file") {
    const io::TokenReader reader(file);
    tokens = reader.token_count();
    // The model cannot change here: a file with larger ids is the wrong input (exit 3; before, train's
    // check said "model.vocab is smaller", exit 2).
    const int64_t model_vocab = plan.options.trainer.model.vocab;
    if (reader.vocab() > model_vocab)
      throw InputError(file_name + " has a vocabulary of " + std::to_string(reader.vocab()) + " ids, more than the checkpoint's model (model.vocab=" +
                       std::to_string(model_vocab) + ") reads: give a token dataset imported for this model's vocabulary");
    if (inv.process.world().rank() == 0) check_token_digest(file, file_name);
  }
  for (int64_t n : plan.lengths) {
    try {
      check_shardable(plan.options.trainer.model.schedule, n, P, SpanningSegments::may_end_short, names);
      if (plan.device.device == "cuda") check_shardable(plan.options.trainer.model.schedule, n, P, SpanningSegments::whole, names);
    } catch (const UsageError& e) {
      // Another schedule only where the segments were the problem (before: also for N not divisible by P).
      throw UsageError(std::string(e.what()) + " (eval: another --seq-len or world size" +
                       (opt<std::string>(inv, "seq-len").empty() ? ", where the default is the checkpoint's length " + std::to_string(n) : std::string()) +
                       (n % P != 0 ? ")" : ", or another schedule: --segment-lengths, --dilation-rates)"),
                       e.option());
    }
    if (plan.options.data.task == "file" && *tokens < n + 1) {
      // The checkpoint's own data.path, shorter than when its run trained on it: replaced since, which is
      // what to say (before: a --seq-len mistake, exit 2, where no --seq-len was given; from the eval audit).
      const std::optional<int64_t>& then = plan.trained_file_tokens;
      // (Only where the file then could score this length: else the length is the mistake, as it was then.)
      if (opt<std::string>(inv, "data-path").empty() && then && *then != *tokens && *then >= n + 1)
        throw InputError(file_name + " holds " + std::to_string(*tokens) + " tokens, but the file the checkpoint's "
                         "run trained on under that name held " + std::to_string(*then) + ": it was replaced since, "
                         "and holds no sequence of " + std::to_string(n) + " + 1 tokens; --data-path reads the token "
                         "dataset the run trained on where it is now (or another to score)");
      throw UsageError((plan.default_length ? "the checkpoint's length " + std::to_string(n) + " (--seq-len's default)"
                                            : "--seq-len: " + std::to_string(n)) +
                           " is longer than " + file_name + " can score: it holds " + std::to_string(*tokens) +
                           " tokens, a sequence needs N + 1 (--seq-len at most " + std::to_string(*tokens - 1) + ")",
                       "seq-len");
    }
    train::make_dataset(cell_data(plan, n, plan.depths.front()));
  }
  check_train_fits_in_memory(*plan.train, plan.options, plan.device, true);
}

void check_eval(const Invocation& inv) {
  require_positional_path(inv, "a checkpoint");
  check_cells(inv, plan_eval(inv));
}

// What every rank must see alike: a token file's length and sampled contents (train's check). The
// checkpoint is compared in the run (load_on_every_rank): a directory's `latest` may move on meanwhile.
std::vector<std::pair<std::string, std::string>> eval_shared_inputs(const Invocation& inv) {
  return train_shared_inputs(*plan_eval(inv).train, data_path_name(inv));
}

// Loads into `trainer` the checkpoint rank 0 finds (a directory's `latest` may move on while the ranks look:
// before, each rank read its own and figures mixed two steps), each rank reading that file with serial HDF5,
// and checks that every rank holds rank 0's parameters (another file under the same name on another node, or
// from another working directory, is refused). A checkpoint a running train removed before every rank read it
// is followed to the one `latest` names now. `plan`'s checkpoint, step and trained length become that file's.
train::Resumed load_on_every_rank(comm::Communicator& world, train::Trainer& trainer, const std::string& given,
                                  EvalPlan& plan) {
  const bool rank0 = world.rank() == 0;
  for (int attempt = 1;; ++attempt) {
    std::string problem;  // this rank's
    train::Resumed stored;
    std::string named;  // rank 0's reading of `latest` ("": it failed, `problem` says why)
    if (rank0) {
      try {
        named = checkpoint_in(given);
      } catch (const InputError& e) {
        problem = e.what();
      }
    }
    const std::string path = comm::broadcast_text(world, named, 0);
    if (path.empty()) {
      if (problem.empty()) problem = given + ": rank 0 could not read which checkpoint it names (its error is above)";
    } else {
      try {
        const CheckpointHead head = read_head(path);
        // Its own /config: the same model, and no warning about train or data settings that differ.
        stored = train::load_checkpoint(trainer, path, head.config, MPI_COMM_NULL);
        plan.checkpoint = path;
        plan.step = head.step;
        if (head.seq_len >= 2) plan.trained_seq_len = head.seq_len;
      } catch (const InputError& e) {
        problem = e.what();
      }
    }
    int32_t failed = problem.empty() ? 0 : 1;
    world.all_reduce(Span<int32_t>(&failed, 1), comm::ReduceOp::max);
    if (failed) {
      int32_t again = rank0 && attempt < 5 && rotated_away(given, path) ? 1 : 0;
      world.broadcast(Span<int32_t>(&again, 1), 0);
      if (again) continue;
      throw InputError(problem.empty() ? path + ": another rank could not read it (its error is above)" : problem);
    }
    Fingerprint fingerprint;
    fingerprint.add(trainer.params().data(), trainer.params().size() * sizeof(float));
    const std::string mine = fingerprint.hex() + "@" + std::to_string(trainer.step());
    int32_t differs = comm::broadcast_text(world, mine, 0) != mine ? 1 : 0;
    world.all_reduce(Span<int32_t>(&differs, 1), comm::ReduceOp::max);
    if (differs)
      throw InputError(path + ": some ranks read other parameters there than rank 0 (a node-local copy, or a relative "
                       "path from another working directory?): every rank must read the same checkpoint");
    return stored;
  }
}

// A depth as given, to 12 digits ("33.333333%", "99.99999999%"; before, 6 digits made 100% of both).
std::string percent(double depth) {
  char text[32];
  std::snprintf(text, sizeof text, "%.12g%%", depth);
  return text;
}

// A cell as messages name it: "N = 4096" or "N = 4096, depth 50%".
std::string what_cell(int64_t n, double depth) {
  return "N = " + std::to_string(n) + (depth >= 0 ? ", depth " + percent(depth) : std::string());
}

int run_eval(Invocation& inv) {
  EvalPlan plan = plan_eval(inv);
  comm::Communicator& world = inv.process.world();
  const int P = world.size();
  const bool rank0 = world.rank() == 0;
  const TrainAttention attention = make_train_attention(*plan.train, plan.options, plan.device, "--threads");
  train::Trainer trainer(plan.options.trainer, world, *attention.impl, train::Trainer::Purpose::evaluate);
  // Each rank reads the whole (replicated) checkpoint itself: serial HDF5, no MPI-IO, which may make and remove a
  // lock-test file beside the checkpoint (eval writes nothing).
  const train::Resumed stored = load_on_every_rank(world, trainer, opt<std::string>(inv, "path"), plan);
  const model::ModelConfig& m = plan.options.trainer.model;
  const std::string& task = plan.options.data.task;
  const bool by_depth = plan.depths.front() >= 0;
  if (rank0) {
    // The lengths resolved: the config printed shows --seq-len's default as "" (the trained length).
    std::string lengths;
    for (const int64_t n : plan.lengths) lengths += (lengths.empty() ? "" : ", ") + std::to_string(n);
    log::info("eval: " + plan.checkpoint + ", step " + std::to_string(plan.step) + " (trained at N = " +
              std::to_string(plan.trained_seq_len) + "), scoring N = " + lengths + "; " +
              count_of(m.layers, "layer") + ", dim " + std::to_string(m.dim) + ", " + count_of(m.heads, "head") +
              ", schedule " + to_string(m.schedule) + "; task " + task +
              (task == "file" ? " (" + plan.options.data.path + ")" : "") + ", up to " +
              count_of(plan.sequences, "sequence") + " per " + (by_depth ? "length and depth" : "length") + ", over " +
              count_of(P, "rank"));
  }
  // The token file against the one the checkpoint's run trained on (its count and digest, where the
  // checkpoint recorded them): another (a validation corpus) is scored as asked, with no check of its
  // held-out tail against the tokens that run trained on. JSON's same_data: true, false, or null (unknown).
  bool other_file = false;
  const char* same_data = "null";
  if (task == "file" && stored.data_file) {
    const io::TokenIdentity file = io::TokenReader(plan.options.data.path).identity();
    const std::string difference = io::token_identity_difference(stored.data_file->identity, file);
    other_file = !difference.empty();
    same_data = other_file ? "false" : stored.data_file->identity.digest && file.digest ? "true" : "null";
    if (other_file && rank0)
      log::warn(plan.options.data.path + " is not the token file the checkpoint's run trained on" +
                (stored.data_path.empty() ? "" : " (" + stored.data_path + ")") + ": " + difference +
                ". Its held-out tail is scored, with no check against the tokens that run trained on");
  }

  std::vector<std::vector<double>> accuracy(plan.lengths.size());  // [length][depth], for the table
  const bool one_length = plan.options.stage_len.empty();  // the checkpoint's /config: no length curriculum
  for (size_t li = 0; li < plan.lengths.size(); ++li) {
    const int64_t n = plan.lengths[li];
    trainer.set_seq_len(n);
    for (double depth : plan.depths) {
      const train::DataConfig cell = cell_data(plan, n, depth);
      const auto data = train::make_dataset(cell);
      int64_t sequences = plan.sequences;
      const int64_t distinct = data->eval_sequence_count();
      if (data->evaluates_on_training_data()) {  // said also where one sequence is asked for
        if (rank0) {
          // Its tokens [0, n]: which of them the checkpoint's run trained on (before: only that a run at this
          // length would, where that run, at another length, had).
          const int64_t reached = other_file ? -1 : trained_token_in_history(cell, stored, one_length);
          const std::string run = trained_by(stored, reached);
          log::warn("N = " + std::to_string(n) + ": " + plan.options.data.path +
                    " holds a single sequence of this length (" + std::to_string(n) +
                    " + 1 tokens), so none is held out at it: " +
                    (reached >= n   ? "it is scored, and " + run + " trained on all of it"
                     : reached >= 0 ? "it is scored, and " + run + " trained on it up to token " + std::to_string(reached)
                                    : "the one scored holds tokens a run at this length would train on"));
        }
        sequences = std::min(sequences, distinct);
      } else if (distinct > 0 && distinct < sequences) {
        if (rank0)
          log::warn("N = " + std::to_string(n) + ": " + plan.options.data.path + " holds out " +
                    count_of(distinct, "sequence") + " of this length: " + (distinct == 1 ? "it is" : "those are") +
                    " scored");
        sequences = distinct;
      }
      if (const int64_t reached = other_file ? -1 : trained_token_in_held_out(cell, stored, *data, one_length);
          reached >= 0 && rank0)
        log::warn("N = " + std::to_string(n) + ": the held-out tail of " + plan.options.data.path + " starts at token " +
                  std::to_string(data->held_out_begin() + 1) + ", but " + trained_by(stored, reached) +
                  " trained on tokens up to " + std::to_string(reached) +
                  ": this length is scored partly on training data");
      const auto t0 = std::chrono::steady_clock::now();
      train::EvalStats e;
      {
        // Rank 0's line while a cell runs long, also while one sequence's forward pass takes minutes (a length
        // near the memory's limit). evaluate() asks its stop callback after each sequence: counted there.
        std::atomic<int64_t> scored{0};
        const std::string what = what_cell(n, depth);
        const Heartbeat progress(rank0, [&](double seconds) {
          return what + ": " + std::to_string(scored.load(std::memory_order_relaxed)) + " of " +
                 count_of(sequences, "sequence") + " scored, " + Heartbeat::elapsed_text(seconds) + " s";
        });
        e = trainer.evaluate(*data, sequences, [&scored] {
          scored.fetch_add(1, std::memory_order_relaxed);
          return 0;
        });
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      // Every rank has the same (all-reduced) loss, so every rank ends here alike. Before, the cell was
      // printed with loss nan (JSON null) and accuracy 0, and eval exited 0, as train does not.
      if (!std::isfinite(e.loss))
        throw InternalError("the loss at " + what_cell(n, depth) + " is " +
                            (std::isnan(e.loss) ? std::string("nan") : std::to_string(e.loss)) +
                            ", not finite: the checkpoint's parameters overflow the forward pass at this length (the "
                            "cells before it, if any, are printed above)");
      accuracy[li].push_back(e.accuracy);
      if (!rank0) continue;
      if (plan.json) {
        std::printf("{\"checkpoint\": %s, \"step\": %lld, \"task\": %s, \"seq_len\": %lld, \"trained_seq_len\": %lld, "
                    "\"depth\": %s, \"sequences\": %lld, \"loss\": %s, \"accuracy\": %s, \"scored\": %lld, "
                    "\"seconds\": %s, \"world_size\": %d, \"schedule\": %s, \"same_data\": %s}\n",
                    json_string(plan.checkpoint).c_str(), (long long)plan.step, json_string(task).c_str(), (long long)n,
                    (long long)plan.trained_seq_len, depth >= 0 ? train::json_number(depth).c_str() : "null",
                    (long long)sequences, train::json_number(e.loss).c_str(), train::json_number(e.accuracy).c_str(),
                    (long long)e.scored, train::json_number(seconds).c_str(), P, json_schedule(m.schedule).c_str(),
                    same_data);
      } else {
        std::ostringstream line;
        line << "N " << n;
        if (depth >= 0) line << "  depth " << percent(depth);
        if (task == "file")
          line << "  loss " << fixed(e.loss, 4) << "  perplexity " << fixed(std::exp(e.loss), 2) << "  next-token accuracy "
               << fixed(e.accuracy, 4);
        else
          line << "  accuracy " << fixed(e.accuracy, 3) << "  loss " << fixed(e.loss, 4);
        line << "  (" << count_of(sequences, "sequence") << ", " << e.scored << " scored targets, " << fixed(seconds, 1)
             << " s)";
        std::printf("%s\n", line.str().c_str());
      }
      // A cell's line that could not be written ends the run there: the cells after it would be lost too
      // (before: every cell was scored first, minutes each at long lengths; from the config audit).
      if (const std::string lost = io::check_standard_output(); !lost.empty())
        throw InternalError("standard output: " + lost + ": the result of " + what_cell(n, depth) +
                            " is lost; the cells after it are not scored");
    }
  }
  // The needle-in-a-haystack table: exact-match accuracy by length (rows) and depth (columns).
  if (rank0 && !plan.json && by_depth && (plan.depths.size() > 1 || plan.lengths.size() > 1)) {
    std::ostringstream table;
    table << "\npasskey accuracy (all " << plan.options.data.key_digits
          << " digits right) by length and depth of the record:\n" << std::right;
    // Each column 2 wider than its label, at least 8 (blanks between labels however long).
    std::vector<int> widths;
    for (double depth : plan.depths) widths.push_back(std::max<int>(8, static_cast<int>(percent(depth).size()) + 2));
    table.width(10);
    table << "N";
    for (size_t d = 0; d < plan.depths.size(); ++d) {
      table.width(widths[d]);
      table << percent(plan.depths[d]);
    }
    table << "    mean\n";
    for (size_t li = 0; li < plan.lengths.size(); ++li) {
      table.width(10);
      table << plan.lengths[li];
      double sum = 0;
      for (size_t d = 0; d < accuracy[li].size(); ++d) {
        table.width(widths[d]);
        table << fixed(accuracy[li][d], 3);
        sum += accuracy[li][d];
      }
      table.width(8);
      table << fixed(sum / double(accuracy[li].size()), 3) << "\n";
    }
    std::printf("%s", table.str().c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

std::string train_config_problem(ProcessContext& process, const std::string& path, const std::string& config) {
  const std::string in_config = path + ": /config: ";
  try {
    std::map<std::string, std::string> values =
        train_values_of(train::ini_values(config, path + ": /config"), in_config);
    if (const auto task = values.find("data.task"); task != values.end())
      if (std::string problem = task_problem(in_config, task->second); !problem.empty()) return problem;
    values["train.steps"] = "1";  // (steps are no part of the model or data: train's bound on steps x seq_len is not its)
    validate_train_options(parse_as_train(process, values), 1, false);
  } catch (const UsageError& e) {
    return in_config + e.what();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

Command eval_command() {
  return {"eval",
          "score a train checkpoint on held-out sequences of its task at the lengths given (and beyond its training "
          "length); passkey: by depth of the record",
          "CHECKPOINT|DIR", declare_eval, run_eval, check_eval, eval_shared_inputs};
}

}  // namespace longctx::cli
