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

// Runs `work` on rank 0 only (errors printed there) and returns its exit code on every rank.
int run_on_rank0(Invocation& invocation, const std::function<int()>& work);

// "host|device" per rank -> one message per pair of ranks that would share a non-CPU device.
std::vector<std::string> find_shared_devices(const std::vector<std::string>& host_device_per_rank);

}  // namespace longctx::cli
