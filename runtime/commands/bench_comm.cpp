// `longctx bench comm`: the all-gather that sequence-parallel attention runs per spanning branch, timed
// on each communicator backend: mpi (host buffers), staged (device buffers through MPI and pinned host
// memory) and nccl (device buffers). Each rank contributes --bytes; per call it receives (P - 1) --bytes.
// Reports the median over --iters of the time per call, the payload received per rank per second, and
// for the staged path the device <-> host copy rate (its own cost, which also applies at P = 1).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <vector>

#include "comm/device_comm.hpp"
#include "comm/staged_communicator.hpp"
#include "runtime/commands/attention_options.hpp"
#include "runtime/commands/commands.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/memory.hpp"
#include "runtime/core/stats.hpp"

namespace longctx::cli {
namespace {

using Clock = std::chrono::steady_clock;

void declare(po::options_description& desc, po::positional_options_description&) {
  desc.add_options()
      ("comm", po::value<std::string>()->default_value("mpi"), "backend: mpi (host buffers), staged (device buffers through MPI), nccl (device buffers), or auto "
       "(what attention's --comm auto picks when every rank sees a GPU, else mpi)")
      ("bytes", po::value<std::string>()->default_value("64M"), "bytes each rank contributes per all-gather (K/M/G suffixes)")
      ("iters", po::value<int>()->default_value(10), "timed calls (the median is reported; at most 1000000)")
      ("warmup", po::value<int>()->default_value(2), "untimed calls first (at most 1000000)")
      ("json", po::bool_switch(), "print one JSON object instead of a table: comm, world_size, bytes_per_rank, iters, "
       "warmup, seconds (the slowest rank's median), received_bytes_per_s (what one rank receives from the others, "
       "per second), staged_copy_bytes_per_s (--comm staged: host <-> device copies per second; else null)");
}

// "8.12 us", "3.40 ms", "1.20 s" (before: "0.00 ms" for a small all-gather).
std::string seconds_text(double seconds) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(2);
  if (seconds < 1e-3) out << seconds * 1e6 << " us";
  else if (seconds < 1) out << seconds * 1e3 << " ms";
  else out << seconds << " s";
  return out.str();
}

// "4.76 kB/s", "850.00 MB/s", "12.30 GB/s" (decimal, as network rates are given). Down to B/s: 3 bytes in
// 630 us read "0.00 MB/s" (a slow all-gather on a busy machine).
std::string rate_text(double bytes_per_s) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(2);
  if (bytes_per_s < 1e3) out << bytes_per_s << " B/s";
  else if (bytes_per_s < 1e6) out << bytes_per_s / 1e3 << " kB/s";
  else if (bytes_per_s < 1e9) out << bytes_per_s / 1e6 << " MB/s";
  else out << bytes_per_s / 1e9 << " GB/s";
  return out.str();
}

// The options, checked in the config phase (all ranks agree: one message, exit 2); run() relies on it
// (main.cpp runs this first).
void check_options(const Invocation& invocation) {
  const auto& vm = invocation.options;
  const std::string backend = vm["comm"].as<std::string>();
  const int64_t bytes = parse_size("bytes", vm["bytes"].as<std::string>());
  const int iters = vm["iters"].as<int>(), warmup = vm["warmup"].as<int>();
  if (backend != "mpi" && backend != "staged" && backend != "nccl" && backend != "auto")
    throw UsageError("--comm: '" + backend + "' is not a backend; allowed: mpi, staged, nccl, auto", "comm");
  if (bytes < 1) throw UsageError("--bytes: must be >= 1, got " + std::to_string(bytes), "bytes");
  check_iterations(iters, warmup);
  const int P = invocation.process.world().size();
  const bool gpu = invocation.process.device() != "cpu";
  // Here, in the config phase: one message under mpirun, not one per rank and an MPI_Abort.
  if ((backend == "nccl" || backend == "staged") && !gpu)
    throw UsageError("--comm " + backend + " times device buffers, and no CUDA device is visible to this process "
                     "(--comm mpi times host buffers)", "comm");
  // Host buffers: mpi, staged (host staging), and auto on a rank without a GPU (then every rank uses mpi).
  if (backend == "mpi" || backend == "staged" || (backend == "auto" && !gpu))
    check_fits_in_memory("bench comm --bytes " + std::to_string(bytes) + " over " + count_of(P, "rank"),
                         "its send buffer and the gathered P x bytes", static_cast<double>(bytes) * (P + 1),
                         invocation.process.local_size(), 1, "use a smaller --bytes (more ranks need more)");
}

