// `longctx ckpt inspect FILE|DIR` and `longctx ckpt verify FILE|DIR` (issue 5). One process does the work
// (rank 0 under mpirun); every rank returns its exit code. Damage -> exit 3, naming the dataset.
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <limits>
#include <optional>
#include <sstream>
#include <typeinfo>
#include <vector>

#include "io/checkpoint.hpp"
#include "io/digest.hpp"
#include "io/durable.hpp"
#include "runtime/commands/attention_options.hpp"
#include "runtime/commands/commands.hpp"
#include "runtime/core/log.hpp"
#include "runtime/train/train_state_io.hpp"

namespace longctx::cli {
namespace {

// Text from a file (dataset and attribute names, attribute values, /config lines, problems naming them)
// as printed: control characters as \xNN (before: raw); UTF-8 names read as they are.
std::string shown(const std::string& text) { return log::printable(text, ""); }

void declare_file(po::options_description& desc, po::positional_options_description& positional) {
  desc.add_options()("path", po::value<std::string>(), "checkpoint file, or a checkpoint directory (its latest)")
      ("json", po::bool_switch(), "print one JSON object: path, format_version, step, world_size, seq_len, tokens_seen, "
       "attributes (name: value as text), state (text, or null), train_state (null for a checkpoint `train` did not "
       "write, else {step, data_position: {sequence, token}, rng_seed, eval_pending, data_file: {tokens, digest "
       "(\"0x...\" or null), tokens_before (0 where the file has no data_tokens_before: it is written only when not "
       "0), reached_before (data_reached_before: the last token trained on before the run's resume, or null)}}, "
       "each null where the file lacks it or it is damaged), datasets ([{path, "
       "shape, dtype, storage_bytes, "
       "fletcher32, digest}]), storage_bytes, config (text)");
  positional.add("path", 1);
}

// verify takes several (`ckpt verify ck/step_*.h5`).
void declare_files(po::options_description& desc, po::positional_options_description& positional) {
  desc.add_options()("path", po::value<std::vector<std::string>>()->multitoken(),
                     "checkpoint files, or checkpoint directories (all of their checkpoints)")
      ("json", po::bool_switch(), "print one JSON object per checkpoint (and per path that is none): path, ok, "
       "datasets (how many), problems ([text]), unchecked ([tensors without a checksum]), undigested (how many "
       "checked by their checksums alone; both of the datasets that read well, also in a damaged checkpoint), removed "
       "(true: listed in a DIR, then removed before it could be read, by a running train's checkpoint.keep; not "
       "checked, and ok), pointer_to (of a directory's `latest` given as a path: the checkpoint file it names, checked "
       "where that file or its directory is given; else, and where the file it names is not there, null); the exit "
       "code as without it");
  positional.add("path", -1);
}


// A checkpoint's /state/global as values: null where missing or damaged.
std::string train_state_json(const train::StateSummary& state) {
  if (!state.of_train) return "null";
  const auto number = [](const auto& value) { return value ? std::to_string(*value) : std::string("null"); };
  std::ostringstream out;
  out << "{\"step\": " << number(state.step) << ", \"data_position\": ";
  if (state.data_position)
    out << "{\"sequence\": " << state.data_position->first << ", \"token\": " << state.data_position->second << "}";
  else
    out << "null";
  out << ", \"rng_seed\": " << number(state.rng_seed) << ", \"eval_pending\": "
      << (state.eval_pending ? json_bool(*state.eval_pending) : std::string("null")) << ", \"data_file\": ";
  if (const auto& file = state.data_file)
    out << "{\"tokens\": " << file->identity.tokens << ", \"digest\": "
        << (file->identity.digest ? json_string(io::digest_text(*file->identity.digest)) : std::string("null"))
        << ", \"tokens_before\": " << file->tokens_before << ", \"reached_before\": "
        << (file->reached_before >= 0 ? std::to_string(file->reached_before) : std::string("null")) << "}";
  else
    out << "null";
  out << "}";
  return out.str();
}

std::string inspect_json(const io::CheckpointSummary& s, const train::StateSummary& state_summary) {
  const std::string& state = state_summary.text;
  std::ostringstream out;
  out << "{\"path\": " << json_string(s.path) << ", \"format_version\": " << s.format_version << ", \"step\": " << s.step
      << ", \"world_size\": " << s.world_size << ", \"seq_len\": " << s.seq_len << ", \"tokens_seen\": " << s.tokens_seen
      << ", \"attributes\": {";
  for (size_t i = 0; i < s.attributes.size(); ++i)
    out << (i ? ", " : "") << json_string(s.attributes[i].first) << ": " << json_string(s.attributes[i].second);
  out << "}, \"state\": " << (state.empty() ? std::string("null") : json_string(state))
      << ", \"train_state\": " << train_state_json(state_summary) << ", \"datasets\": [";
  int64_t total = 0;
  for (size_t i = 0; i < s.datasets.size(); ++i) {
    const io::DatasetInfo& d = s.datasets[i];
    out << (i ? ", " : "") << "{\"path\": " << json_string(d.path) << ", \"shape\": [";
    for (size_t a = 0; a < d.shape.size(); ++a) out << (a ? ", " : "") << d.shape[a];
    out << "], \"dtype\": " << json_string(d.dtype) << ", \"storage_bytes\": " << d.storage_bytes
        << ", \"fletcher32\": " << json_bool(d.checksummed) << ", \"digest\": " << json_bool(d.digested) << "}";
    total += d.storage_bytes;
  }
  out << "], \"storage_bytes\": " << total << ", \"config\": " << json_string(s.config) << "}";
  return out.str();
}

// One verify line of --json: a checkpoint's report, or a path that gave none (`problem`).
std::string verify_json(const std::string& path, bool ok, size_t datasets, const std::vector<std::string>& problems,
                        const std::vector<std::string>& unchecked, size_t undigested, bool removed = false,
                        const std::string& pointer_to = "") {
  const auto list = [](const std::vector<std::string>& items) {
    std::string text = "[";
    for (size_t i = 0; i < items.size(); ++i) text += (i ? ", " : "") + json_string(items[i]);
    return text + "]";
  };
  return "{\"path\": " + json_string(path) + ", \"ok\": " + json_bool(ok) + ", \"datasets\": " +
         std::to_string(datasets) + ", \"problems\": " + list(problems) + ", \"unchecked\": " + list(unchecked) +
         ", \"undigested\": " + std::to_string(undigested) + ", \"removed\": " + json_bool(removed) +
         ", \"pointer_to\": " + (pointer_to.empty() ? "null" : json_string(pointer_to)) + "}";
}

// Runs `work` on rank 0 and gives every rank its exit code. The other ranks have no part in the work, which
// can outlast --comm-timeout by far (a 40 GB checkpoint verified at 66 MB/s takes 10 minutes): they wait for
// the code without a timeout, as rank 0 works without one (before: the job ended in MPI_Abort after
// --comm-timeout, rank 0 still at work). A rank 0 that dies ends the job through the launcher.
int on_rank0(Invocation& invocation, const std::function<int()>& work) {
  comm::Communicator& world = invocation.process.world();
  int code = 0;
  if (world.rank() == 0) {
    try {
      code = work();
    } catch (const UsageError& e) {  // about an option's value: with where it came from, as main says it
      std::cerr << "longctx: error: " << log::printable(usage_message(e, invocation)) << "\n";
      code = static_cast<int>(e.code());
    } catch (const Error& e) {
      std::cerr << "longctx: error: " << log::printable(e.what()) << "\n";
      code = static_cast<int>(e.code());
    }
  }
  std::vector<int> codes{code};
  struct RestoreTimeout {  // the world's --comm-timeout again, also when the broadcast throws
    comm::Communicator& world;
    double seconds;
    ~RestoreTimeout() { world.set_timeout_seconds(seconds); }
  } restore{world, world.timeout_seconds()};
  world.set_timeout_seconds(std::numeric_limits<double>::infinity());
  world.broadcast(Span<int>(codes), 0);
  return codes[0];
}

int run_inspect(Invocation& invocation) {
  const std::string given = invocation.options["path"].as<std::string>();
  return on_rank0(invocation, [&] {
    // `latest` is followed again where a running train pruned the checkpoint it named (before: exit 3, "no such
    // file", for a healthy directory). Once open, the checkpoint is read whole through that one opening.
    std::optional<io::CheckpointSummary> read;
    std::optional<train::StateSummary> read_state;
    std::string damage;  // values no training writes, which verify, a resume and eval refuse
    std::vector<std::string> model_problems;  // tensors of its /config's model missing, of another shape or type
    read_checkpoint_in(given, 10, [&](const std::string& path) {
      const io::CheckpointReader reader(path);
      read.emplace(io::inspect_checkpoint(reader));
      read_state.emplace(train::state_summary(reader));
      damage.clear();
      model_problems.clear();
      try {
        train::require_sound_attributes(reader, "`longctx ckpt verify` checks the whole file");
        // A step_N.h5 of another step, which verify, a resume and eval refuse (before: shown without a word).
        io::check_step_matches_file_name(reader);
      } catch (const InputError& e) {
        damage = e.what();
      }
      // What verify says of the datasets' list alone (no data read): a resume refuses them (before: shown,
      // exit 0, without a word; from the ckpt audit).
      try {
        if (damage.empty()) model_problems = train::checkpoint_model_problems(reader, read->datasets);
      } catch (const Error& e) {
        model_problems = {e.what()};
      }
    });
    const io::CheckpointSummary& s = *read;
    const train::StateSummary& summary = *read_state;
    const std::string& state = summary.text;
    // Damage that verify, a resume and eval refuse is said on stderr (before: the values were printed as they
    // are, exit 0, with no word); stdout's text and JSON stay as they were.
    if (!damage.empty()) log::warn(damage);
    for (size_t i = 0; i < model_problems.size(); ++i)
      log::warn(model_problems[i] +
                (i + 1 == model_problems.size() ? "; `longctx ckpt verify` checks the whole file" : ""));
    if (summary.step && *summary.step != s.step)
      log::warn(s.path + ": /state/global/step is " + std::to_string(*summary.step) + ", the step attribute " +
                std::to_string(s.step) + ": damaged; `longctx ckpt verify` checks the whole file");
    if (invocation.options["json"].as<bool>()) {
      std::cout << inspect_json(s, summary) << "\n";
      return 0;
    }
    std::cout << "checkpoint " << shown(s.path) << "\n"
              << "  format_version " << s.format_version << "  step " << s.step << "  world_size " << s.world_size
              << "  seq_len " << s.seq_len << "  tokens_seen " << s.tokens_seen << "\n  attributes:";
    for (const auto& [name, value] : s.attributes) std::cout << " " << shown(name) << "=" << shown(value);
    if (!state.empty()) std::cout << "\n  state: " << shown(state);
    std::cout << "\n  datasets:\n";
    int64_t total = 0;
    for (const auto& d : s.datasets) {
      std::cout << "    " << std::left << std::setw(40) << shown(d.path) << " " << std::setw(18) << to_string(d.shape) << " "
                << std::setw(8) << d.dtype << " " << std::right << std::setw(11) << human_bytes(d.storage_bytes)
                << (d.checksummed ? "  fletcher32" : "") << (d.digested ? "  digest" : "") << "\n";
      total += d.storage_bytes;
    }
    std::cout << "  " << s.datasets.size() << " datasets, " << human_bytes(total) << "\n  config:\n";
    std::istringstream config(s.config);
    for (std::string line; std::getline(config, line);) std::cout << "    " << shown(line) << "\n";
    return 0;
  });
}

// The reports of one FILE|DIR given to verify.
std::vector<io::VerifyReport> verify_path(ProcessContext& process, const std::string& path) {
  io::check_readable(path);
  struct stat info {};
  if (stat(path.c_str(), &info) != 0) throw InputError(path + ": " + io::missing_file_text(path, "file or directory"));
  // A directory's `latest` given itself (`ckpt verify ck/*`): checked as the pointer it is, that it names a
  // checkpoint there (before: reported as a damaged HDF5 file, exit 3, beside the sound checkpoints).
  if (!S_ISDIR(info.st_mode)) {
    io::VerifyReport pointer;
    pointer.path = path;
    try {
      const std::optional<std::string> named = io::latest_file_target(path);
      if (named) pointer.names = std::filesystem::path(*named).filename().string();
    } catch (const InputError& e) {
      pointer.add_problem(e.what());
    }
    if (!pointer.names.empty() || !pointer.ok) return {pointer};
  }
  std::vector<io::VerifyReport> reports =
      S_ISDIR(info.st_mode) ? io::verify_checkpoint_dir(path) : std::vector<io::VerifyReport>{io::verify_checkpoint(path)};
  // Sound files may still not be what `train` can resume: check each against its /config's model.
  for (auto& report : reports) {
    if (report.datasets.empty()) continue;  // not opened as a checkpoint (its problem is reported)
    std::optional<io::CheckpointReader> reader;
    try {
      reader.emplace(report.path);
    } catch (const Error&) {  // already among its problems
      continue;
    }
    // A /config the check cannot read (one `train` refuses) is a problem too (before: dropped, "ok").
    std::vector<std::string> problems;
    try {
      problems = train::checkpoint_model_problems(*reader, report.datasets);
    } catch (const Error& e) {
      const std::string what = e.what();
      problems.push_back(what.rfind(report.path, 0) == 0 ? what : report.path + ": " + what);
    }
    // And what train's checks of the /config refuse, which a resume and eval refuse (model.heads=0 or not
    // dividing model.dim, an unknown task or key, model.dim=0x20: before, "ok", and the advice of a refused
    // resume, `ckpt verify DIR`, pointed to a checkpoint that could not be loaded either).
    if (problems.empty() && reader->file().has_attribute("model_layers"))
      if (std::string problem = train_config_problem(process, report.path, reader->config()); !problem.empty())
        problems.push_back(problem);
    for (const std::string& problem : problems) report.add_problem(problem);
  }
  return reports;
}

// After a directory's reports with damage among them: what a resume there takes, and where that is a
// damaged file or `latest` names none, the newest whole checkpoint (below the step of the one `latest`
// names) and how to resume from it, as a refused resume says (before: the damage alone; from the ckpt audit).
std::string what_resumes(std::string dir, const std::vector<io::VerifyReport>& reports) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();  // (reports name ck/step_N.h5, not ck//)
  // No checkpoint and no `latest`: a run there starts afresh, nothing to say (before: "no whole checkpoint
  // ... this one emptied", for a directory of other files; from the regression audit).
  std::error_code exists_error;
  const bool has_latest = std::filesystem::exists(dir + "/latest", exists_error);
  if (!has_latest &&
      std::none_of(reports.begin(), reports.end(), [](const io::VerifyReport& r) {
        return io::step_in_file_name(r.path).has_value();
      }))
    return "";
  std::optional<std::string> latest;
  try {
    latest = io::find_latest_checkpoint(dir);
  } catch (const Error&) {  // among the reports
  }
  const auto whole = [&](const std::string& path) {
    return std::any_of(reports.begin(), reports.end(), [&](const io::VerifyReport& r) {
      return !r.removed && r.ok && std::filesystem::path(r.path).filename() == std::filesystem::path(path).filename();
    });
  };
  if (latest && whole(*latest))
    return shown(dir) + ": a resume there takes " + shown(std::filesystem::path(*latest).filename().string()) +
           (has_latest ? ", which `latest` names" : ", the newest (no `latest`)") +
           ", and it is whole; the damaged files are not read by it";
  const std::optional<int64_t> below = latest ? io::step_in_file_name(*latest) : std::nullopt;
  std::string newest;  // reports are in step order, oldest first
  for (const io::VerifyReport& r : reports) {
    const std::optional<int64_t> step = io::step_in_file_name(r.path);
    if (step && (!below || *step < *below) && whole(r.path)) newest = r.path;
  }
  const std::string name = std::filesystem::path(newest).filename().string();
  const std::string below_latest = below ? " below " + std::filesystem::path(*latest).filename().string() : "";
  return newest.empty()
             ? shown(dir) + ": no whole checkpoint to resume from" + below_latest +
                   ": a resume there cannot go on; a fresh run needs another checkpoint.dir, or this one without its "
                   "checkpoints and `latest`"
             : shown(dir) + ": the newest whole checkpoint" + below_latest + " is " + name +
                   ": to resume from it, write its name into " + shown(dir) + "/latest (echo " + name + " > " +
                   log::shell_path(dir + "/latest") + "; the steps after it are trained again)";
}

int run_verify(Invocation& invocation) {
  const auto paths = invocation.options["path"].as<std::vector<std::string>>();
  const bool json = invocation.options["json"].as<bool>();
  return on_rank0(invocation, [&] {
    bool ok = true;
    for (const std::string& path : paths) {
      std::vector<io::VerifyReport> reports;
      try {
        reports = verify_path(invocation.process, path);
      } catch (const InputError& e) {  // one that is not there: said, and the others still checked
        if (json) {
          std::cout << verify_json(path, false, 0, {e.what()}, {}, 0) << "\n";
        } else {
          if (paths.size() == 1) throw;
          std::cout << shown(e.what()) << "\n";
        }
        ok = false;
        continue;
      }
      std::error_code error;  // (before the paths below are made printable)
      const std::string resumes =
          std::filesystem::is_directory(path, error) &&
                  std::any_of(reports.begin(), reports.end(), [](const io::VerifyReport& r) { return !r.ok; })
              ? what_resumes(path, reports)
              : "";
      // Every one listed removed before it could be read, and none found since: nothing was checked.
      const bool checked = std::any_of(reports.begin(), reports.end(), [](const io::VerifyReport& r) { return !r.removed; });
      if (!checked)
        std::cout << (json ? verify_json(path, false, 0, {path + ": no checkpoints"}, {}, 0) : shown(path) + ": no checkpoints")
                  << "\n";
      ok = ok && checked;
      for (auto& report : reports) {
        ok = ok && report.ok;
        if (json) {
          std::cout << verify_json(report.path, report.ok, report.datasets.size(), report.problems,
                                   report.unchecked_tensors(), report.undigested(), report.removed, report.names)
                    << "\n";
          continue;
        }
        report.path = shown(report.path);
        for (std::string& problem : report.problems) problem = shown(problem);
        for (io::DatasetInfo& dataset : report.datasets) dataset.path = shown(dataset.path);
        std::cout << report.summary() << "\n";
      }
      if (checked && !resumes.empty()) log::info(resumes);
    }
    return ok ? 0 : static_cast<int>(ExitCode::bad_input);
  });
}

}  // namespace

