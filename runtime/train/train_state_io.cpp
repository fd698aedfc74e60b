#include "runtime/train/train_state_io.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "io/checkpoint.hpp"
#include "io/digest.hpp"
#include "io/durable.hpp"
#include "runtime/cli/command.hpp"
#include "runtime/cli/ini.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/watchdog.hpp"

namespace longctx::train {
namespace {

// What /state/global/<name> holds, read once: its int64s when it holds `count` of them, and its size.
struct StoredInt64s {
  std::vector<int64_t> values;  // empty when it holds another number of bytes
  size_t bytes = 0;
};
StoredInt64s read_int64s(const io::CheckpointReader& reader, const std::string& name, size_t count) {
  const std::vector<uint8_t> blob = reader.read_global_blob(name);
  StoredInt64s out;
  out.bytes = blob.size();
  if (blob.size() == count * sizeof(int64_t)) {
    out.values.resize(count);
    std::memcpy(out.values.data(), blob.data(), blob.size());
  }
  return out;
}

// The train state under /state/global: step, and data_position and rng_seed where the file has them
// (checkpoints before did not), checked against the step attribute.
struct StoredState {
  std::vector<std::string> problems;     // what is wrong, one line each; none when they agree
  std::optional<DataPosition> position;  // data_position, when the file has a sound one
};
StoredState read_state(const io::CheckpointReader& reader) {
  StoredState state;
  const StoredInt64s step = read_int64s(reader, "step", 1);
  if (step.values.empty() || step.values[0] != reader.step())
    state.problems.push_back("/state/global/step holds " +
                             (step.values.empty() ? std::to_string(step.bytes) + " bytes" : std::to_string(step.values[0])) +
                             ", the step attribute says " + std::to_string(reader.step()));
  // has(): the link. A damaged object header fails has_dataset(), which took the file for one written
  // before checkpoints held a position and resumed from the wrong tokens; read_int64s now refuses it.
  if (reader.file().has("state/global/data_position")) {
    const StoredInt64s position = read_int64s(reader, "data_position", 2);
    if (position.values.empty())
      state.problems.push_back("/state/global/data_position holds " + std::to_string(position.bytes) +
                               " bytes, not 16 (int64 sequence, int64 token)");
    else if (position.values[0] != reader.step() || position.values[1] < 0)
      state.problems.push_back("/state/global/data_position holds sequence " + std::to_string(position.values[0]) +
                               ", token " + std::to_string(position.values[1]) + ": the step attribute says sequence " +
                               std::to_string(reader.step()) + ", and a token is >= 0");
    else
      state.position = DataPosition{position.values[0], position.values[1]};
  }
  if (reader.file().has("state/global/rng_seed"))
    if (const StoredInt64s seed = read_int64s(reader, "rng_seed", 1); seed.values.empty())
      state.problems.push_back("/state/global/rng_seed holds " + std::to_string(seed.bytes) + " bytes, not 8");
  // Every checkpoint with a run id (those since 2026-12-02) holds both: one without them is damaged, not old
  // (before: verify said "ok", and a resume of the file task started from the step's window at the new length,
  // skipping tokens without a word; from the ckpt audit).
  if (reader.file().has_attribute("run_id"))
    for (const char* name : {"data_position", "rng_seed"})
      if (!reader.file().has(std::string("state/global/") + name))
        state.problems.push_back(std::string("/state/global/") + name + " is missing (every checkpoint with a run_id "
                                 "attribute holds it)");
  return state;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& line : lines) text += (text.empty() ? "" : "; ") + line;
  return text;
}

// A value as %g writes it: an Adam second moment of -3e-9 is not "-0.000000" (std::to_string).
std::string general(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

// A value as it is meant, not as it was written: "64, 128" and "1K" are the sizes 64,128 and 1024, "1e4"
// is 10000, "on" is true; anything else is itself. (The INI reader has trimmed it.)
std::string canonical(const std::string& text) {
  try {
    std::string joined;
    for (int64_t n : cli::parse_size_list("value", text)) joined += (joined.empty() ? "" : ",") + std::to_string(n);
    return joined;
  } catch (const Error&) {
  }
  // An integer past int64 (a train.seed up to 2^64-1) as itself: as a double, neighbours compared equal.
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos) {
    errno = 0;
    const unsigned long long integer = std::strtoull(text.c_str(), nullptr, 10);
    if (errno == 0) return std::to_string(integer);
  }
  char* end = nullptr;
  const double number = std::strtod(text.c_str(), &end);
  if (!text.empty() && end == text.c_str() + text.size()) {
    return cli::double_text(number);  // as the config wrote it: 0.05, not 0.050000000000000003
  }
  if (const auto on = cli::switch_word(text)) return *on ? "1" : "0";
  return text;
}

// The [model] options of INI text, canonical, with model.mlp_hidden = 0 resolved to its 4 * model.dim.
std::map<std::string, std::string> model_options(const std::map<std::string, std::string>& values) {
  std::map<std::string, std::string> model;
  for (const auto& [key, value] : values)
    if (key.rfind("model.", 0) == 0) model[key] = canonical(value);
  const auto hidden = model.find("model.mlp_hidden"), dim = model.find("model.dim");
  if (hidden != model.end() && hidden->second == "0" && dim != model.end()) {
    try {
      hidden->second = std::to_string(4 * std::stoll(dim->second));
    } catch (const std::exception&) {
    }
  }
  return model;
}

// The token file the checkpoint's run trained on (root attributes data_tokens, data_digest,
// data_tokens_before); nullopt where it records none. An attribute of another type -> InputError naming it.
std::optional<DataFileRecord> recorded_data_file(const io::CheckpointReader& reader) {
  const io::h5::File& file = reader.file();
  if (!file.has_attribute("data_tokens")) return std::nullopt;
  DataFileRecord record;
  record.identity.tokens = file.read_int64_attribute("data_tokens");
  if (file.has_attribute("data_digest")) record.identity.digest = file.read_bits64_attribute("data_digest");
  if (file.has_attribute("data_tokens_before")) record.tokens_before = file.read_int64_attribute("data_tokens_before");
  if (file.has_attribute("data_reached_before"))
    record.reached_before = file.read_int64_attribute("data_reached_before");
  return record;
}

// Whether train tells the checkpoint's token file and this run's apart by their tokens itself (they differ,
// or both have digests: the same tokens under another name are then the same file), so that a data.path of
// another name needs no word here.
bool data_file_compared_by_train(const std::optional<DataFileRecord>& recorded, const std::optional<io::TokenIdentity>& now) {
  if (!recorded || !now) return false;
  return (recorded->identity.digest && now->digest) || !io::token_identity_difference(recorded->identity, *now).empty();
}

// The model a checkpoint holds must be the model this run builds: the same [model] options (tensor shapes
// alone miss heads, the schedule, rotary settings), compared by meaning, and the same tensors, no more
// and no fewer.
// `saved_text`: the checkpoint's /config (ini_values). Returns the training and data settings this run
// changes, in one line ("" for none), which the caller says once its own refusals are past.
std::string check_same_model(const io::CheckpointReader& reader, const std::map<std::string, std::string>& saved_text,
                      Trainer& trainer, const std::string& config_text, const std::optional<io::TokenIdentity>& data_file) {
  const auto now_text = ini_values(config_text, "config");
  const auto saved = model_options(saved_text), now = model_options(now_text);
  std::string differences;
  std::set<std::string> keys;
  for (const auto* values : {&saved, &now})
    for (const auto& [key, value] : *values) keys.insert(key);
  for (const auto& key : keys) {
    const auto a = saved.find(key), b = now.find(key);
    if (a != saved.end() && b != now.end() && a->second == b->second) continue;
    // The resolved value (model.mlp_hidden = 0 is 4 x model.dim: it differs when model.dim does), with
    // what was written where that is something else.
    const auto written = [&key](const std::map<std::string, std::string>& resolved,
                                const std::map<std::string, std::string>& text) {
      const auto value = resolved.find(key);
      if (value == resolved.end()) return std::string("(not set)");
      const auto given = text.find(key);
      return value->second +
             (given != text.end() && given->second != value->second ? " (given as " + given->second + ")" : "");
    };
    differences += (differences.empty() ? "" : ", ") + key + " = " + written(saved, saved_text) + " there, " +
                   written(now, now_text) + " here";
  }
  if (!differences.empty())
    throw CheckpointOfAnotherModel(reader.path() + ": a different model: " + differences +
                         "; resume with the checkpoint's model options, or use another checkpoint.dir");
  // Training and data settings may change on a resume (a longer train.steps, another seed), but the run is
  // then not the one the checkpoint's would have gone on to be (the learning-rate schedule, the data): said,
  // all in one line (before: data.task and train.seed alone; train.lr, train.steps, betas went unsaid).
  // Not said: what does not change the numbers, and data.seq_len, whose change has its own words.
  // data.allow_new_file only lets a resume go on; data.path, where the checkpoint records its token file,
  // is compared by its tokens (data_file_compared_by_train).
  static const std::set<std::string> kSameNumbers = {"train.threads", "train.regather_kv", "train.peak_gflops",
                                                     "data.seq_len", "data.allow_new_file"};
  // Nor, where the run reads a token file before and after, the synthetic tasks' options, which it does not
  // read (before: said as changing the run, beside the warning that they have no effect).
  static const std::set<std::string> kSyntheticOnly = {
      "data.key_digits", "data.key_repeats", "data.records",      "data.queries",      "data.filler_period",
      "data.supervision", "train.answer_weight", "data.curriculum_steps", "data.curriculum_min_span"};
  const auto task_of = [](const std::map<std::string, std::string>& text) {
    const auto task = text.find("data.task");
    return task == text.end() ? std::string() : canonical(task->second);
  };
  const bool file_task = task_of(saved_text) == "file" && task_of(now_text) == "file";
  std::string changed;
  for (const auto& [key, was] : saved_text) {
    if ((key.rfind("train.", 0) != 0 && key.rfind("data.", 0) != 0) || kSameNumbers.count(key)) continue;
    if (file_task && kSyntheticOnly.count(key)) continue;
    const auto given = now_text.find(key);
    if (given == now_text.end() || canonical(was) == canonical(given->second)) continue;
    if (key == "data.path" &&
        (io::same_file(was, given->second) || data_file_compared_by_train(recorded_data_file(reader), data_file)))
      continue;  // the same file spelled otherwise, or train compares their tokens
    changed += (changed.empty() ? "" : "; ") + key + " was " + was + ", continuing with " + given->second;
  }
  std::set<std::string> expected;
  for (const auto& view : trainer.model().layout().views())
    for (const char* group : {"model/", "optimizer/m/", "optimizer/v/"}) expected.insert(group + view.name);
  // The model options of /config matched above: a tensor besides this model's is damage (before: "a different
  // model?", without the older checkpoints a resume may take instead; from the ckpt audit).
  for (const auto& name : reader.tensor_names())
    if (!expected.count(name))
      throw InputError(reader.path() + ": " + name + ": not a tensor of the model its /config describes: damaged");
  return changed;
}

}  // namespace

