// Communicators for device (GPU) buffers. This header includes no CUDA or NCCL header; in a build
// without CUDA every entry point throws UsageError naming the option.
//
// NCCL: libnccl.so.2 is loaded at run time (dlopen), so the binary runs where NCCL is absent and uses
// whichever NCCL 2.x the machine has (LD_LIBRARY_PATH, or the one PyTorch's wheels bring). The
// communicator is bootstrapped over a host communicator (MPI): rank 0's ncclUniqueId is broadcast, and
// before that every rank's GPU is compared (host + uuid) so two ranks on one GPU fail with a clear
// error instead of NCCL's. sub() bootstraps a new NCCL communicator over the host communicator's
// sub-communicator, so it is collective over the sub-range only, like the host one.
//
// Ordering and waiting: a call starts after all work issued so far on the device's legacy default
// stream, runs on the communicator's own stream, and a blocking call (or wait()) returns when it has
// completed. Waits poll the stream and NCCL's asynchronous error state: past the communicator's timeout
// (or on an NCCL error) the NCCL communicator is aborted and CommTimeout / InternalError is thrown, so a
// dead or diverged peer fails the job instead of hanging it. Point-to-point tags must be 0 (NCCL matches
// sends and receives by order).
#pragma once

#include <memory>
#include <string>

#include "comm/communicator.hpp"
#include "comm/staged_communicator.hpp"

namespace longctx::comm {

// Makes GPU (local_rank mod visible devices) current and returns its index; UsageError without a GPU.
int select_device(int local_rank);
// `bytes` of device memory on the current device (freed with the last handle); UsageError without CUDA.
std::shared_ptr<void> device_alloc(size_t bytes);
void device_synchronize();

// cudaMemcpy through pinned host buffers (cudaMallocHost).
std::shared_ptr<MemoryCopier> make_cuda_copier();

// Whether libnccl.so.2 can be loaded here, and its version ("2.28.9"), or why not.
bool nccl_available(std::string* version_or_reason = nullptr);

// An NCCL communicator over the ranks of `host`, one per rank, on CUDA device `device` (made current).
// UsageError when NCCL cannot be loaded or two ranks of one host would share a GPU.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host, int device);

}  // namespace longctx::comm
