#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "runtime/cli/command.hpp"
#include "runtime/cli/ini.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/heartbeat.hpp"
#include "runtime/core/log.hpp"

namespace longctx::cli {
namespace {

void declare_common(po::options_description& desc) {
  desc.add_options()
      ("help,h", "show this help and exit")
      ("config", po::value<std::string>(), "INI file with options ([section] key=value -> --section.key); --config= reads none (not LONGCTX_CONFIG)")
      ("comm-timeout", po::value<double>()->default_value(600.0),
       "seconds any rank waits on a peer before the whole job is aborted (no hangs)")
      ("quiet", po::bool_switch(), "do not print the resolved config");
}

std::string joined(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

// This command's options under a section whose last name part is `key`'s, other than `key` itself: where
// another command's key (a top-level `seed`, LONGCTX_SEED) was most likely meant to go (`train.seed`).
// The parts compare with - and _ alike: bench's `seq-len` is train's `data.seq_len` (before: no hint, and
// LONGCTX_SEQ_LEN was ignored by train without a word).
std::vector<std::string> same_leaf_options(const po::options_description& declared, const std::string& key) {
  const auto leaf_of = [](const std::string& name) {
    std::string leaf = name.substr(name.rfind('.') + 1);
    std::replace(leaf.begin(), leaf.end(), '-', '_');
    return leaf;
  };
  std::vector<std::string> names;
  for (const auto& option : declared.options()) {
    const std::string& name = option->long_name();
    if (name.find('.') != std::string::npos && name != key && leaf_of(name) == leaf_of(key)) names.push_back(name);
  }
  return names;
}

// The options of `desc` an unknown one most likely meant: the one option it begins to the end of a word
// ("seq" -> "seq-len", "data.seq" -> "data.seq_len"; before: "seq" -> "seed", two edits away), else those of
// its last name part ("seed" -> "train.seed"; "keep" -> "checkpoint.keep", not "help", two edits away),
// else those it is the start of, up to three ("back" -> "backward", "train.se" -> "train.seed", "train.steps"),
// else the one within two edits ("model.layer" -> "model.layers"); none for none.
std::vector<std::string> likely_options(const std::string& name, const po::options_description& desc, bool in_file) {
  std::string best, begun;
  std::vector<std::string> cut_short;  // options `name` is the start of, mid-word ("back" -> "backward")
  size_t best_distance = 3, begins = 0;
  for (const auto& option : desc.options()) {
    const std::string& long_name = option->long_name();
    if (in_file && (long_name == "help" || long_name == "config")) continue;  // refused there
    if (!name.empty() && long_name.size() > name.size() && long_name.compare(0, name.size(), name) == 0) {
      cut_short.push_back(long_name);
      if (std::string("-._").find(long_name[name.size()]) != std::string::npos) begun = long_name, ++begins;
    }
    const size_t d = edit_distance(name, long_name);
    if (d < best_distance) best = long_name, best_distance = d;
  }
  if (begins == 1) return {begun};
  // Train's spelling of an option another command spells with dashes: eval's --data.path is --data-path,
  // --model.segment_lengths is --segment-lengths (before: --path, the checkpoint, and the whole list).
  const auto dashed = [&](std::string text) {
    std::replace(text.begin(), text.end(), '.', '-');
    std::replace(text.begin(), text.end(), '_', '-');
    return desc.find_nothrow(text, false);
  };
  if (const po::option_description* option = dashed(name); option && name.find_first_of("._") != std::string::npos)
    return {option->long_name()};
  if (std::vector<std::string> same_leaf = same_leaf_options(desc, name); !same_leaf.empty()) return same_leaf;
  // A top-level option given under a section (attend's `input` under [attend]; before, the list of every
  // option, the key among them), also spelled with underscores.
  if (const size_t dot = name.rfind('.'); dot != std::string::npos) {
    if (const po::option_description* top = desc.find_nothrow(name.substr(dot + 1), false)) return {top->long_name()};
    if (const po::option_description* top = dashed(name.substr(dot + 1))) return {top->long_name()};
  }
  // Before: only whole words ("--back", "--model.lay" got no hint; "--train.se" got "--train.lr"). A few at
  // most: "--s" begins too many to be a hint.
  if (!cut_short.empty() && cut_short.size() <= 3) return cut_short;
  if (!best.empty()) return {best};
  return {};
}

}  // namespace

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::optional<bool> switch_word(const std::string& word) {
  std::string lower;
  for (char c : word) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* on : {"1", "true", "yes", "on"})
    if (lower == on) return true;
  for (const char* off : {"0", "false", "no", "off"})
    if (lower == off) return false;
  return std::nullopt;
}

std::string value_source(const Invocation& invocation, const std::string& option) {
  const auto source = invocation.sources.find(option);
  if (source == invocation.sources.end()) return "";
  if (source->second.rfind("env ", 0) == 0) return " (from environment variable " + source->second.substr(4) + ")";
  if (source->second.rfind("config ", 0) != 0) return "";
  // With the line (lines: a list's) that gave it, as the file's own errors say (before: the file alone, so
  // a value refused after parsing, out of range or not for this task, had to be looked for in a long file).
  std::string where = " (from config file " + source->second.substr(7);
  if (const auto lines = invocation.config_lines.find(option); lines != invocation.config_lines.end())
    for (size_t i = 0; i < lines->second.size(); ++i)
      where += (i == 0 ? (lines->second.size() == 1 ? " line " : " lines ") : ", ") + std::to_string(lines->second[i]);
  return where + ")";
}

std::string usage_message(const UsageError& e, const Invocation& invocation) {
  return e.what() + (e.option().empty() ? std::string() : value_source(invocation, e.option()));
}

std::string env_name(const std::string& option) {
  std::string name = "LONGCTX_";
  for (char c : option) name += (c == '.' || c == '-') ? '_' : static_cast<char>(std::toupper(c));
  return name;
}

int64_t parse_size(const std::string& option, const std::string& text) {
  // Digits with an optional sign and one K / M / G suffix (binary); blanks around the item are allowed
  // ("2048, 4096"), anything else (hex, exponents, fractions, a leading '+') is not.
  const size_t first = text.find_first_not_of(" \t"), last = text.find_last_not_of(" \t");
  const std::string item = first == std::string::npos ? "" : text.substr(first, last - first + 1);
  const auto malformed = [&] {
    return UsageError("--" + option + ": '" + text + "' is not an integer (optionally with a K, M or G suffix)", option);
  };
  size_t digits_end = item.size();
  int shift = 0;
  if (!item.empty()) {
    switch (item.back()) {
      case 'K': case 'k': shift = 10; break;
      case 'M': case 'm': shift = 20; break;
      case 'G': case 'g': shift = 30; break;
      default: break;
    }
    if (shift) --digits_end;
  }
  const size_t sign = !item.empty() && item[0] == '-' ? 1 : 0;
  if (digits_end <= sign) throw malformed();
  for (size_t i = sign; i < digits_end; ++i)
    if (!std::isdigit(static_cast<unsigned char>(item[i]))) throw malformed();
  const int64_t limit = std::numeric_limits<int64_t>::max() >> shift;
  int64_t magnitude = 0;
  for (size_t i = sign; i < digits_end; ++i) {
    const int digit = item[i] - '0';
    if (magnitude > (limit - digit) / 10)
      throw UsageError("--" + option + ": '" + text + "' is out of range (at most " +
                       std::to_string(std::numeric_limits<int64_t>::max()) + ")",
                       option);
    magnitude = magnitude * 10 + digit;
  }
  const int64_t value = magnitude * (int64_t{1} << shift);
  return sign ? -value : value;
}

std::vector<int64_t> parse_size_list(const std::string& option, const std::string& text) {
  std::vector<int64_t> values;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty())
      throw UsageError("--" + option + ": malformed list '" + text +
                       "' (expected comma-separated integers such as 2048,4096 or 2K,4K)",
                       option);
    values.push_back(parse_size(option, item));
  }
  if (values.empty() || text.back() == ',')
    throw UsageError("--" + option + ": malformed list '" + text +
                     "' (expected comma-separated integers such as 2048,4096 or 2K,4K)",
                     option);
  return values;
}