// "section.key" -> value of INI text (cli::to_ini's, as /config holds it), read by the reader that reads
// --config files.
std::map<std::string, std::string> ini_values(const std::string& text, const std::string& where) {
  std::map<std::string, std::string> values;
  std::map<std::string, int> lines;
  std::vector<cli::IniEntry> entries;
  try {
    entries = cli::parse_ini(text, where);
  } catch (const UsageError& e) {
    throw InputError(e.what());
  }
  // A key given twice is refused, as in a config file (before: the last one won without a word, so an edited
  // /config that verify passed could change the task eval scored; from the eval audit).
  for (const auto& entry : entries) {
    const auto [at, first] = lines.emplace(entry.key, entry.line);
    if (!first)
      throw InputError(where + ": line " + std::to_string(entry.line) + ": '" + entry.key +
                       "' given twice (first on line " + std::to_string(at->second) + ")");
    values[entry.key] = entry.value;
  }
  return values;
}

std::string save_checkpoint(Trainer& trainer, const std::string& dir, int64_t keep, const std::string& config_text,
                            int64_t tokens_seen, int64_t seq_len, DataPosition data_position, const std::string& run_id,
                            const std::optional<DataFileRecord>& data_file, MPI_Comm comm,
                            const std::optional<PendingEval>& pending_eval, const std::string& step_log,
                            int64_t previous_step) {
  io::CheckpointMeta meta;
  meta.step = trainer.step();
  meta.previous_step = previous_step;
  meta.seq_len = seq_len;
  meta.tokens_seen = tokens_seen;
  meta.config = config_text;
  watchdog::Guard guard("writing the checkpoint of step " + std::to_string(meta.step) + " in " + dir,
                        [dir] { return io::full_disk_note(dir); });
  for (const std::string& removed : io::make_room_for_checkpoint(dir, keep, comm))
    log::warn("the disk of " + dir + " is nearly full: deleted " + removed + " before writing step " +
              std::to_string(meta.step) + " (checkpoint.keep=" + std::to_string(keep) +
              " would delete it after the commit)");
  std::string committed;
  // MPI-IO's "file write failed" does not say why: a full disk is named.
  io::noting_a_full_disk(dir, [&] {
    // `dir` exists: train made and locked it before step 1. Gone now, it is not made again without its lock.
    io::CheckpointWriter writer(dir, meta, comm, /*create_dir=*/false);
    const auto& layout = trainer.model().layout();
    // Parameters, Adam's m and v, and HDF5's own bytes (about 160-400 per dataset): an estimate for the
    // first checkpoint, erring a little large (1.1x at 18K parameters, 1.004x at 1.2M); later ones reserve
    // the size of the one before.
    writer.reserve(3 * (sizeof(float) * static_cast<uint64_t>(layout.total()) + 512 * layout.views().size()) + 16384);
    for (const auto& view : layout.views()) {
      writer.write_replicated("model/" + view.name, model::view_to_tensor(view, trainer.params().data()));
      writer.write_replicated("optimizer/m/" + view.name,
                              model::view_to_tensor(view, trainer.optimizer().first_moment().data()));
      writer.write_replicated("optimizer/v/" + view.name,
                              model::view_to_tensor(view, trainer.optimizer().second_moment().data()));
    }
    const auto write_int64s = [&writer](const std::string& name, std::vector<int64_t> values) {
      std::vector<uint8_t> bytes(values.size() * sizeof(int64_t));
      std::memcpy(bytes.data(), values.data(), bytes.size());
      writer.write_global_blob(name, Span<const uint8_t>(bytes.data(), bytes.size()));
    };
    write_int64s("step", {trainer.step()});
    write_int64s("data_position", {data_position.sequence, data_position.token});
    // The random generators are counter-based, keyed by (seed, split, sequence): the seed and the data
    // position are their whole state. Stored as the bits of train.seed.
    write_int64s("rng_seed", {static_cast<int64_t>(trainer.config().seed)});
    writer.write_attribute("model_layers", trainer.config().model.layers);
    writer.write_attribute("model_dim", trainer.config().model.dim);
    writer.write_attribute("model_heads", trainer.config().model.heads);
    if (!run_id.empty()) writer.write_attribute("run_id", run_id);
    if (data_file) {
      writer.write_attribute("data_tokens", data_file->identity.tokens);
      if (data_file->identity.digest)
        writer.write_attribute("data_digest", io::digest_attribute_value(*data_file->identity.digest));
      if (data_file->tokens_before != 0) writer.write_attribute("data_tokens_before", data_file->tokens_before);
      if (data_file->reached_before >= 0) writer.write_attribute("data_reached_before", data_file->reached_before);
    }
    if (pending_eval) {
      writer.write_attribute("eval_pending", int64_t{1});
      if (!pending_eval->log_fields.empty()) writer.write_attribute("eval_pending_log", pending_eval->log_fields);
    }
    if (!step_log.empty()) writer.write_attribute("step_log", step_log);
    committed = writer.commit(keep);
  });
  return committed;
}

