// longctx: one binary, subcommands (../shared/spec/interfaces.md).
//
// Failure protocol. Parsing options and checking the launcher is the config phase: every rank does it,
// then all ranks agree on the worst exit code (one all-reduce), so a usage error ends every rank cleanly
// with exit 2 and nothing written. After that, a rank that throws aborts the whole job (MPI_Abort with
// the error's exit code): the others may be inside a collective and would otherwise wait forever; unless
// every rank throws a refusal (exit 2 or 3) within 2 s of the first (a quarter of --comm-timeout, if
// less), when they end together, said once (refused_on_every_rank).
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <map>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.hpp"
#include "io/atomic_output.hpp"
#include "io/durable.hpp"
#include "io/h5.hpp"
#include "runtime/cli/command.hpp"
#include "runtime/commands/commands.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/watchdog.hpp"
#include "runtime/process.hpp"
#include "runtime/version.hpp"

namespace longctx {
namespace {

// The whole help, or with `group` ("bench") that of the commands it starts.
std::string top_help(const std::string& group = "") {
  std::string out =
      "longctx: dilated attention over one sequence sharded across ranks (LongNet)\n\n"
      "usage: longctx COMMAND [options]      (under mpirun/srun: one process per rank)\n"
      "       longctx COMMAND --help         options of COMMAND, with defaults\n"
      "       longctx --version              version, git hash, backends, library versions\n\n"
      "commands:\n";
  for (const auto& command : cli::all_commands()) {
    if (!group.empty() && command.name.rfind(group + " ", 0) != 0) continue;
    std::string name = command.name;
    name.resize(std::max<size_t>(name.size(), 18), ' ');
    out += "  " + name + " " + command.summary + "\n";
  }
  // interfaces.md: `longctx --help` lists every option with its default; the commands' own are in theirs,
  // and `longctx bench --help` lists those of its commands (before: only the options every command takes).
  for (const auto& command : cli::all_commands())
    if (!group.empty() && command.name.rfind(group + " ", 0) == 0) out += "\n" + cli::command_options_text(command);
  out += "\n" + cli::common_options_text() +
         "\nOptions come from the command line, then a config file (--config FILE.ini, or LONGCTX_CONFIG; [section]\n"
         "key=value is --section.key), then LONGCTX_* environment variables (--model.layers <- LONGCTX_MODEL_LAYERS),\n"
         "in that order of precedence; COMMAND --help says more.\n";
  out += "\nexit codes: 0 ok, 1 internal failure, 2 usage/config error, 3 bad input file or checkpoint, 75 stopped "
         "on a signal after a checkpoint (requeue), 128 + the signal where no checkpoint.dir was given to save one\n";
  return out;
}

// The longest command name made of the leading words of args.
const cli::Command* find_command(const std::vector<std::string>& args, size_t* words) {
  const cli::Command* best = nullptr;
  for (const auto& command : cli::all_commands()) {
    std::vector<std::string> parts;
    std::string part;
    for (char c : command.name + " ") {
      if (c == ' ') {
        if (!part.empty()) parts.push_back(part);
        part.clear();
      } else {
        part += c;
      }
    }
    if (parts.size() > args.size()) continue;
    if (!std::equal(parts.begin(), parts.end(), args.begin())) continue;
    if (!best || parts.size() > *words) {
      best = &command;
      *words = parts.size();
    }
  }
  return best;
}

// Where a result would go nowhere (`>&-`): `what` prints there ("longctx eval prints its result", "--help
// prints"). A usage error: the command does nothing.
std::string closed_output_message(const std::string& what) {
  return "standard output is closed (`>&-`): " + what + " there; send it to a file or a pipe";
}

struct Parsed {
  std::optional<cli::Invocation> invocation;
  cli::po::options_description declared{"options", cli::kHelpLineLength, cli::kHelpDescriptionLength};
  bool help = false;
  bool version = false;
  std::string group;  // `longctx bench --help`: help on the commands of that group
};

void parse(ProcessContext& process, const std::vector<std::string>& args, Parsed& parsed) {
  if (args.empty()) {  // the help, then the error (one line, as every error)
    if (process.rank() == 0) std::fprintf(stderr, "%s\n", top_help().c_str());
    throw UsageError("no command given (the commands are above)");
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    // `longctx help attend` (or --help attend) is `longctx attend --help`; `help --help` is the top help.
    if (args.size() > 1 && args[1] != "--help" && args[1] != "-h" && args[1] != "help") {
      std::vector<std::string> command_help(args.begin() + 1, args.end());
      command_help.push_back("--help");
      parse(process, command_help, parsed);
      return;
    }
    parsed.help = true;
    return;
  }
  if (args[0] == "--version") {
    if (args.size() > 1) throw UsageError("--version takes nothing after it (got '" + args[1] + "'; see `longctx --help`)");
    parsed.version = true;
    return;
  }
  // What other tools take for their version (mpirun -V, nvcc --version, python -V): pointed to ours (before:
  // "'-V' before the command: options go after it").
  if (args[0] == "-V" || args[0] == "-v" || args[0] == "-version" || args[0] == "version")
    throw UsageError("'" + args[0] + "' is no option or command of longctx; its version: longctx --version");
  size_t words = 0;
  const cli::Command* command = find_command(args, &words);
  if (!command && args[0].size() > 1 && args[0][0] == '-') {
    // `longctx --quiet info`: options go after the command (before: "unknown command '--quiet'").
    std::string named;  // the command further on, if any (`--quiet bench attention`)
    for (size_t i = 1; i < args.size() && named.empty(); ++i)
      if (const cli::Command* later = find_command({args.begin() + static_cast<std::ptrdiff_t>(i), args.end()}, &words))
        named = later->name;
    throw UsageError("'" + args[0] + "' before the command: options go after it (longctx " +
                     (named.empty() ? std::string("COMMAND") : named) + " " + args[0] + " ...; see `longctx --help`)");
  }
  if (!command) {
    std::string names, group;  // group: the commands that start with args[0] ("bench" -> bench attention, ...)
    // `ckpt verfy`, `ckp inspect`: the two-word command within two edits of "args[0] args[1]"; else (`atend`,
    // `ckp`) the command or group within two edits of args[0], at most half of its letters (before: the list).
    const bool word_follows = args.size() > 1 && !args[1].empty() && args[1][0] != '-';
    const std::string given = word_follows ? args[0] + " " + args[1] : "";
    std::string guess, near;
    size_t best = 3, nearest = 3;
    for (const auto& c : cli::all_commands()) {
      names += (names.empty() ? "" : ", ") + c.name;
      const size_t blank = c.name.find(' ');
      if (c.name.rfind(args[0] + " ", 0) == 0) group += (group.empty() ? "" : ", ") + c.name;
      if (word_follows && blank != std::string::npos)
        if (const size_t d = cli::edit_distance(given, c.name); d < best) guess = c.name, best = d;
      const std::string first = c.name.substr(0, blank);
      if (const size_t d = cli::edit_distance(args[0], first); d < nearest && 2 * d <= first.size()) near = first, nearest = d;
    }
    if (!group.empty() && args.size() > 1 && (args[1] == "--help" || args[1] == "-h")) {
      parsed.help = true;
      parsed.group = args[0];
      return;
    }
    if (!guess.empty())
      throw UsageError("unknown command '" + given + "'; did you mean '" + guess + "'?" +
                       (group.empty() ? "" : " ('" + args[0] + "' has: " + group + ")"));
    if (!group.empty())  // `ckpt runs/ck`: a missing subcommand
      throw UsageError("'" + args[0] + "' needs a subcommand: " + group +
                       (word_follows ? " ('" + args[1] + "' is none of them)" : std::string()));
    throw UsageError("unknown command '" + args[0] + "'; " + (near.empty() ? "" : "did you mean '" + near + "'? ") +
                     "commands: " + names);
  }
  const std::vector<std::string> rest(args.begin() + static_cast<std::ptrdiff_t>(words), args.end());
  parsed.invocation.emplace(cli::parse_invocation(process, *command, rest, process_getenv,
                                                      process_environment_names(), parsed.declared));
  if (parsed.invocation->options.count("help")) {
    parsed.help = true;
    return;
  }
  check_launcher(process.launcher(), process.rank(), process.world_size());
  // Rank 0 prints the result: with nowhere to print it, the work would be lost (before: found at the end,
  // after an eval of hours; from the eval audit).
  if (process.rank() == 0 && !command->results_in_files && io::standard_output_was_closed())
    throw UsageError(closed_output_message("longctx " + command->name + " prints its result"));
  const double timeout = parsed.invocation->options["comm-timeout"].as<double>();
  process.world().set_timeout_seconds(timeout);
  if (process.world_size() > 1)  // collective file I/O has no timeout of its own: ends the job just the same
    watchdog::arm(timeout, [&process](const std::string& message) {
      log::error(message);
      process.abort(static_cast<int>(ExitCode::internal));
    });
  if (command->check) command->check(*parsed.invocation);
}

// What every rank must have alike, as (what, value) pairs, in two stages: first the command and each
// option but the per-rank ones (cli::shared_values); once those agree, what the command says of its inputs
// (Command::shared_inputs), whose collectives (a directory probe) depend on the command and its options.
// An option that differs (an environment variable or a config file that differs between nodes) gave a
// silently mixed result (causal rows on one rank only), a crash inside MPI or a hang; so did an input that
// differs (a relative path from another working directory, a node-local copy). (Before, both in one stage:
// dump.activations on some ranks only, or attend on one rank and another command on the others, took the
// ranks into different collectives before the comparison: MPI_ERR_TRUNCATE, or a hang.)
std::vector<std::pair<std::string, std::string>> shared_state(const cli::Invocation& invocation,
                                                              const cli::po::options_description& declared,
                                                              int stage) {
  std::vector<std::pair<std::string, std::string>> state;
  if (stage == 0) {
    state.emplace_back("the command", "longctx " + invocation.command.name);
    for (auto& [name, value] : cli::shared_values(invocation, declared)) state.emplace_back(name, value);
  } else if (invocation.command.shared_inputs) {
    for (auto& [what, value] : invocation.command.shared_inputs(invocation)) state.emplace_back(what, value);
  }
  return state;
}

// Rank 0's `state` is sent to every rank, which compares its own: what differs here ("what = value here,
// value on rank 0; ..."), or "" when nothing does.
std::string differences_from_rank0(comm::Communicator& world, const std::vector<std::pair<std::string, std::string>>& state,
                                   const cli::Invocation& invocation) {
  std::string mine;
  for (const auto& [what, value] : state) mine += what + '\0' + value + '\0';
  const std::string bytes = comm::broadcast_text(world, mine, 0);
  if (world.rank() == 0) return "";
  std::map<std::string, std::string> rank0;
  std::string fields[2];
  int field = 0;
  for (const char byte : bytes) {
    if (byte != 0) {
      fields[field] += byte;
      continue;
    }
    if (++field == 2) {
      rank0[fields[0]] = fields[1];
      fields[0].clear(), fields[1].clear();
      field = 0;
    }
  }
  const auto shown = [](const std::string& value) { return value.empty() ? std::string("(empty)") : value; };
  std::string differs;
  int listed = 0;
  const auto add = [&](const std::string& text) {
    if (++listed <= 4) differs += (differs.empty() ? "" : "; ") + text;
  };
  // Another command: its options are of course others (before: listed too, "input = qkv.h5 here, not set
  // on rank 0; ...").
  if (const auto command = rank0.find("the command");
      !state.empty() && state[0].first == "the command" && command != rank0.end() && command->second != state[0].second)
    return "the command = " + state[0].second + " here, " + command->second + " on rank 0";
  std::set<std::string> here;
  for (const auto& [what, value] : state) {
    here.insert(what);
    const auto there = rank0.find(what);
    if (there != rank0.end() && there->second == value) continue;
    add(what + " = " + shown(value) + " here" +
        (invocation.options.count(what) ? cli::value_source(invocation, what) : std::string()) + ", " +
        (there == rank0.end() ? "not set" : shown(there->second)) + " on rank 0");
  }
  // Both ways: an option of rank 0 that this rank does not have at all (one without a default, such as
  // attend's --report, set on rank 0 only, hung in the report's all-gather).
  for (const auto& [what, value] : rank0)
    if (!here.count(what)) add(what + " not set here, " + shown(value) + " on rank 0");
  if (listed > 4) differs += "; and " + std::to_string(listed - 4) + " more";
  return differs;
}

// A usage error's message, with where its option's value came from when that was not the command line
// (a config file, an environment variable): found in the config phase or by the run.
std::string usage_message(const UsageError& e, const cli::Invocation* invocation) {
  return invocation ? cli::usage_message(e, *invocation) : std::string(e.what());
}

int run(ProcessContext& process, const std::vector<std::string>& args) {
  Parsed parsed;
  // The config phase ends with every rank agreeing on the outcome: each rank's exit code and message
  // (0 and "" when it passed) are all-reduced; the error of rank 0 is printed, or where rank 0 had none,
  // that of each rank that failed, naming it. Returns the agreed code.
  const std::string where = "rank " + std::to_string(process.rank()) + " of " + std::to_string(process.world_size()) +
                            " (host " + process.host() + ")";
  const auto agree = [&](int code, const std::string& message) {
    std::vector<int> codes{code, process.rank() == 0 ? code : 0};
    if (process.world_size() > 1) process.world().all_reduce(Span<int>(codes), comm::ReduceOp::max);
    if (code != 0 && process.rank() == 0) std::fprintf(stderr, "longctx: error: %s\n", log::printable(message).c_str());
    if (code != 0 && process.rank() != 0 && codes[1] == 0)
      std::fprintf(stderr, "longctx: error on %s: %s\n", where.c_str(), log::printable(message).c_str());
    return codes[0];
  };
  // Runs `phase`, catching the error it throws: (its exit code, its message).
  const auto attempt = [&](const std::function<void()>& phase) {
    try {
      phase();
    } catch (const UsageError& e) {
      return std::pair<int, std::string>(static_cast<int>(e.code()), usage_message(e, parsed.invocation ? &*parsed.invocation : nullptr));
    } catch (const Error& e) {
      return std::pair<int, std::string>(static_cast<int>(e.code()), e.what());
    }
    return std::pair<int, std::string>(0, "");
  };
  // A refusal from here on: what a rank's `check` made goes again (nothing written).
  const auto refused = [&](int agreed) {
    if (parsed.invocation && parsed.invocation->command.undo_check) parsed.invocation->command.undo_check();
    return agreed;
  };
  const auto [code, message] = attempt([&] { parse(process, args, parsed); });
  if (const int agreed = agree(code, message); agreed != 0) return refused(agreed);
  // Every rank must be asked the same kind of thing: help or the version on some ranks and a command on the
  // others took them into different collectives (before: MPI_ERR_TRUNCATE at 2 ranks, a hang at 3).
  if (process.world_size() > 1) {
    const int mine = parsed.version ? 2 : parsed.help ? 1 : 0;
    std::vector<int> modes(static_cast<size_t>(process.world_size()), 0);
    process.world().all_gather(Span<const int>(&mine, 1), Span<int>(modes));
    std::string ranks;
    for (size_t r = 1; r < modes.size(); ++r)
      if (modes[r] != modes[0]) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
    if (!ranks.empty()) {
      static const char* const kAsked[] = {"a command", "--help", "--version"};
      if (process.rank() == 0)
        std::fprintf(stderr,
                     "longctx: error: rank(s) %s were not asked for what rank 0 was (%s): every rank must get the same "
                     "command line\n",
                     ranks.c_str(), kAsked[mine]);
      else if (modes[static_cast<size_t>(process.rank())] != modes[0])
        std::fprintf(stderr, "longctx: error on %s: asked for %s, rank 0 for %s\n", where.c_str(), kAsked[mine],
                     kAsked[modes[0]]);
      return refused(static_cast<int>(ExitCode::usage));
    }
  }
  // Then every rank must have what rank 0 has (a broadcast a stage), once every rank passed: the inputs' side
  // may read what rank 0 wrote in its checks (checkpoint.dir's lock file).
  for (int stage = 0; stage < 2 && parsed.invocation && !parsed.help && process.world_size() > 1; ++stage) {
    std::vector<std::pair<std::string, std::string>> state;
    const auto [state_code, state_message] =
        attempt([&] { state = shared_state(*parsed.invocation, parsed.declared, stage); });
    if (const int agreed = agree(state_code, state_message); agreed != 0) return refused(agreed);
    const std::string differs = differences_from_rank0(process.world(), state, *parsed.invocation);
    std::vector<int> flags(static_cast<size_t>(process.world_size()), 0), mine{differs.empty() ? 0 : 1};
    process.world().all_gather(Span<const int>(mine), Span<int>(flags));
    std::string ranks;
    for (size_t r = 0; r < flags.size(); ++r)
      if (flags[r]) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
    if (!ranks.empty()) {
      if (!differs.empty())
        std::fprintf(stderr, "longctx: error on %s: not as on rank 0: %s\n", where.c_str(), log::printable(differs).c_str());
      if (process.rank() == 0)
        std::fprintf(stderr,
                     "longctx: error: rank(s) %s differ from rank 0 in their options or inputs (each says how): every "
                     "rank must get the same command line, config file and LONGCTX_* variables, and see the same "
                     "files (a node-local path, or a relative one from another working directory?)\n",
                     ranks.c_str());
      return refused(static_cast<int>(ExitCode::usage));
    }
  }
  // What a command prints to standard output is its result (info's lines, bench's JSON, ckpt inspect, the
  // help): a write that failed there (a full disk, stdout closed) fails it (before: exit 0, the result lost
  // without a word).
  const auto written = [](int exit_code) {
    const std::string lost = io::check_standard_output();
    if (lost.empty()) return exit_code;
    // Also where the command failed: its report of what failed (verify's damaged dataset) was printed there
    // (before: exit 3 without a word).
    std::fprintf(stderr, "longctx: error: what this rank printed to standard output is lost: %s\n", lost.c_str());
    return exit_code != 0 ? exit_code : static_cast<int>(ExitCode::internal);
  };
  if (process.rank() != 0 && (parsed.help || parsed.version)) return 0;
  // As a command's result: nowhere to print it is a usage error (before: exit 1, "lost", for these alone).
  if ((parsed.help || parsed.version) && io::standard_output_was_closed()) {
    std::fprintf(stderr, "longctx: error: %s\n",
                 closed_output_message(parsed.version ? "--version prints" : "--help prints").c_str());
    return static_cast<int>(ExitCode::usage);
  }
  if (parsed.version) {
    std::cout << version_text();
    return written(0);
  }
  if (parsed.help) {
    std::cout << (parsed.invocation ? cli::help_text(parsed.invocation->command, parsed.declared) : top_help(parsed.group));
    return written(0);
  }
  cli::Invocation& invocation = *parsed.invocation;
  if (process.rank() == 0 && !invocation.options["quiet"].as<bool>())
    std::fprintf(stderr, "%s", log::printable(cli::describe(invocation, parsed.declared), "\t\n").c_str());
  try {
    const int exit_code = invocation.command.run(invocation);
    return invocation.command.results_in_files ? exit_code : written(exit_code);
  } catch (const UsageError& e) {
    // One about an option's value found by the run (a train.steps below latest's step) says where the
    // value came from too, as one from the config phase does.
    if (e.option().empty()) throw;
    throw UsageError(usage_message(e, &invocation));
  }
}

}  // namespace
}  // namespace longctx