namespace {

bool is_switch(const po::option_description& option) { return option.semantic()->max_tokens() == 0; }

// The value of an on/off option given as `--X=VALUE` or in the environment; anything but switch_word()'s
// words is refused, naming `where`.
bool switch_value(const std::string& where, const std::string& value) {
  if (const auto on = switch_word(value)) return *on;
  throw UsageError(where + "='" + value + "': an on/off option takes 1, true, yes, on or 0, false, no, off");
}

// The command line with `--X=on` written `--X` and `--X=off` dropped, for each on/off option X (Boost's
// switches take no value; one that took an optional value would swallow the next word, `--quiet FILE`).
// The options turned off this way go to `turned_off`: they are off whatever a config file or the
// environment says. An on/off option given twice, in any spelling (`--X --X`, `--X=1 --X=0`), is refused
// as every other option given twice is: the last one does not silently win. Help is not on/off: `-h` and
// `--help` may repeat (they ask for the same thing), and `--help=VALUE` is refused (before, --help=0 ran
// the command: `train --help=0` would have trained).
std::vector<std::string> rewrite_switches(const std::vector<std::string>& args, const po::options_description& declared,
                                          bool takes_positional, std::set<std::string>& turned_off) {
  std::vector<std::string> words;
  std::map<std::string, std::string> given;  // on/off option -> the word that gave it
  bool help = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {  // what follows is positional
      words.insert(words.end(), args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
      break;
    }
    if (arg == "-h" || arg == "--help") {
      if (!help) words.push_back(arg);  // as written: `--out -h` names '-h' as the word taken for a value
      help = true;
      continue;
    }
    if (arg.rfind("--help=", 0) == 0)
      throw UsageError(arg + ": --help takes no value (it shows the options and runs nothing)");
    const size_t equals = arg.find('=');
    const po::option_description* option =
        arg.rfind("--", 0) == 0 ? declared.find_nothrow(arg.substr(2, equals == std::string::npos ? std::string::npos
                                                                                                   : equals - 2),
                                                        false)
                                : nullptr;
    if (!option || !is_switch(*option)) {
      // `--X=` gives X an empty value, as `--X ""` does (GNU getopt reads it so; Boost's message was "the
      // argument should follow immediately after the equal sign").
      if (option && equals == arg.size() - 1) {
        words.push_back(arg.substr(0, equals));
        words.emplace_back();
      } else {
        words.push_back(arg);
      }
      continue;
    }
    const std::string name = option->long_name();
    if (const auto [first, inserted] = given.emplace(name, arg); !inserted)
      throw UsageError("--" + name + ": given twice on the command line ('" + first->second + "', then '" + arg +
                       "'); give it once");
    if (equals == std::string::npos) {
      // `--causal true` (as other tools spell it): the word would be taken for a positional argument.
      if (i + 1 < args.size() && switch_word(args[i + 1]))
        // (The -- note only where the command takes a positional argument: attend's said it too.)
        throw UsageError(arg + " " + args[i + 1] + ": an on/off option takes a value only after '=' (" + arg + "=" +
                         args[i + 1] + "), or none (" + arg + " alone is on" +
                         (takes_positional ? "; a positional argument spelled '" + args[i + 1] + "' goes after --"
                                           : std::string()) + ")");
      words.push_back(arg);
    } else if (switch_value("--" + name, arg.substr(equals + 1))) {
      words.push_back("--" + name);
    } else {
      turned_off.insert(name);
    }
  }
  return words;
}

// The text of a config file: a regular file that reads completely. `given_by` says how its name came
// ("--config", "environment variable LONGCTX_CONFIG"), for the errors about it.
std::string read_config(const std::string& path, const std::string& given_by) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error))
    throw UsageError(given_by + ": '" + path + "' " +
                     (std::filesystem::exists(path, error)
                          ? "is not a regular file (a config is read from a file: a pipe or <(...) is read once, "
                            "and every rank reads it)"
                          : "does not exist"));
  errno = 0;
  std::ifstream file(path, std::ios::binary);
  if (!file)  // why (before: "cannot open" alone)
    throw UsageError(given_by + ": cannot open '" + path + "'" +
                     (errno != 0 ? " (" + std::string(std::strerror(errno)) + ")" : std::string()));
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) throw UsageError(given_by + ": cannot read '" + path + "'");
  return text.str();
}