StateSummary state_summary(const io::CheckpointReader& reader) {
  StateSummary summary;
  std::string& text = summary.text;
  if (!reader.file().has_attribute("model_layers")) return summary;  // not train's: its /state is someone else's
  summary.of_train = true;
  // The values of /state/global/NAME, or none (said in the text) where it is missing or damaged.
  const auto add = [&](const std::string& name, size_t count, const std::string& label,
                       const std::function<std::string(const std::vector<int64_t>&)>& show) {
    std::vector<int64_t> values;
    if (!reader.file().has("state/global/" + name)) return values;  // the link: a damaged header is "(unreadable)"
    std::string value;
    try {
      const StoredInt64s stored = read_int64s(reader, name, count);
      values = stored.values;
      value = stored.values.empty() ? "(" + std::to_string(stored.bytes) + " bytes: damaged)" : show(stored.values);
    } catch (const Error&) {
      value = "(unreadable)";
    }
    text += (text.empty() ? "" : ", ") + label + " " + value;
    return values;
  };
  if (const auto v = add("step", 1, "step", [](const auto& x) { return std::to_string(x[0]); }); !v.empty())
    summary.step = v[0];
  if (const auto v = add("data_position", 2, "data position: sequence",
                         [](const auto& x) { return std::to_string(x[0]) + " at token " + std::to_string(x[1]); });
      !v.empty())
    summary.data_position = std::make_pair(v[0], v[1]);
  if (const auto v = add("rng_seed", 1, "rng seed", [](const auto& x) { return std::to_string(static_cast<uint64_t>(x[0])); });
      !v.empty())
    summary.rng_seed = static_cast<uint64_t>(v[0]);
  summary.eval_pending = false;
  if (reader.file().has_attribute("eval_pending")) {
    std::string pending;
    try {
      summary.eval_pending = reader.file().read_int64_attribute("eval_pending") != 0;
      if (*summary.eval_pending) pending = "its evaluation pending (a stop interrupted it; train evaluates it first)";
    } catch (const Error&) {
      summary.eval_pending.reset();
      pending = "eval_pending (unreadable)";
    }
    if (!pending.empty()) text += (text.empty() ? "" : ", ") + pending;
  }
  if (reader.file().has_attribute("data_tokens")) {  // which token file the run trained on
    std::string file;
    try {
      summary.data_file = recorded_data_file(reader);
      file = "token file " + summary.data_file->identity.describe();
    } catch (const Error&) {
      summary.data_file.reset();
      file = "token file (unreadable)";
    }
    text += (text.empty() ? "" : ", ") + file;
  }
  return summary;
}