void require_path(const Invocation& invocation) { require_positional_path(invocation, "a checkpoint FILE or DIR"); }

int run_on_rank0(Invocation& invocation, const std::function<int()>& work) { return on_rank0(invocation, work); }

void require_positional_path(const Invocation& invocation, const std::string& what) {
  const auto& given = invocation.options;
  const bool missing = !given.count("path") ||
                       (given["path"].value().type() == typeid(std::string)
                            ? given["path"].as<std::string>().empty()
                            : std::any_of(given["path"].as<std::vector<std::string>>().begin(),
                                          given["path"].as<std::vector<std::string>>().end(),
                                          [](const std::string& path) { return path.empty(); }));
  if (missing && given.count("path"))  // `data verify tok.h5 ""`: a file was given, and an empty name
    throw UsageError("longctx " + invocation.command.name + ": an empty path among its arguments; it needs " + what);
  if (missing)
    throw UsageError("longctx " + invocation.command.name + " needs " + what + ": longctx " + invocation.command.name +
                     " " + invocation.command.positional);
}

// What a refusal of a directory's checkpoint adds: `which` checkpoints there (`there`, oldest first, none
// empty), newest first, and how to read one, then `more` (". Checkpoints there, newest first: ... (give
// one's path, ck/step_00000004.h5, to read it)").
std::string checkpoints_there(const std::string& which, const std::vector<std::string>& there,
                              const std::string& more = "") {
  return ". " + which + " there, newest first: " + io::newest_first_names(there) + " (give one's path, " +
         there.back() + ", to read it" + more + ")";
}

