// The subcommands, one file each; registry.cpp lists them.
#pragma once

#include "runtime/cli/command.hpp"

namespace longctx::cli {

Command info_command();

// "host|device" per rank -> one message per pair of ranks that would share a non-CPU device.
std::vector<std::string> find_shared_devices(const std::vector<std::string>& host_device_per_rank);

}  // namespace longctx::cli