// What the longctx commands declare, gathered once (each command declared once): which commands have
// each option, and which options each takes as positional arguments (ckpt's path). A positional argument
// has no environment variable: its name would be generic (LONGCTX_PATH), and a site may well set that for
// something else. The options every command shares (declare_common) are not listed.
struct CommandOptions {
  std::map<std::string, std::vector<std::string>> commands;  // option -> the commands that declare it
  std::map<std::string, std::set<std::string>> positional;   // command -> its positional options
  std::set<std::string> with_variables;                      // options some command reads from the environment
};

const CommandOptions& command_options() {
  static const CommandOptions options = [] {
    CommandOptions all;
    for (const Command& command : all_commands()) {
      po::options_description declared;
      po::positional_options_description positional;
      if (command.declare) command.declare(declared, positional);
      std::set<std::string>& names = all.positional[command.name];
      for (unsigned i = 0; i < positional.max_total_count() && i < 16; ++i)
        names.insert(positional.name_for_position(i));
      for (const auto& o : declared.options()) {
        all.commands[o->long_name()].push_back(command.name);
        if (!names.count(o->long_name())) all.with_variables.insert(o->long_name());
      }
    }
    return all;
  }();
  return options;
}

const std::set<std::string>& positional_names(const Command& command) {
  static const std::set<std::string> none;  // a command outside all_commands() (the tests' own)
  const auto found = command_options().positional.find(command.name);
  return found == command_options().positional.end() ? none : found->second;
}

// `name` as a config file spells it: "model.layers" -> "[model] layers"; a top-level one as it is.
std::string file_spelling(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : "[" + name.substr(0, dot) + "] " + name.substr(dot + 1);
}

// Spelled as the source spells them; a config file's list leaves out what files refuse (help, config).
std::string allowed_options(const po::options_description& desc, bool in_file) {
  std::string out;
  for (const auto& option : desc.options()) {
    const std::string& name = option->long_name();
    if (in_file && (name == "help" || name == "config")) continue;
    if (!out.empty()) out += ", ";
    out += in_file ? file_spelling(name) : "--" + name;
  }
  return out;
}


// Config keys that only other commands have are skipped (one file may serve several commands), but said:
// a key that looks meant for this command (a top-level `seed` in a train config, which has `[train] seed`)
// on a line of its own, the others one line per set of commands that have them.
class ForeignKeys {
 public:
  ForeignKeys(const Command& command, const po::options_description& declared)
      : command_(command), declared_(declared) {}

  void add(const std::string& at, const std::string& key, const std::vector<std::string>& owners) {
    std::vector<std::string> guesses;
    for (const std::string& name : same_leaf_options(declared_, key)) guesses.push_back(file_spelling(name));
    if (guesses.empty()) {
      std::vector<std::string>& keys = by_owners_[joined(owners, ", ")];
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);  // a list repeats its key
    } else {
      likely_mistakes_.push_back(at + ": '" + key + "' ignored: an option of " + joined(owners, ", ") +
                                 ", not of 'longctx " + command_.name + "'; did you mean " + joined(guesses, " or ") +
                                 "?");
    }
  }

  // Rank 0 prints them, once. `shared`: the file came from LONGCTX_CONFIG, exported for every command, so
  // the other commands' keys are expected there and only the likely mistakes are said.
  void warn(const std::string& file, bool shared) const {
    for (const auto& line : likely_mistakes_) log::warn_once(line);
    if (shared) return;
    for (const auto& [owners, keys] : by_owners_)
      log::warn_once(file + ": keys ignored by 'longctx " + command_.name + "' (options of " + owners + " only): " +
                     joined(keys, ", "));
  }

 private:

  const Command& command_;
  const po::options_description& declared_;
  std::vector<std::string> likely_mistakes_;
  std::map<std::string, std::vector<std::string>> by_owners_;  // "attend, bench attention" -> keys
};

// The LONGCTX_* environment variables that are no option, all of them (README lists them): any other
// LONGCTX_* variable that maps to no option of any command is warned about, so that a misspelt one
// (LONGCTX_SEQLEN, LONGCTX_MODEL.LAYERS) does not go unnoticed. Add a new one here.
const std::set<std::string>& environment_settings() {
  static const std::set<std::string> names{
      // read by longctx: the CUDA kernels' choices (attention/cuda/flash_kernels.cu)
      "LONGCTX_FLASH_FORWARD", "LONGCTX_FLASH_BACKWARD", "LONGCTX_FLASH_FUSE",
      // read by longctx: how often long work says it is alive (runtime/core/heartbeat.hpp)
      "LONGCTX_PROGRESS_SECONDS",
      // read by longctx: the largest token file train and eval check against its digest before a run
      // (runtime/commands/train_options.cpp)
      "LONGCTX_TOKEN_CHECK_BYTES",
      // fault injection for the tests (runtime/commands/attend.cpp, runtime/train/fault_injection.cpp,
      // io/atomic_output.cpp, io/token_import.cpp, io/checkpoint_verify.cpp, runtime/commands/train.cpp,
      // runtime/train/json_log.cpp, runtime/process.cpp)
      "LONGCTX_FAULT_INJECT_RANK", "LONGCTX_FAULT_STALL_RANK", "LONGCTX_FAULT_STALL_ATTENTION_RANK", "LONGCTX_FAULT_STALL_END_RANK",
      "LONGCTX_FAULT_TERMINATE_RANK", "LONGCTX_FAULT_NAN_GRADIENT", "LONGCTX_FAULT_SLOW_SIGNAL_CLEANUP_MS",
      "LONGCTX_FAULT_SLOW_CLAIM_MS", "LONGCTX_FAULT_SLOW_LOG_REWRITE_MS", "LONGCTX_FAULT_SIGNAL_AT",
      "LONGCTX_FAULT_STOP_BETWEEN_READS", "LONGCTX_FAULT_STOP_AFTER_LISTING", "LONGCTX_FAULT_STOP_BEFORE_WORK",
      "LONGCTX_FAULT_STOP_AFTER_SUMMARY", "LONGCTX_FAULT_STARTUP_TIMEOUT",
      // read by the jobs/ scripts, so often set where longctx runs
      "LONGCTX_BUILD", "LONGCTX_NATIVE", "LONGCTX_ROOT", "LONGCTX_QUICKSTART_DIR", "LONGCTX_BIN",
      "LONGCTX_SLURM_STATE", "LONGCTX_SLURM_CPUS", "LONGCTX_SLURM_CTLD_PORT", "LONGCTX_SLURM_D_PORT",
      "LONGCTX_MIN_RUN_SECONDS"};
  return names;
}

