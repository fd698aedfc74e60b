// Options shared by `attend` and `bench attention`: the schedule, masking, offsets, scale, backend.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "attention/attention.hpp"
#include "runtime/cli/command.hpp"

namespace longctx::cli {

// Which command declares them: their help differs where the commands do (bench attention times one GPU).
enum class AttentionCommand { attend, bench };
void declare_attention_options(po::options_description& desc, const std::string& default_segments,
                               const std::string& default_dilations, AttentionCommand command);

// Validated parameters (UsageError naming the option otherwise). Also applies --threads.
AttentionParams attention_params(const Invocation& invocation);

// --device, --dtype and --comm, validated: cpu takes fp32 only; cuda needs the backend compiled in, and
// bf16 / fp16 on several ranks. UsageError naming the option otherwise. Whether a GPU is visible is
// checked when the backend is made.
struct DeviceChoice {
  std::string device = "cpu";
  Dtype dtype = Dtype::fp32;
  std::string comm = "auto";
};
DeviceChoice attention_device(const Invocation& invocation);

// The communicator that moves this rank's device buffers (--comm: auto, nccl, staged), on GPU
// local_rank mod the visible devices (made current).
std::unique_ptr<comm::Communicator> make_device_comm(ProcessContext& process, const std::string& choice);

// The MPI communicator behind the world communicator (for parallel HDF5).
MPI_Comm mpi_handle(comm::Communicator& comm);

// --iters >= 1 and --warmup >= 0 of the bench commands, each at most 1e6 (warmup + iters must not
// overflow int, nor run for ever); UsageError naming them otherwise.
void check_iterations(int iters, int warmup);

// attend's and bench attention's memory check (check_fits_in_memory) on the host: this rank's rows of q, k,
// v, o (+ do, dq, dk, dv with the backward) in float32, of `global`'s shape split over `ranks`, plus the
// attention's own buffers (attention_workspace_bytes: lse, spanning segments' K / V, threads' tiles; the
// backward reuses the forward's gathered rows; `on_gpu`: none of them, they are on the device).
void check_rows_fit_in_memory(const std::string& what, const AttentionParams& params, const AttentionDims& global,
                              int rank, int ranks, bool backward, int ranks_on_node, bool on_gpu = false);

// "1 rank", "4 ranks": a count and its noun, for messages.
std::string count_of(int64_t n, const std::string& noun);
// `value` with `digits` digits after the point: "0.943".
std::string fixed(double value, int digits);

// One JSON string literal: `text`'s UTF-8 as it is, control characters and bytes that are no UTF-8 (a
// path's Latin-1 name) as \u00XX, so the JSON is valid whatever the bytes.
std::string json_string(const std::string& text);
// true / false.
inline std::string json_bool(bool value) { return value ? "true" : "false"; }
// A count held in a double (pairs, FLOPs) as a JSON integer: every digit, no exponent ("%.0f").
std::string json_count(double count);
std::string json_schedule(const Schedule& schedule);
uint64_t peak_rss_bytes();

}  // namespace longctx::cli