int run(Invocation& invocation) {
  const auto& vm = invocation.options;
  comm::Communicator& world = invocation.process.world();
  std::string backend = vm["comm"].as<std::string>();
  const int64_t bytes = parse_size("bytes", vm["bytes"].as<std::string>());
  const int iters = vm["iters"].as<int>(), warmup = vm["warmup"].as<int>();
  const bool json = vm["json"].as<bool>();
  const int P = world.size();
  const size_t n = static_cast<size_t>(bytes);

  std::unique_ptr<comm::Communicator> device_comm;
  std::shared_ptr<comm::MemoryCopier> copier;
  comm::Communicator* c = &world;
  std::vector<char> host_send, host_recv;
  std::shared_ptr<void> dev_send, dev_recv;
  char* send = nullptr;
  char* recv = nullptr;
  if (backend == "auto") {  // decided together: one rank without a GPU makes every rank use host buffers
    std::vector<int32_t> gpus{invocation.process.device() == "cpu" ? 0 : 1};
    world.all_reduce(Span<int32_t>(gpus), comm::ReduceOp::min);
    if (gpus[0] == 0) backend = "mpi";
  }
  if (backend == "mpi") {
    host_send.assign(n, 1);
    host_recv.assign(n * static_cast<size_t>(P), 0);
    send = host_send.data();
    recv = host_recv.data();
  } else {
    if (invocation.process.device() == "cpu")
      throw UsageError("--comm " + backend + " times device buffers, and no CUDA device is visible to this process "
                       "(--comm mpi times host buffers)");
    if (backend == "staged") {  // made here to keep the copier, whose byte counts are reported
      comm::select_device(invocation.process.local_rank());
      copier = comm::make_cuda_copier();
      device_comm = std::make_unique<comm::StagedCommunicator>(world, copier);
    } else {  // nccl or auto, as attention makes them (this selects the device too)
      device_comm = make_device_comm(invocation.process, backend);
    }
    c = device_comm.get();
    dev_send = comm::device_alloc(n);
    dev_recv = comm::device_alloc(n * static_cast<size_t>(P));
    send = static_cast<char*>(dev_send.get());
    recv = static_cast<char*>(dev_recv.get());
  }
  log::info("bench comm: all_gather of " + std::to_string(n) + " bytes per rank over " + std::to_string(P) +
            " rank(s), backend " + c->backend());

  std::vector<double> seconds;
  uint64_t copied = 0;
  for (int it = 0; it < warmup + iters; ++it) {
    world.barrier();
    if (copier) copier->bytes_to_host = copier->bytes_to_device = 0;
    const auto start = Clock::now();
    c->all_gather(Span<const char>(send, n), Span<char>(recv, n * static_cast<size_t>(P)));
    if (backend != "mpi") comm::device_synchronize();
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    if (it >= warmup) {
      seconds.push_back(s);
      if (copier) copied = copier->bytes_to_host + copier->bytes_to_device;
    }
  }
  std::vector<double> mine{median(seconds)}, all(static_cast<size_t>(P));
  world.all_gather(Span<const double>(mine), Span<double>(all));
  if (world.rank() != 0) return 0;
  const double slowest = *std::max_element(all.begin(), all.end());
  const double received = static_cast<double>(n) * (P - 1);
  const double recv_rate = received / slowest, copy_rate = static_cast<double>(copied) / slowest;
  if (json) {
    // The copy rate is null where nothing is staged (before: 0, as if the copies had stalled).
    std::cout << "{\"comm\": " << json_string(c->backend()) << ", \"world_size\": " << P << ", \"bytes_per_rank\": " << n
              << ", \"iters\": " << iters << ", \"warmup\": " << warmup << ", \"seconds\": " << slowest
              << ", \"received_bytes_per_s\": " << recv_rate << ", \"staged_copy_bytes_per_s\": ";
    if (copier) std::cout << copy_rate;
    else std::cout << "null";
    std::cout << "}\n";
  } else {
    std::cout << "all_gather on " << c->backend() << ", " << P << " rank(s), " << human_bytes(bytes)
              << " per rank: " << seconds_text(slowest) << " (median of " << iters << ", slowest rank), "
              << (P > 1 ? rate_text(recv_rate) + " received per rank" : std::string("nothing to receive on 1 rank"))
              << (copier ? ", staged copies " + rate_text(copy_rate) : std::string()) << "\n";
  }
  return 0;
}

}  // namespace

Command bench_comm_command() {
  return {"bench comm", "all-gather bandwidth of a communicator backend (mpi, staged device buffers, nccl, auto)", "",
          declare, run, check_options};
}

}  // namespace longctx::cli