// A warning for each set LONGCTX_* variable that is neither an option's (of any command) nor a setting,
// with the option's variable it may have meant: LONGCTX_MODEL.LAYERS -> LONGCTX_MODEL_LAYERS (dots and
// dashes become _), LONGCTX_SEQLEN -> LONGCTX_SEQ_LEN (the same but for _), else any within two edits.
void warn_unknown_variables(const std::vector<std::string>& environment_names, const GetEnv& getenv,
                            const po::options_description& declared, const Command& command) {
  std::set<std::string> known = environment_settings();
  std::map<std::string, std::string> others;  // variable of another command's option -> that option
  for (const std::string& option : command_options().with_variables) {
    known.insert(env_name(option));
    if (!declared.find_nothrow(option, false)) others.emplace(env_name(option), option);
  }
  const std::set<std::string>& positional = positional_names(command);
  std::map<std::string, std::string> positional_variables;  // LONGCTX_PATH -> "ckpt inspect, ckpt verify"
  for (const auto& [name, options] : command_options().positional)
    for (const std::string& option : options) {
      std::string& owners = positional_variables[env_name(option)];
      owners += (owners.empty() ? "" : ", ") + name;
    }
  for (const auto& option : declared.options())
    if (!positional.count(option->long_name())) known.insert(env_name(option->long_name()));
  // Another command's option whose last name part is one of this command's (LONGCTX_SEED for train,
  // whose is LONGCTX_TRAIN_SEED): the likely mistake of a top-level `seed` in a train config.
  for (const auto& variable : environment_names) {
    const auto other = others.find(variable);
    const auto value = getenv(variable);
    if (other == others.end() || !value || value->empty()) continue;
    for (const std::string& name : same_leaf_options(declared, other->second))
      log::warn_once("environment variable " + variable + " sets '" + other->second +
                     "', an option of other commands, not of 'longctx " + command.name + "': ignored; did you mean " +
                     env_name(name) + "?");
  }
  const auto squeezed = [](const std::string& name) {
    std::string out;
    for (char c : name)
      if (c != '_' && c != '.' && c != '-') out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
  };
  const std::string prefix = "LONGCTX_";
  for (const auto& variable : environment_names) {
    if (variable.compare(0, prefix.size(), prefix) != 0 || known.count(variable)) continue;
    const auto value = getenv(variable);
    if (!value || value->empty()) continue;  // an empty variable counts as unset
    if (positional_variables.count(variable)) {
      log::warn_once("environment variable " + variable + " is ignored: a positional argument (that of " +
                     positional_variables.at(variable) +
                     ") comes from the command line or a config file, never from the environment");
      continue;
    }
    std::string guess;
    for (const auto& name : known)
      if (squeezed(name) == squeezed(variable)) guess = name;
    // Else those within two edits, as the command line's hints (LONGCTX_SEGMENT_LENGTH -> ..._LENGTHS,
    // LONGCTX_CASUAL -> LONGCTX_CAUSAL; before: no hint for them), and a third of the name at most (no
    // LONGCTX_OUT for LONGCTX_NOPE; before: one edit more where none was nearer, LONGCTX_ITERS for
    // LONGCTX_STEPS); else those it is with the section left out (LONGCTX_STEPS -> LONGCTX_TRAIN_STEPS).
    std::vector<std::string> near;
    if (guess.empty()) {
      const size_t limit = std::min<size_t>(2, (squeezed(variable).size() - squeezed(prefix).size()) / 3);
      size_t nearest = limit + 1;
      for (const auto& name : known) {
        const size_t d = edit_distance(squeezed(variable), squeezed(name));
        if (d > limit) continue;
        if (d < nearest) nearest = d, near.clear();
        if (d == nearest) near.push_back(name);
      }
    }
    if (guess.empty() && near.empty()) {
      const std::string name_part = "_" + variable.substr(prefix.size());  // after a section: _STEPS
      for (const auto& name : known) {
        const size_t section_end = name.find('_', prefix.size());  // sections hold no _
        if (section_end != std::string::npos && name.compare(section_end, std::string::npos, name_part) == 0)
          near.push_back(name);
      }
    }
    for (size_t i = 0; i < near.size() && i < 3; ++i) guess += (i ? " or " : "") + near[i];
    log::warn_once("environment variable " + variable +
                   " is neither an option of a longctx command nor a setting it knows: ignored" +
                   (guess.empty() ? "" : "; did you mean " + guess + "?") +
                   " (an option's variable is LONGCTX_ and its name in capitals, . and - as _)");
  }
}