namespace {

// The root attributes' values no training writes: "attribute tokens_seen = -5: must be >= 0".
std::vector<std::string> attribute_problems(const io::CheckpointReader& reader) {
  std::vector<std::string> problems;
  const auto out_of_range = [&](const char* name, int64_t value, int64_t least) {
    if (value < least)
      problems.push_back("attribute " + std::string(name) + " = " + std::to_string(value) + ": must be >= " +
                         std::to_string(least));
  };
  out_of_range("step", reader.step(), 0);
  out_of_range("world_size", reader.world_size(), 1);
  out_of_range("tokens_seen", reader.tokens_seen(), 0);
  // A checkpoint of io's format that `train` did not write (no model_layers attribute) has no seq_len of its own.
  if (reader.file().has_attribute("model_layers")) {
    out_of_range("seq_len", reader.seq_len(), 2);
    // Its step trained one sequence of seq_len tokens, which tokens_seen counts (before: seq_len = 1e12 passed
    // verify, and eval refused it as too big for memory, exit 2, not as damage).
    if (reader.step() >= 1 && reader.tokens_seen() >= 0 && reader.seq_len() > reader.tokens_seen())
      problems.push_back("attribute seq_len = " + std::to_string(reader.seq_len()) + ": more than tokens_seen = " +
                         std::to_string(reader.tokens_seen()) + ", which counts step " + std::to_string(reader.step()) +
                         "'s sequence of that length");
  }
  // The model the run trained, as root attributes, is the one /config describes: model.heads changes no
  // tensor's shape, so nothing else would see a /config edited to other heads (before: eval scored the
  // weights with another head split, and verify said "ok"). Where /config cannot be read, its own check says so.
  if (reader.file().has_attribute("model_layers")) {
    std::map<std::string, std::string> model;
    try {
      model = model_options(ini_values(reader.config(), reader.path() + ": /config"));
    } catch (const Error&) {
    }
    for (const char* name : {"layers", "dim", "heads"}) {
      const std::string attribute = std::string("model_") + name, key = std::string("model.") + name;
      const auto said = model.find(key);
      if (said == model.end() || !reader.file().has_attribute(attribute)) continue;
      const int64_t trained = reader.file().read_int64_attribute(attribute);
      if (said->second != std::to_string(trained))
        problems.push_back("attribute " + attribute + " = " + std::to_string(trained) + ": the model trained, but /config says " +
                           key + " = " + said->second);
    }
  }
  // Read by a resume and eval as they are: a run_id that is no string, an eval_pending that is no integer
  // were refused there (before: verify said "ok"; from the ckpt audit).
  if (reader.file().has_attribute("run_id")) {
    try {
      reader.file().read_string_attribute("run_id");
    } catch (const Error&) {
      problems.push_back("attribute run_id is not a string");
    }
  }
  if (reader.file().has_attribute("eval_pending")) {
    try {
      reader.file().read_int64_attribute("eval_pending");
    } catch (const Error&) {
      problems.push_back("attribute eval_pending is not one integer");
    }
  }
  // Retention's link to the checkpoint before it in its run's history: an earlier step, or -1 (none).
  if (const std::optional<int64_t> previous = reader.previous_step();
      previous && (*previous < -1 || (*previous >= reader.step() && reader.step() >= 0)))
    problems.push_back("attribute previous_step = " + std::to_string(*previous) + ": must be -1 or an earlier step than " +
                       std::to_string(reader.step()));
  // A step's log.jsonl fields (step_log; eval_pending_log, the line a stop's pending evaluation completes):
  // one line, of this step. (Before: refused by a resume and eval, but verify said "ok", while the resume's
  // message sent the user to verify to find the whole checkpoints.)
  for (const char* attribute : {"step_log", "eval_pending_log"}) {
    if (!reader.file().has_attribute(attribute)) continue;
    std::string fields;
    try {
      fields = reader.file().read_string_attribute(attribute);
    } catch (const Error&) {
      fields.clear();  // not a string: said below
    }
    const std::string head = "{\"step\": " + std::to_string(reader.step()) + ",";
    if (fields.compare(0, head.size(), head) != 0 || fields.find('\n') != std::string::npos) {
      problems.push_back("attribute " + std::string(attribute) + " is not the log.jsonl line of step " +
                         std::to_string(reader.step()));
      continue;
    }
    // The step's length, as its line says (before: an edited seq_len was taken by eval as the trained length,
    // or refused as /config's --seq-len, and verify said ok; from the eval audit). Not /config's data.seq_len:
    // a resume at another length that saves its checkpoint again keeps the step's.
    const std::string key = "\"seq_len\": ";
    const size_t at = fields.find(key);
    const bool of_train = reader.file().has_attribute("model_layers");
    if (std::string(attribute) == "step_log" && at != std::string::npos && of_train &&
        std::strtoll(fields.c_str() + at + key.size(), nullptr, 10) != reader.seq_len())
      problems.push_back("attribute seq_len = " + std::to_string(reader.seq_len()) + ": not the length step " +
                         std::to_string(reader.step()) + " trained at, as its attribute step_log says (" +
                         fields.substr(at, fields.find_first_of(",}", at) - at) + ")");
  }
  // A token file a run trained on holds a sequence and its last target at least.
  if (reader.file().has_attribute("data_tokens"))
    out_of_range("data_tokens", reader.file().read_int64_attribute("data_tokens"), 3);
  if (const std::optional<DataFileRecord> record = recorded_data_file(reader)) {  // (each attribute one integer)
    out_of_range("data_tokens_before", record->tokens_before, 0);
    if (record->tokens_before > reader.tokens_seen())
      problems.push_back("attribute data_tokens_before = " + std::to_string(record->tokens_before) +
                         ": more than tokens_seen = " + std::to_string(reader.tokens_seen()));
    if (reader.file().has_attribute("data_reached_before") &&
        (record->reached_before < 0 || record->reached_before >= record->identity.tokens))
      problems.push_back("attribute data_reached_before = " + std::to_string(record->reached_before) +
                         ": not a token of the file (0 to data_tokens - 1 = " +
                         std::to_string(record->identity.tokens - 1) + ")");
  }
  return problems;
}

}  // namespace

