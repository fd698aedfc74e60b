// The subcommands, one file each; registry.cpp lists them.
#pragma once

#include "runtime/cli/command.hpp"

namespace longctx::cli {

Command info_command();
Command attend_command();
Command bench_attention_command();
Command bench_comm_command();
Command ckpt_inspect_command();
Command ckpt_verify_command();
Command data_import_command();
Command train_command();

// `train`'s SIGUSR1 / SIGTERM handlers (finish the step, checkpoint, exit 75). main() installs them before
// MPI_Init when the command is train, so a notice that arrives while the ranks start up (a requeued Slurm
// job's pre-time-limit signal, a preemption) is acted on at the first step instead of killing the rank.
void catch_train_stop_signals();

// Runs `work` on rank 0 only (errors printed there) and returns its exit code on every rank.
int run_on_rank0(Invocation& invocation, const std::function<int()>& work);

// "host|device" per rank -> one message per pair of ranks that would share a non-CPU device.
std::vector<std::string> find_shared_devices(const std::vector<std::string>& host_device_per_rank);

}  // namespace longctx::cli