// "--out --quiet": Boost takes the word after an option as its value, whatever it looks like, so a
// forgotten value wrote a file named "--quiet" (and a multitoken --text swallowed "--out"). A value that
// spells an option of the command is refused; a file of such a name is still reachable as ./--quiet.
void check_values_are_not_options(const po::parsed_options& parsed, const po::options_description& declared) {
  for (const auto& o : parsed.options) {
    if (o.position_key != -1) continue;  // a positional argument: no option before it
    if (o.original_tokens.size() == 1 && o.original_tokens[0].find('=') != std::string::npos) continue;  // --out=--x: meant
    for (const std::string& value : o.value) {
      const bool long_form = value.size() > 2 && value.rfind("--", 0) == 0;
      const std::string name = long_form ? value.substr(2, value.find('=') - 2) : value;
      if ((long_form && declared.find_nothrow(name, false)) || value == "-h")
        throw UsageError("--" + o.string_key + " has no value: the next word, '" + value +
                         "', is an option (for a file of that name write ./" + value + ")", o.string_key);
    }
  }
}

// Boost reads "-1" as 2^64 - 1 for an unsigned option; refuse a sign there instead. It also takes "+3"
// for any integer, where integers are plain digits (as parse_size has them). Anything else that is not
// digits is refused here too, saying so: Boost's own error named the type's whole range (--train.steps=0x10:
// "an integer from -9223372036854775808 to ..."), which is not the option's; it is left the values out of
// the type's range. Numbers (double) past a double's range are refused here too.
// `context`: where the value came from and where to look, as Boost's errors end.
void check_number_tokens(const po::parsed_options& parsed, const po::options_description& declared,
                          const std::string& context) {
  for (const auto& o : parsed.options) {
    const po::option_description* option = declared.find_nothrow(o.string_key, false);
    if (!option) continue;
    const po::value_semantic* semantic = option->semantic().get();
    const bool is_unsigned = dynamic_cast<const po::typed_value<uint64_t>*>(semantic) != nullptr;
    const bool is_integer = is_unsigned || dynamic_cast<const po::typed_value<int64_t>*>(semantic) ||
                            dynamic_cast<const po::typed_value<int>*>(semantic);
    if (dynamic_cast<const po::typed_value<double>*>(semantic)) {
      // A number past a double's range: Boost read 1e-400 as 0, which --softmax-scale takes for "the
      // default", and 1e-320 as a denormal. (Malformed numbers are Boost's to refuse.)
      for (const auto& token : o.value) {
        char* end = nullptr;
        errno = 0;
        const double value = std::strtod(token.c_str(), &end);
        if (errno == ERANGE && end != token.c_str())
          throw UsageError("--" + o.string_key + ": '" + token + "' is beyond a double's range (it would be read as " +
                           (std::fabs(value) < 1 ? "0 or a denormal" : "infinite") + ")" + context);
      }
    }
    if (!is_integer) continue;
    for (const auto& token : o.value) {
      const std::string& from = context;
      if (is_unsigned && token.find('-') != std::string::npos)
        throw UsageError("--" + o.string_key + ": '" + token + "' is not a non-negative integer" + from);
      if (token.find('+') != std::string::npos)
        throw UsageError("--" + o.string_key + ": '" + token + "' is not an integer in plain digits (no '+')" + from);
      const size_t first_digit = !token.empty() && token[0] == '-' ? 1 : 0;
      if (token.size() == first_digit || token.find_first_not_of("0123456789", first_digit) != std::string::npos)
        throw UsageError("--" + o.string_key + ": '" + token +
                         "' is not an integer: digits only; K, M, G suffixes are for the options whose --help says so" +
                         from);
    }
  }
}

// What an option of this type takes, for an invalid-value error (an integer out of the type's range, as
// check_number_tokens refused the rest; a malformed number); empty for text and on/off options.
std::string value_kind(const po::option_description& option) {
  const po::value_semantic* semantic = option.semantic().get();
  const auto integers = [](auto low, auto high) {
    return "an integer from " + std::to_string(low) + " to " + std::to_string(high);
  };
  if (dynamic_cast<const po::typed_value<uint64_t>*>(semantic))
    return integers(0, std::numeric_limits<uint64_t>::max());
  if (dynamic_cast<const po::typed_value<int64_t>*>(semantic))
    return integers(std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
  if (dynamic_cast<const po::typed_value<int>*>(semantic))
    return integers(std::numeric_limits<int>::min(), std::numeric_limits<int>::max());
  if (dynamic_cast<const po::typed_value<double>*>(semantic)) return "a number";
  return "";
}

}  // namespace

namespace {
// The names of `declared`'s required options that `given` says were not given, in declared order.
std::vector<std::string> required_not_given(const po::options_description& declared,
                                            const std::function<bool(const std::string&)>& given) {
  std::vector<std::string> missing;
  for (const auto& option : declared.options())
    if (option->semantic()->is_required() && !given(option->long_name())) missing.push_back(option->long_name());
  return missing;
}
}  // namespace