namespace longctx {
namespace {

ProcessContext* g_process = nullptr;  // for the terminate handler
MPI_Comm g_refusals = MPI_COMM_NULL;  // the world's duplicate for refused_on_every_rank alone

// Whether `request` completes before `deadline` (polled: MPI gives these no timeout).
bool completes_by(MPI_Request& request, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    int done = 0;
    if (MPI_Test(&request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return false;
    if (done) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// A refusal (exit 2 or 3) found in the run by every rank alike (a resume's train.steps below latest's step,
// an input file every rank reads): where every rank meets one within kRefusalSeconds of the first, they agree
// on it over their own communicator, rank 0 says it once (and each rank whose message differs, its own),
// and the job ends with the highest code, without MPI_Abort (before: every rank's message, then Open MPI's
// MPI_ABORT banner). False where a rank did not (it fails otherwise, or not at all): the caller aborts the
// job, as before, that much later. (At most a quarter of --comm-timeout: a rank waiting on this one in a
// collective would time out first and end the job with exit 1.)
constexpr double kRefusalSeconds = 2;
bool refused_on_every_rank(int& code, const std::string& message, int rank, int size, double comm_timeout) {
  if (g_refusals == MPI_COMM_NULL) return false;
  const double seconds = std::min(kRefusalSeconds, comm_timeout / 4);
  const auto deadline = [seconds] {
    return std::chrono::steady_clock::now() +
           std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds));
  };
  MPI_Request request = MPI_REQUEST_NULL;
  if (MPI_Ibarrier(g_refusals, &request) != MPI_SUCCESS || !completes_by(request, deadline())) return false;
  const std::string said = message.substr(0, 4096);
  const int mine[2] = {code, static_cast<int>(said.size())};
  std::vector<int> all(2 * static_cast<size_t>(size));
  if (MPI_Iallgather(mine, 2, MPI_INT, all.data(), 2, MPI_INT, g_refusals, &request) != MPI_SUCCESS ||
      !completes_by(request, deadline()))
    return false;
  std::vector<int> lengths(static_cast<size_t>(size)), offsets(static_cast<size_t>(size));
  int total = 0;
  for (int r = 0; r < size; ++r) {
    code = std::max(code, all[2 * static_cast<size_t>(r)]);
    lengths[static_cast<size_t>(r)] = all[2 * static_cast<size_t>(r) + 1];
    offsets[static_cast<size_t>(r)] = total;
    total += lengths[static_cast<size_t>(r)];
  }
  std::string messages(static_cast<size_t>(total), '\0');
  if (MPI_Igatherv(said.data(), static_cast<int>(said.size()), MPI_CHAR, messages.data(), lengths.data(),
                   offsets.data(), MPI_CHAR, 0, g_refusals, &request) != MPI_SUCCESS ||
      !completes_by(request, deadline()))
    return false;
  if (rank == 0) {
    std::fprintf(stderr, "longctx: error: %s\n", log::printable(said).c_str());
    for (int r = 1; r < size; ++r) {
      const std::string theirs = messages.substr(static_cast<size_t>(offsets[static_cast<size_t>(r)]),
                                                 static_cast<size_t>(lengths[static_cast<size_t>(r)]));
      if (theirs != said) std::fprintf(stderr, "longctx: error on rank %d: %s\n", r, log::printable(theirs).c_str());
    }
  }
  return true;
}

// The error that ends the job, on standard error: under mpirun a rank's own failure names its rank
// ([longctx error r1] ...); in a job of one process it reads as the config phase's errors do (before:
// "[longctx error r0]" for an error of the run, "longctx: error:" for one of its options).
void say_ending_error(const std::string& message) {
  log::ending_error(message, g_process ? g_process->world_size() : 1);
}

// std::terminate: an exception that C++ cannot unwind (out of an OpenMP region, a noexcept function or a
// thread) is said as main() says a thrown one, the job's claimed temporary files are removed, and the job
// ends with exit 1 as for any internal failure, every rank with it (before: libstdc++'s "terminate called
// after throwing ..." and SIGABRT, which left a .tmp behind and mpirun's core-dump page).
// g_process is null before MPI is up and from the end of main() on (MPI finalized): then this process
// ends alone.
[[noreturn]] void end_on_terminate() noexcept {
  static std::atomic<bool> entered{false};
  thread_local bool entered_here = false;
  if (entered_here) {  // the handler itself failed (out of memory building its message): end plainly
    io::remove_claims_before_abort();
    std::_Exit(static_cast<int>(ExitCode::internal));
  }
  entered_here = true;
  if (entered.exchange(true))  // another thread ends the process meanwhile
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  try {
    std::string message = "std::terminate without an exception in flight";
    if (const std::exception_ptr failure = std::current_exception()) {
      try {
        message = exit_of(failure).second;
      } catch (...) {
        message = "an exception that is no std::exception";
      }
    }
    say_ending_error(message + " (it could not be unwound: std::terminate; the job ends)");
  } catch (...) {
    std::fputs("longctx: error: std::terminate (its message could not be made); the job ends\n", stderr);
  }
  std::fflush(nullptr);
  if (g_process && g_process->world_size() > 1) g_process->abort(static_cast<int>(ExitCode::internal));
  io::remove_claims_before_abort();
  std::_Exit(static_cast<int>(ExitCode::internal));
}

}  // namespace
}  // namespace longctx

int main(int argc, char** argv) {
  using namespace longctx;
  io::occupy_closed_standard_streams();  // before MPI_Init, whose pipes would take their numbers
  std::optional<ProcessContext> process;
  if (argc > 1 && std::string(argv[1]) == "train") cli::catch_train_stop_signals();  // before MPI_Init's seconds
  try {
    process.emplace(&argc, &argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "longctx: error: %s\n", log::printable(e.what()).c_str());
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "longctx: error: cannot start: %s\n", e.what());
    return static_cast<int>(ExitCode::internal);
  }
  g_process = &*process;
  std::set_terminate(end_on_terminate);
  if (process->world_size() > 1) MPI_Comm_dup(MPI_COMM_WORLD, &g_refusals);
  const std::vector<std::string> args(argv + 1, argv + argc);
  int code = 0;
  bool failed = true;  // a rank that throws ends every rank (the others may wait in a collective)
  try {
    code = run(*process, args);
    // Fault injection for the no-hang test of the end: this rank stops after its last collective.
    stall_if_named("LONGCTX_FAULT_STALL_END_RANK", process->rank());
    // MPI_Finalize has no timeout (Open MPI waits there for every rank): a rank stopped after its last
    // collective (a hung file system, SIGSTOP) left the others there forever. They meet here first, timed,
    // so such a rank is named by the roll call and the job ends after --comm-timeout.
    if (process->world_size() > 1) {
      try {
        process->world().barrier();
      } catch (const comm::CommTimeout& e) {
        // The job ends with the code it had (75 after a checkpointed stop: requeue), or 1 for a success.
        log::error(std::string("at the end of the job (") +
                   (code == 0 ? "this rank's work is done; its outputs are written"
                              : "this rank ended with exit code " + std::to_string(code)) +
                   "): " + e.what());
        process->abort(code != 0 ? code : static_cast<int>(ExitCode::internal));
      }
    }
    failed = false;
  } catch (const std::exception&) {
    const auto [exit_code, message] = exit_of(std::current_exception());
    code = exit_code;
    if ((code == static_cast<int>(ExitCode::usage) || code == static_cast<int>(ExitCode::bad_input)) &&
        process->world_size() > 1 && refused_on_every_rank(code, message, process->rank(), process->world_size(),
                                                         process->world().timeout_seconds()))
      failed = false;
    else
      say_ending_error(message);
  }
  if (failed && process->world_size() > 1) process->abort(code);
  if (io::h5::file_close_failed()) {
    // A file HDF5 could not close (a full disk) would crash its shutdown in MPI_Finalize: the error is
    // reported, the temporary removed; end without it rather than with a segfault.
    std::fflush(nullptr);
    if (process->world_size() > 1) process->abort(code ? code : static_cast<int>(ExitCode::internal));
    std::_Exit(code ? code : static_cast<int>(ExitCode::internal));
  }
  g_process = nullptr;  // MPI_Finalize comes next, in ~ProcessContext: a std::terminate from here on ends this process alone
  return code;
}
