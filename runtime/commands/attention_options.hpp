// Options shared by `attend` and `bench attention`: the schedule, masking, offsets, scale, backend.
#pragma once

#include <mpi.h>

#include <string>

#include "attention/attention.hpp"
#include "runtime/cli/command.hpp"

namespace longctx::cli {

void declare_attention_options(po::options_description& desc, const std::string& default_segments,
                               const std::string& default_dilations);

// Validated parameters (UsageError naming the option otherwise). Also applies --threads.
AttentionParams attention_params(const Invocation& invocation);

// --device and --dtype, validated: cpu takes fp32 only; cuda needs the backend compiled in and (for now)
// one rank. UsageError naming the option otherwise. Whether a GPU is visible is checked by the backend.
struct DeviceChoice {
  std::string device = "cpu";
  Dtype dtype = Dtype::fp32;
};
DeviceChoice attention_device(const Invocation& invocation);

// The MPI communicator behind the world communicator (for parallel HDF5).
MPI_Comm mpi_handle(comm::Communicator& comm);

// One JSON string literal.
std::string json_string(const std::string& text);
std::string json_schedule(const Schedule& schedule);
uint64_t peak_rss_bytes();

}  // namespace longctx::cli