Invocation parse_invocation(ProcessContext& process, const Command& command, const std::vector<std::string>& args,
                            const GetEnv& getenv, const std::vector<std::string>& environment_names,
                            po::options_description& declared) {
  po::positional_options_description positional;
  if (command.declare) command.declare(declared, positional);
  declare_common(declared);

  Invocation invocation{process, command, {}, {}, {}};
  const std::string where = "'longctx " + command.name + "'";
  // Long options only as spelled: Boost's default also takes unique prefixes (--seq for --seq-len), which
  // a later option can make ambiguous and so break a script that worked.
  const int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
  std::string source = "the command line";  // named in errors
  std::vector<std::string> rewritten;        // the command line as rewrite_switches gives it to Boost
  const auto context = [&] {
    return " (" + (source.empty() ? "" : "from " + source + ", ") + "in " + where + "; see `longctx " + command.name +
           " --help`)";
  };
  const auto unknown_option = [&](const std::string& given) {
    // Spelled as the source spells options: --model.layers, or [model] layers in a config file.
    const bool in_file = source.rfind("config file", 0) == 0;
    // (Before, `--seed` on the command line got the list of every option, where a config file's top-level
    // `seed` and LONGCTX_SEED were pointed to train.seed.)
    std::string unknown = given.substr(0, given.find('='));  // Boost names `--causl=1` so
    unknown.erase(0, unknown.find_first_not_of('-'));
    std::vector<std::string> guesses;
    for (const std::string& name : likely_options(unknown, declared, in_file))
      guesses.push_back(!in_file ? "--" + name
                        : name.find('.') == std::string::npos && unknown.find('.') != std::string::npos
                            ? name + " above any [section] line"
                            : file_spelling(name));
    // (Named without a value given after '=': before, "unknown option '--data.path=corpus.h5'".)
    return UsageError("unknown option '" + given.substr(0, given.find('=')) + "' for " + where +
                      (source.empty() ? "" : " (from " + source + ")") +
                      (guesses.empty() ? "; allowed: " + allowed_options(declared, in_file)
                                       : "; did you mean " + joined(guesses, " or ") + "?"));
  };
  try {
    std::set<std::string> turned_off;  // on/off options given as --X=false
    rewritten = rewrite_switches(args, declared, positional.max_total_count() > 0, turned_off);
    const po::parsed_options from_cli =
        po::command_line_parser(rewritten).options(declared).positional(positional).style(style).run();
    check_values_are_not_options(from_cli, declared);  // first: `--seed --batch` is a missing value, not a bad one
    check_number_tokens(from_cli, declared, context());
    po::store(from_cli, invocation.options);
    for (const auto& o : from_cli.options) invocation.sources[o.string_key] = "command line";
    for (const auto& name : turned_off) invocation.sources[name] = "command line";
    if (invocation.options.count("help")) return invocation;  // --help works without the required options
    // A value a source of higher precedence overrides (the command line for a config file; either for the
    // environment) is not used, so it is not checked either, whatever its type (before: a bad integer or
    // on/off value in a config file or LONGCTX_* stopped a run that gave the option, while a bad number or
    // text did not, as Boost never reads a value it does not store).
    const auto set_above = [&](const std::string& name) {
      return turned_off.count(name) || (invocation.options.count(name) && !invocation.options[name].defaulted());
    };

    std::optional<std::string> config_path;
    std::string config_given_by;
    if (invocation.options.count("config")) {
      // `--config=` (or '') reads none, as for other file options: the way to leave LONGCTX_CONFIG out.
      const std::string given = invocation.options["config"].as<std::string>();
      if (!given.empty()) config_path = given;
      config_given_by = "--config";
    } else if (auto from_env = getenv(env_name("config")); from_env && !from_env->empty()) {
      config_path = *from_env;
      config_given_by = "environment variable " + env_name("config");
    }
    if (config_path) {
      const std::string file = "config file " + *config_path;
      source = file;
      // The file is read here, not by Boost: its rule for comments (# anywhere, ; nowhere) is not ours
      // (ini.hpp), and a message can name the line. One po::option per key, stored one at a time.
      std::vector<std::pair<po::option, std::vector<int>>> found;  // with the lines that gave it
      std::map<std::string, size_t> index;            // option -> its place in `found`
      ForeignKeys foreign(command, declared);
      for (const IniEntry& entry : parse_ini(read_config(*config_path, config_given_by), file)) {
        source = file + " line " + std::to_string(entry.line);
        const po::option_description* option = declared.find_nothrow(entry.key, false);
        // One file may serve several commands (attend and bench attention, or a train config exported as
        // LONGCTX_CONFIG while running info): keys of another longctx command are skipped with a warning,
        // others refused.
        if (!option) {
          const auto owners = command_options().commands.find(entry.key);
          if (owners == command_options().commands.end()) throw po::unknown_option(entry.key);
          foreign.add(source, entry.key, owners->second);
          continue;
        }
        const std::string& name = option->long_name();
        if (name == "help")  // a help key would make every run print help and do nothing, exit 0
          throw UsageError(source + ": '" + entry.key + "' belongs on the command line only (longctx " + command.name +
                           " --help); remove it from the file");
        if (name == "config")  // and was ignored before
          throw UsageError(source + ": '" + entry.key + "': config files do not include others; copy its options " +
                           "here, or give that file with --config");
        // An empty text option is "" (as --X '' is; a checkpoint's /config writes unset paths so); an empty
        // number or on/off value is a mistake (Boost read 'quiet =' as on).
        const bool text = dynamic_cast<const po::typed_value<std::string>*>(option->semantic().get()) != nullptr;
        if (entry.value.empty() && !text)
          throw UsageError(source + ": '" + entry.key + "' has no value (to keep the default, leave the line out)");
        // (An on/off value the command line overrides is kept as written: not read, so not refused.)
        const std::string value = !is_switch(*option) || set_above(name)             ? entry.value
                                  : switch_value(source + ": " + name, entry.value) ? "true"
                                                                                    : "false";
        const auto [at, first] = index.emplace(name, found.size());
        if (first) {
          found.emplace_back(po::option(name, {value}), std::vector<int>{entry.line});
        } else if (option->semantic()->max_tokens() > 1) {  // a list: each line adds to it
          found[at->second].first.value.push_back(value);
          found[at->second].second.push_back(entry.line);
        } else {
          throw UsageError(source + ": '" + entry.key + "' given twice (first on line " +
                           std::to_string(found[at->second].second.front()) + ")");
        }
      }
      foreign.warn(file, config_given_by != "--config");
      for (const auto& [option, lines] : found) {
        if (set_above(option.string_key)) continue;
        source = file + " line " + std::to_string(lines.front());
        po::parsed_options one(&declared);
        one.options.push_back(option);
        check_number_tokens(one, declared, context());
        po::store(one, invocation.options);
        invocation.sources.emplace(option.string_key, "config " + *config_path);
        invocation.config_lines.emplace(option.string_key, lines);
      }
    }

    // One variable at a time, so an error names it. An empty variable counts as unset, and a positional
    // argument has none (positional_names()).
    const std::set<std::string>& positional_options = positional_names(command);
    for (const auto& option : declared.options()) {
      const std::string& name = option->long_name();
      const std::string variable = env_name(name);
      const auto value = getenv(variable);
      if (name == "config" || !value || value->empty() || positional_options.count(name) || set_above(name)) continue;
      if (name == "help")
        throw UsageError("environment variable " + variable + "='" + *value + "': help belongs on the command line " +
                         "only (longctx " + command.name + " --help); unset " + variable);
      source = "environment variable " + variable + "='" + *value + "'";
      std::vector<std::string> words{"--" + name};
      if (is_switch(*option)) {
        if (!switch_value(variable, *value)) {  // off, as the default: but from here (before: "[default]")
          invocation.sources.emplace(name, "env " + variable);
          continue;
        }
      } else {
        words.back() += "=" + *value;
      }
      const po::parsed_options from_env = po::command_line_parser(words).options(declared).style(style).run();
      check_number_tokens(from_env, declared, context());
      po::store(from_env, invocation.options);
      invocation.sources.emplace(name, "env " + variable);
    }
    warn_unknown_variables(environment_names, getenv, declared, command);
    if (const auto period = getenv("LONGCTX_PROGRESS_SECONDS")) Heartbeat::period_from(period->c_str());
    source.clear();
    // Every missing one at once (before: Boost names the first, so a new user met them one run at a time).
    const std::vector<std::string> missing =
        required_not_given(declared, [&](const std::string& name) { return invocation.options.count(name) > 0; });
    if (missing.size() > 1) {
      std::string names;
      for (size_t i = 0; i < missing.size(); ++i)
        names += (i == 0 ? "'--" : i + 1 == missing.size() ? " and '--" : ", '--") + missing[i] + "'";
      throw UsageError("the options " + names + " are required but missing" + context());
    }
    po::notify(invocation.options);
  } catch (const po::unknown_option& e) {
    throw unknown_option(e.get_option_name());
  } catch (const po::invalid_command_line_syntax& e) {
    // `--causl=` (an empty value): Boost objects to the empty value before it looks the name up (before: an
    // unknown option got "the argument for option '--causl' should follow immediately after the equal sign").
    std::string name = e.get_option_name();
    name.erase(0, name.find_first_not_of('-'));
    if (!name.empty() && !declared.find_nothrow(name, false)) throw unknown_option(e.get_option_name());
    throw UsageError(e.what() + context());
  } catch (const po::invalid_option_value& e) {
    std::string name = e.get_option_name();
    name.erase(0, name.find_first_not_of('-'));
    const po::option_description* option = declared.find_nothrow(name, false);
    const std::string kind = option ? value_kind(*option) : "";
    throw UsageError(std::string(e.what()) + (kind.empty() ? "" : ": it takes " + kind) + context());
  } catch (const po::multiple_occurrences& e) {
    // The positional argument is that option (`eval ck --path ck2`): said (before: "option '--path' cannot be
    // specified more than once", where it was given once; from the eval audit).
    std::string name = e.get_option_name();
    name.erase(0, name.find_first_not_of('-'));
    // (Given twice by name, `--path a --path b`, Boost's words are right.)
    const auto by_name = std::count_if(rewritten.begin(), rewritten.end(), [&](const std::string& word) {
      return word == "--" + name || word.rfind("--" + name + "=", 0) == 0;
    });
    if (positional_names(command).count(name) && by_name < 2)
      throw UsageError("--" + name + " and the positional " + command.positional + " are one argument: give it once (" +
                       "longctx " + command.name + " " + command.positional + ", or --" + name + " " +
                       command.positional + ")" + context());
    throw UsageError(e.what() + context());
  } catch (const po::too_many_positional_options_error&) {
    // Boost names no word; the words past the command's own are the ones to name. Of the words as
    // rewrite_switches left them (Boost refuses a value of an on/off option: `--causal=false extra` was an
    // internal failure, exit 1). A stray word is often the value of an option whose own value is missing
    // (`--seed --batch 1`): that is said first.
    const po::parsed_options loose =
        po::command_line_parser(rewritten).options(declared).style(style).allow_unregistered().run();
    check_values_are_not_options(loose, declared);
    const std::vector<std::string> words = po::collect_unrecognized(loose.options, po::include_positional);
    std::string extra;
    for (size_t i = positional.max_total_count(); i < words.size(); ++i)
      extra += (extra.empty() ? "'" : ", '") + words[i] + "'";
    // What they may have been meant as (before: only that it takes options): a .ini file, --config; else the
    // required options not given, in order (`attend in.h5 out.h5 ...`: --input in.h5 --output out.h5).
    std::set<std::string> given;
    for (const po::option& option : loose.options)
      if (!option.unregistered && !option.string_key.empty()) given.insert(option.string_key);
    const std::vector<std::string> stray(words.begin() + static_cast<std::ptrdiff_t>(positional.max_total_count()),
                                         words.end());
    const std::vector<std::string> missing =
        required_not_given(declared, [&](const std::string& name) { return given.count(name) > 0; });
    std::string meant;
    const auto ini = [](const std::string& word) { return word.size() > 4 && word.substr(word.size() - 4) == ".ini"; };
    if (stray.size() == 1 && ini(stray[0]) && !given.count("config"))
      meant = "--config " + stray[0];
    else if (!missing.empty() && stray.size() <= missing.size() && std::none_of(stray.begin(), stray.end(), ini))
      for (size_t i = 0; i < stray.size(); ++i) meant += (i ? " --" : "--") + missing[i] + " " + stray[i];
    throw UsageError("unexpected argument" + std::string(words.size() - positional.max_total_count() > 1 ? "s " : " ") +
                     extra + " (" +
                     (command.positional.empty() ? "it takes options only, each starting with --"
                                                 : "it takes one " + command.positional + " besides its options") +
                     (meant.empty() ? "" : "; did you mean " + meant + "?") + ")" + context());
  } catch (const po::error& e) {
    throw UsageError(e.what() + context());
  }
  const double timeout = invocation.options["comm-timeout"].as<double>();
  if (!(timeout > 0) || !std::isfinite(timeout)) {
    std::ostringstream message;
    message << "--comm-timeout: must be a positive, finite number of seconds, got " << timeout
            << value_source(invocation, "comm-timeout");
    throw UsageError(message.str());
  }
  // Below a second an ordinary wait of a sound job (MPI_Finalize at the end, a collective while a rank
  // reads) may pass it, and the job ends as if a rank were stuck: said where it is given (before: no word, and
  // "a rank is stuck or gone" after the work; from the hang audit).
  if (timeout < 1) {
    std::ostringstream message;
    message << "--comm-timeout " << timeout << value_source(invocation, "comm-timeout")
            << ": under a second, an ordinary wait of a sound job (a collective while another rank reads or "
               "writes, MPI_Finalize at the end) may pass it and end the job as if a rank were stuck; 10 or more "
               "is safe";
    log::warn_once(message.str());
  }
  for (const auto& option : declared.options())
    invocation.sources.emplace(option->long_name(), "default");
  return invocation;
}