std::string checkpoint_in(const std::string& given) {
  // (Opening says why a path cannot be read; a directory is read as find_latest_checkpoint needs.)
  std::error_code error;
  // A directory's `latest` given itself: the checkpoint it names, as the directory gives it (before: "cannot
  // open as an HDF5 file (truncated, damaged or not HDF5)", exit 3; from the user-mistakes audit).
  if (const std::optional<std::string> named = io::latest_file_target(given)) return *named;
  if (!std::filesystem::is_directory(given, error)) return given;
  std::string dir = given;  // "ck/" names ck/step_N.h5, not ck//step_N.h5
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  std::optional<std::string> latest;
  try {
    latest = io::find_latest_checkpoint(dir);
  } catch (const InputError& e) {  // `latest` names a file that is gone, or holds no name: which are there
    const std::vector<std::string> there = io::list_checkpoints(dir);
    if (there.empty()) throw;
    throw InputError(e.what() + checkpoints_there("Checkpoints", there));
  }
  if (!latest)
    throw InputError(given + ": a directory with no committed checkpoint" + io::misnamed_checkpoints_note(given));
  return *latest;
}

bool rotated_away(const std::string& given, const std::string& path) {
  std::error_code error;
  return std::filesystem::is_directory(given, error) && (path.empty() || !std::filesystem::exists(path, error));
}