void require_sound_attributes(const io::CheckpointReader& reader, const std::string& advice) {
  if (const std::vector<std::string> problems = attribute_problems(reader); !problems.empty())
    throw InputError(reader.path() + ": " + joined(problems) + ": damaged; " + advice);
}

std::vector<std::string> checkpoint_model_problems(const io::CheckpointReader& reader,
                                                   const std::vector<io::DatasetInfo>& datasets) {
  const std::string& path = reader.path();
  std::vector<std::string> problems;
  for (const std::string& problem : attribute_problems(reader)) problems.push_back(path + ": " + problem);
  // A checkpoint of io's format that `train` did not write (no model_layers attribute): no model to check.
  if (!reader.file().has_attribute("model_layers")) return problems;
  const auto values = model_options(ini_values(reader.config(), path + ": /config"));
  model::ModelConfig m;
  const auto integer = [&](const char* key) -> std::optional<int64_t> {
    const auto found = values.find(key);
    try {
      if (found != values.end()) return std::stoll(found->second);
    } catch (const std::exception&) {
    }
    problems.push_back(path + ": /config: " + key + (found == values.end() ? " is missing" : " = " + found->second +
                       " is no integer") + ", so the model's tensors cannot be checked");
    return std::nullopt;
  };
  const auto layers = integer("model.layers"), dim = integer("model.dim"), vocab = integer("model.vocab"),
             hidden = integer("model.mlp_hidden");
  if (!problems.empty()) return problems;
  m.layers = *layers;
  m.dim = *dim;
  m.vocab = *vocab;
  m.mlp_hidden = *hidden;  // model_options resolved 0 to 4 * model.dim
  const auto prev = values.find("model.prev_token_embedding");
  m.prev_token_embedding = prev != values.end() && prev->second == "1";
  if (m.layers < 1 || m.layers > 65536 || m.dim < 1 || m.vocab < 1 || m.mlp_hidden < 1)
    return {path + ": /config: model.layers, model.dim, model.vocab or model.mlp_hidden out of range"};

  std::map<std::string, const io::DatasetInfo*> present;
  for (const auto& info : datasets) present[info.path] = &info;
  std::set<std::string> expected{"/state/global/step"};
  const model::ParameterLayout layout = model::make_layout(m);
  for (const auto& view : layout.views())
    for (const char* group : {"/model/", "/optimizer/m/", "/optimizer/v/"}) {
      const std::string name = group + view.name;
      expected.insert(name);
      const auto found = present.find(name);
      if (found == present.end()) {
        // (A group there: before, said to be missing.)
        const bool other_object = reader.file().has(name.substr(1));
        problems.push_back(path + ": " + name + (other_object ? ": is not a dataset" : ": missing") +
                           " (its /config's model has it; a resume would stop, exit 3)");
        continue;
      }
      if (found->second->dtype.empty()) continue;  // it could not be read: its own problem is reported
      if (found->second->shape != view.shape)
        problems.push_back(path + ": " + name + ": shape " + to_string(found->second->shape) + ", the model needs " +
                           to_string(view.shape));
      if (found->second->dtype != "float32")
        problems.push_back(path + ": " + name + ": " + found->second->dtype + ", the model needs float32");
      if (std::string(group) == "/optimizer/v/" && found->second->min_value < 0)
        problems.push_back(path + ": " + name + ": negative value " + general(found->second->min_value) +
                           " (an Adam second moment is >= 0; a resume would stop, exit 3)");
    }
  if (!present.count("/state/global/step")) {
    problems.push_back(path + ": /state/global/step: missing");
  } else {
    try {
      for (const std::string& mismatch : read_state(reader).problems) problems.push_back(path + ": " + mismatch);
    } catch (const Error& e) {
      problems.push_back(e.what());
    }
  }
  // Extra tensors where the resume looks (/model, /optimizer) mean another model; /state may hold more.
  for (const auto& [name, info] : present)
    if (!expected.count(name) && (name.rfind("/model/", 0) == 0 || name.rfind("/optimizer/", 0) == 0))
      problems.push_back(path + ": " + name + ": not a tensor of its /config's model");
  constexpr size_t kShown = 10;
  if (problems.size() > kShown) {
    const size_t more = problems.size() - kShown;
    problems.resize(kShown);
    problems.push_back(path + ": ... and " + std::to_string(more) + " more");
  }
  return problems;
}

