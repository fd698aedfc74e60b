// One binary, subcommands. A Command declares its options and runs with the parsed, resolved values.
// Options come from the command line, then a config file (--config FILE.ini; INI sections map to
// dotted names: `[model] layers=2` is `--model.layers`), then LONGCTX_* environment variables
// (`--seq-len` <- LONGCTX_SEQ_LEN, `--model.layers` <- LONGCTX_MODEL_LAYERS), in that order of
// precedence.
#pragma once

#include <boost/program_options.hpp>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/process.hpp"

namespace longctx::cli {

namespace po = boost::program_options;

struct Invocation;

struct Command {
  std::string name;        // "info", "bench attention", "ckpt inspect"
  std::string summary;     // one line for `longctx --help`
  std::string positional;  // e.g. "FILE" for the usage line; empty when none
  std::function<void(po::options_description&, po::positional_options_description&)> declare;
  std::function<int(Invocation&)> run;  // returns the exit code
  // Optional checks of the options (and cheap looks at input files), run in the config phase, where all
  // ranks agree on the outcome: an error there ends every rank with one message and no MPI_Abort.
  std::function<void(const Invocation&)> check = nullptr;
  // Optional: what every rank must see alike of its inputs, as (what, value) pairs (the input's shape, the
  // lock file rank 0 wrote in checkpoint.dir). Run on every rank once the config phase passed on all (so
  // it may read what `check` wrote on rank 0), and compared with rank 0's, as the options are: a rank
  // that differs ends the run with exit 2, saying what differs. Collectives (probe_directory) go first:
  // a rank that throws goes to main.cpp's agreement, which the others would not reach from a collective.
  std::function<std::vector<std::pair<std::string, std::string>>(const Invocation&)> shared_inputs = nullptr;
  // Optional: removes what `check` made (train's checkpoint.dir and its lock file) when the run is refused
  // after it ran: this or another rank's check failed, or the ranks' comparison did. Called on every rank,
  // it removes only what this rank made: exit 2 and 3 promise that nothing was written.
  std::function<void()> undo_check = nullptr;
  // Its results are the files it writes (train, data import, attend): what it prints to standard output is
  // progress, whose loss (a full disk, a closed pipe) changes nothing. Otherwise what it prints there is its
  // result: a write that failed fails it (exit 1), and standard output closed at the start is refused
  // before any work (exit 2).
  bool results_in_files = false;
};

struct Invocation {
  ProcessContext& process;
  const Command& command;
  po::variables_map options;
  std::map<std::string, std::string> sources;  // option -> "command line" | "config FILE" | "env VAR" | "default"
  std::map<std::string, std::vector<int>> config_lines;  // option -> the config file's lines that gave it
};

// Every command, in the order `longctx --help` lists them.
const std::vector<Command>& all_commands();

// Parses `args` (the words after the command name) for `command`. Throws UsageError naming the option
// and what is allowed. `declared` receives the full option description (for --help). `environment_names`
// are the variables set (process_environment_names()): a LONGCTX_* one that is no option of any command
// and no known setting is warned about.
Invocation parse_invocation(ProcessContext& process, const Command& command, const std::vector<std::string>& args,
                            const GetEnv& getenv, const std::vector<std::string>& environment_names,
                            po::options_description& declared);

// Where `option`'s value came from, for an error about it: " (from config file run.ini line 4)", " (from
// environment variable LONGCTX_SEQ_LEN)", or "" (the command line, the default, or no option: "").
std::string value_source(const Invocation& invocation, const std::string& option);
// A usage error's message, with where its option's value came from (value_source of e.option()).
std::string usage_message(const UsageError& e, const Invocation& invocation);

// Whether `option` holds its declared default, given or not (a config made from a checkpoint's /config
// gives every option), compared as the resolved config prints values: numbers by value (1e-3 is 0.001),
// text as it is (a list option's "0,0" is not "0").
bool holds_default(const Invocation& invocation, const std::string& option);
// `option`'s value as the resolved config prints it.
std::string value_text(const Invocation& invocation, const std::string& option);

// An on/off option's value word, in any case: 1 / true / yes / on, 0 / false / no / off; nullopt for others.
std::optional<bool> switch_word(const std::string& word);

// The environment variable that sets `option` ("model.layers" -> "LONGCTX_MODEL_LAYERS").
std::string env_name(const std::string& option);
// Edit distance (insertions, deletions, substitutions) between two names: for "did you mean".
size_t edit_distance(const std::string& a, const std::string& b);

// "2048,4K,1M" -> {2048, 4096, 1048576}; throws UsageError naming `option` when malformed.
std::vector<int64_t> parse_size_list(const std::string& option, const std::string& text);
int64_t parse_size(const std::string& option, const std::string& text);

// The resolved configuration, one "name = value  [source]" line per option.
std::string describe(const Invocation& invocation, const po::options_description& declared);
// The resolved value of each option that every rank must agree on, as text, by name: all but help,
// config, quiet and the per-rank thread counts (threads, train.threads).
std::vector<std::pair<std::string, std::string>> shared_values(const Invocation& invocation,
                                                               const po::options_description& declared);
// The resolved configuration as INI text (what a checkpoint's /config records).
std::string to_ini(const Invocation& invocation, const po::options_description& declared);

// --help's table: lines of kHelpLineLength characters, a description column of at least kHelpDescriptionLength.
constexpr unsigned kHelpLineLength = 100, kHelpDescriptionLength = 50;
std::string help_text(const Command& command, const po::options_description& declared);
// The options every command takes, with their defaults, as `COMMAND --help` prints them (for `longctx --help`).
std::string common_options_text();
// `command`'s own options, with their defaults, as its --help prints them (for `longctx bench --help`).
std::string command_options_text(const Command& command);

}  // namespace longctx::cli