std::string read_checkpoint_in(const std::string& given, int attempts,
                               const std::function<void(const std::string& path)>& read) {
  for (int attempt = 1;; ++attempt) {
    std::string path;  // "": `latest` named a checkpoint removed as it was read
    try {
      path = checkpoint_in(given);
      read(path);
      return path;
    } catch (const InputError& e) {
      if (attempt < attempts && rotated_away(given, path)) continue;
      // The checkpoint a directory gave is damaged: the others there, to give one (before: the damage alone, so
      // a truncated newest file of a directory without `latest` left no way on; from the eval audit).
      std::error_code error;
      if (path.empty() || !std::filesystem::is_directory(given, error)) throw;
      std::vector<std::string> others = io::list_checkpoints(std::filesystem::path(path).parent_path().string());
      const std::filesystem::path read_name = std::filesystem::path(path).filename();
      const auto is_read = [&](const std::string& other) {
        return std::filesystem::path(other).filename() == read_name;
      };
      others.erase(std::remove_if(others.begin(), others.end(), is_read), others.end());
      if (others.empty()) throw;
      const std::string verify = "; `longctx ckpt verify " + log::shell_path(given) + "` checks them all";
      throw InputError(e.what() + checkpoints_there("Other checkpoints", others, verify));
    }
  }
}

Command ckpt_inspect_command() {
  return {"ckpt inspect",
          "print a checkpoint's step, config, datasets and sizes (of a directory: the one `latest` names, else its "
          "newest step_*.h5, as a resume takes)",
          "FILE|DIR", declare_file, run_inspect, require_path};
}

Command ckpt_verify_command() {
  return {"ckpt verify", "read every dataset of checkpoints (files, or all in a directory): checksums, digests, finiteness, and that a checkpoint of `longctx train` holds every tensor of its /config's model; exit 3 on damage (in a directory, also saying what a resume there takes)",
          "FILE|DIR...", declare_files, run_verify, require_path};
}

std::string human_bytes(int64_t bytes) {
  static const char* const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  // The unit in which the figure, to one decimal, is below 1024 (1048575 bytes is "1.0 MiB", not "1024.0 KiB").
  int unit = 0;
  double figure = static_cast<double>(bytes) / 1024;
  for (; unit < 5 && figure >= 1023.95; ++unit) figure /= 1024;
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << figure << " " << units[unit];
  return out.str();
}

}  // namespace longctx::cli