// The options as --help lists them: each with its default (interfaces.md). Boost prints "(=X)" only for an
// option declared with a default shown as text; here an on/off option shows "(=off)", one that must be given
// "(required)" and one with no default (or an empty one) "(unset)" (before: nothing, so a reader of --help
// could not tell these from each other). --help itself is shown as declared.
po::options_description shown_in_help(const po::options_description& declared, const std::set<std::string>& positional,
                                      const std::string& caption) {
  po::options_description shown(caption, kHelpLineLength, kHelpDescriptionLength);
  for (const auto& option : declared.options()) {
    const std::string& name = option->long_name();
    const po::value_semantic& semantic = *option->semantic();
    boost::any default_value;
    std::string text;
    if (name == "help")
      text = "";
    else if (positional.count(name))  // every command with one refuses to run without it (require_path)
      text = "arg (required)";
    else if (is_switch(*option))
      text = "(=off)";
    else if (semantic.is_required())
      text = "arg (required)";
    else if (!semantic.apply_default(default_value) || semantic.name().find("(=") == std::string::npos)
      text = "arg (unset)";  // no default, or one declared without text: "" (data.path, checkpoint.dir)
    if (text.empty()) {
      shown.add(option);
      continue;
    }
    // Shown only: a value of this name is never parsed (value_name is what Boost prints as the parameter).
    po::value_semantic* const parameter = po::value<std::string>()->value_name(text);
    shown.add(boost::shared_ptr<po::option_description>(
        new po::option_description(name.c_str(), parameter, option->description().c_str())));
  }
  return shown;
}