Resumed load_checkpoint(Trainer& trainer, const std::string& path, const std::string& config_text, MPI_Comm comm,
                        const std::optional<io::TokenIdentity>& data_file) {
  watchdog::Guard guard("reading the checkpoint " + path);
  io::CheckpointReader reader(path, comm);
  io::check_step_matches_file_name(reader);
  const auto saved = ini_values(reader.config(), path + ": /config");
  const std::string changed_settings = check_same_model(reader, saved, trainer, config_text, data_file);
  const auto& layout = trainer.model().layout();
  // What `ckpt verify` checks of the file is what a resume refuses: a tensor in another type (HDF5 would
  // convert it) or /state/global/step at odds with the step attribute was resumed from before.
  for (const auto& view : layout.views())
    for (const char* group : {"model/", "optimizer/m/", "optimizer/v/"}) {
      reader.expect_shape(group + view.name, view.shape);
      const io::h5::ElementType type = reader.file().open_dataset(group + view.name).element_type();
      if (type != io::h5::ElementType::f32)
        throw InputError(path + ": /" + group + view.name + ": " + io::h5::to_string(type) +
                         ", the model needs float32 (train writes float32)");
    }
  // (Before: a negative tokens_seen, which verify refuses, was resumed and carried on as a count.)
  require_sound_attributes(reader, "resume from an older checkpoint");
  const StoredState state = read_state(reader);
  if (!state.problems.empty())
    throw InputError(path + ": " + joined(state.problems) + ": damaged; `longctx ckpt verify` checks the whole file");
  // A step's log.jsonl fields, written back to log.jsonl as that step's line (one line, of this step:
  // require_sound_attributes checked them).
  const auto step_line = [&](const char* attribute) { return reader.file().read_string_attribute(attribute); };
  std::optional<PendingEval> pending_eval;
  if (reader.file().has_attribute("eval_pending") && reader.file().read_int64_attribute("eval_pending") != 0) {
    pending_eval.emplace();
    if (reader.file().has_attribute("eval_pending_log")) pending_eval->log_fields = step_line("eval_pending_log");
  }
  const std::string step_log = reader.file().has_attribute("step_log") ? step_line("step_log") : "";
  // Shapes agree: only now is the trainer changed. A value no training writes (not finite; a negative
  // Adam second moment, whose square root is nan) ends the run here, naming it: before, the run went on
  // and stopped at its first step as "training diverged".
  const auto read = [&](const std::string& name, bool second_moment) {
    Tensor tensor = reader.read_whole(name);
    const float* values = tensor.data();
    for (int64_t i = 0; i < tensor.size(); ++i)
      if (!std::isfinite(values[i]) || (second_moment && values[i] < 0))
        throw InputError(path + ": /" + name + ": value " + general(values[i]) + " at flat index " +
                         std::to_string(i) + (second_moment ? " (an Adam second moment is finite and >= 0)" : "") +
                         ": damaged; `longctx ckpt verify` checks the whole file, or resume from an older checkpoint");
    return tensor;
  };
  // (An evaluation-only trainer reads the parameters alone; the moments' shapes and types are checked above.)
  for (const auto& view : layout.views()) {
    model::tensor_to_view(view, read("model/" + view.name, false), trainer.params().data());
    if (!trainer.trains()) continue;
    model::tensor_to_view(view, read("optimizer/m/" + view.name, false), trainer.optimizer().first_moment().data());
    model::tensor_to_view(view, read("optimizer/v/" + view.name, true), trainer.optimizer().second_moment().data());
  }
  trainer.set_step(reader.step());
  int64_t data_seq_len = 0;
  if (const auto it = saved.find("data.seq_len"); it != saved.end()) {
    try {
      data_seq_len = cli::parse_size("data.seq_len", it->second);
    } catch (const Error&) {
    }
  }
  const std::string run_id = reader.file().has_attribute("run_id") ? reader.file().read_string_attribute("run_id") : "";
  const auto saved_path = saved.find("data.path");
  return {state.position, reader.tokens_seen(), data_seq_len, run_id, reader.seq_len(), pending_eval, step_log,
          recorded_data_file(reader), saved_path != saved.end() ? saved_path->second : "", changed_settings,
          reader.previous_step().value_or(-1)};
}

}  // namespace longctx::train
