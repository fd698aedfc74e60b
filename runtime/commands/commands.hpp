// The subcommands, one file each; registry.cpp lists them.
#pragma once

#include <functional>
#include <string>

#include "runtime/cli/command.hpp"

namespace longctx::cli {

Command info_command();
Command attend_command();
Command bench_attention_command();
Command bench_comm_command();
Command ckpt_inspect_command();
Command ckpt_verify_command();
Command data_import_command();
Command data_inspect_command();
Command data_verify_command();
Command eval_command();
Command train_command();

// `train`'s SIGUSR1 / SIGTERM handlers (finish the step, checkpoint, exit 75). main() installs them before
// MPI_Init when the command is train, so a notice that arrives while the ranks start up (a requeued Slurm
// job's pre-time-limit signal, a preemption) is acted on at the first step instead of killing the rank.
void catch_train_stop_signals();

// Why train could not take the checkpoint `path`'s /config (`config`) for its model and data: its model.*,
// data.* and train.seed as train's command line, through train's parser and checks, as eval rebuilds them;
// "" where they pass. `ckpt verify`'s check that a resume and eval can load what it calls whole.
std::string train_config_problem(ProcessContext& process, const std::string& path, const std::string& config);

// Runs `work` on rank 0 only (errors printed there) and returns its exit code on every rank.
int run_on_rank0(Invocation& invocation, const std::function<int()>& work);

// The positional argument "path" (one, or a list) is required and not empty ('path =' in a config file, or
// ""): a UsageError said as the usage line says it, "longctx ckpt verify needs WHAT: longctx ckpt verify
// FILE|DIR..." (Boost would name "--path"). A Command::check of ckpt's and data's commands.
void require_positional_path(const Invocation& invocation, const std::string& what);

// The checkpoint a FILE|DIR argument names: a file as it is, a checkpoint.dir's the one its `latest` names
// (the one a resume loads; InputError when it has none). `ckpt inspect`'s and `eval`'s.
std::string checkpoint_in(const std::string& given);
// Whether the checkpoint `path` that the directory `given` named (""; checkpoint_in failed) is gone: a running
// train committed a newer one and removed it (checkpoint.keep), maybe as `latest` was read. Then a reader
// follows `latest` again.
bool rotated_away(const std::string& given, const std::string& path);
// read(checkpoint_in(given)), where an InputError that rotated_away explains follows `latest` again (up to
// `attempts` readings in all; else it is thrown); the path read. ckpt inspect's and eval's.
std::string read_checkpoint_in(const std::string& given, int attempts,
                               const std::function<void(const std::string& path)>& read);

// A size as a person reads it: "3 B", "12.5 KiB", "64.0 MiB", "2.0 GiB", "1.5 TiB", "16.0 PiB" (ckpt inspect,
// data inspect, bench comm; before: "17179869184.0 GiB").
std::string human_bytes(int64_t bytes);

// open(path, O_RDONLY | O_CLOEXEC) of a file that rank 0 has just made, maybe on another node: on ENOENT
// it lists the directory (a network file system may answer from a lookup cached before the file existed)
// and tries again, for up to `patience_seconds`. -1 and errno as open(2).
int open_made_elsewhere(const std::string& path, double patience_seconds);
// How long a rank looks again for rank 0's file: 5 s, or half of --comm-timeout when that is shorter
// (rank 0 waits that long for the others; looking longer made a refusal a timeout).
double patience_for(const comm::Communicator& world);
// Whether this rank sees rank 0's directory `dir`, for a Command::shared_inputs value: rank 0 makes a probe
// file there, every rank reads it (open_made_elsewhere), rank 0 removes it. Collective over `world`. A
// rank that runs in another working directory, or on a node whose `dir` is its own (node-local), reads
// another value than rank 0, so the run is refused before its collective writes went to two files (a
// hang). "(not checked: ...)" on every rank when rank 0 cannot make a file there.
std::string probe_directory(comm::Communicator& world, const std::string& dir);

// "host|device" per rank -> one message per pair of ranks that would share a non-CPU device.
std::vector<std::string> find_shared_devices(const std::vector<std::string>& host_device_per_rank);

}  // namespace longctx::cli