std::string common_options_text() {
  po::options_description common;
  declare_common(common);
  std::ostringstream out;
  out << shown_in_help(common, {}, "options every command takes");
  return out.str();
}

std::string command_options_text(const Command& command) {
  po::options_description declared;
  po::positional_options_description positional;
  if (command.declare) command.declare(declared, positional);
  std::ostringstream out;
  out << shown_in_help(declared, positional_names(command),
                       "options of longctx " + command.name + (command.positional.empty() ? "" : " " + command.positional));
  return out.str();
}

std::string help_text(const Command& command, const po::options_description& declared) {
  std::string required, example, lists;
  const std::set<std::string>& positional = positional_names(command);
  for (const auto& option : declared.options()) {
    const std::string& name = option->long_name();
    if (option->semantic()->is_required()) required += (required.empty() ? "--" : ", --") + name;
    if (option->semantic()->max_tokens() > 1) lists += (lists.empty() ? "" : " and ") + name;  // (two at most)
    // Not a list option (data import's --text): a variable gives one value, not a list.
    if (example.empty() && !is_switch(*option) && name != "config" && name != "help" && !positional.count(name) &&
        option->semantic()->max_tokens() <= 1)
      example = name;
  }
  std::ostringstream out;
  out << "usage: longctx " << command.name << " [options]" << (command.positional.empty() ? "" : " ")
      << command.positional << "\n\n"
      << command.summary << "\n\n"
      << shown_in_help(declared, positional, "options") << "\n";
  if (!required.empty()) out << "Required: " << required << ".\n";
  out << "On/off options (=off) are off unless given; --X=false turns off one that a config file or the\n"
      << "environment turned on. Every option can also come from --config FILE.ini ([section] key=value)\n"
      << "or the environment (--" << example << " <- " << env_name(example) << "; on/off options take 1/0, true/false, yes/no or on/off);\n"
      << "the command line wins over the file, the file over the environment. An option's variable is\n"
      << "LONGCTX_ and its name in capitals, . and - as _ (--model.layers <- LONGCTX_MODEL_LAYERS); an\n"
      << "empty one counts as unset, and a LONGCTX_ variable that is no option is warned about.\n"
      << "In the file a line that starts with # or ; is a comment, and so is the rest of a line from a\n"
      << "# or ; after a blank (seed = 4  # note); one right after other text is part of the value\n"
      << "(jsonl = run#1.jsonl); a value in double quotes may hold blanks, # and ; (dir = \"ck #2\"; \\\" and\n"
      // The lists named (before: "a list's lines add up" also in train's help, whose options are none).
      << "\\\\ inside are \" and \\). A key given twice is an error"
      << (lists.empty() ? "" : " (but for " + lists + ", whose lines add up)") << ", and so is an empty\n"
      << "number or on/off value.\n"
      << (command.positional.empty() ? ""
                                     : command.positional + " comes from the command line or the file, not the environment.\n")
      << "--help works on the command line only, and a config file cannot name another (no config key).\n";
  return out.str();
}

}  // namespace longctx::cli
