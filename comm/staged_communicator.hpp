// Device buffers through a host communicator (MPI), staged through host memory: the way GPU ranks talk
// when NCCL cannot be used (two ranks on one GPU, a machine without NCCL), and the distributed GPU
// path's fallback. Every call copies its device inputs to host staging buffers, runs the same call of
// the host communicator on them, and copies the results back to the device buffers, so the interface,
// the byte counters (shared with the host communicator: staged traffic is counted once) and the
// timeouts are the host communicator's. Non-blocking calls copy in at the start and copy out when the
// request completes (wait, or a test() that sees it done).
//
// How device memory reaches the host is a MemoryCopier: CUDA copies through pinned memory on GPUs
// (comm/cuda_copier.hpp); HostCopier (memcpy, "device" memory is host memory) for tests and CPU runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "comm/communicator.hpp"

namespace longctx::comm {

class MemoryCopier {
 public:
  virtual ~MemoryCopier() = default;
  virtual std::string name() const = 0;
  virtual void to_host(void* host, const void* device, size_t bytes) = 0;
  virtual void to_device(void* device, const void* host, size_t bytes) = 0;
  // Host memory for staging (pinned where that makes copies faster).
  virtual void* allocate_host(size_t bytes) = 0;
  virtual void free_host(void* host) = 0;
  // Bytes moved each way so far (the staged path's own traffic, for bandwidth figures).
  uint64_t bytes_to_host = 0;
  uint64_t bytes_to_device = 0;
};

// memcpy: "device" pointers are host pointers.
class HostCopier : public MemoryCopier {
 public:
  std::string name() const override { return "host"; }
  void to_host(void* host, const void* device, size_t bytes) override;
  void to_device(void* device, const void* host, size_t bytes) override;
  void* allocate_host(size_t bytes) override;
  void free_host(void* host) override;
};

// Reusable host staging buffers: acquire() hands out a free buffer of at least `bytes` (or allocates
// one), release() puts it back. Freed with the pool, except those given up by forget().
class StagingPool {
 public:
  explicit StagingPool(std::shared_ptr<MemoryCopier> copier) : copier_(std::move(copier)) {}
  ~StagingPool();
  StagingPool(const StagingPool&) = delete;
  StagingPool& operator=(const StagingPool&) = delete;

  void* acquire(size_t bytes);
  void release(void* buffer);
  // `buffer` (of acquire) is neither reused nor freed, ever: a call that failed may still write it.
  void forget(void* buffer);
  MemoryCopier& copier() { return *copier_; }

 private:
  std::shared_ptr<MemoryCopier> copier_;
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;  // size -> buffer
  std::map<void*, size_t> sizes_;      // every buffer this pool allocated and frees
};

class StagedCommunicator : public Communicator {
 public:
  // Stages through `host` (not owned; it must outlive this object) with `copier`.
  StagedCommunicator(Communicator& host, std::shared_ptr<MemoryCopier> copier);

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  std::string backend() const override { return host_.backend() + "+staged(" + pool_->copier().name() + ")"; }
  bool testable_while_threads_compute() const override { return host_.testable_while_threads_compute(); }
  void barrier() override { host_.barrier(); }
  std::unique_ptr<Communicator> sub(int first, int count) override;
  [[noreturn]] void abort(int exit_code) override;
  MemoryCopier& copier() { return pool_->copier(); }

 protected:
  Request iall_gather_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                          DataType type) override;
  Request iall_gatherv_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                           const std::vector<size_t>& counts, DataType type) override;
  Request ireduce_scatter_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                              const std::vector<size_t>& counts, DataType type, ReduceOp op) override;
  Request iall_reduce_raw(void* data, size_t count, DataType type, ReduceOp op) override;
  Request ibroadcast_raw(void* data, size_t count, DataType type, int root) override;
  Request isend_raw(const void* data, size_t count, DataType type, int dest, int tag) override;
  Request irecv_raw(void* data, size_t count, DataType type, int source, int tag) override;

 private:
  StagedCommunicator(std::unique_ptr<Communicator> owned, std::shared_ptr<StagingPool> pool);
  class Staging;  // the host buffers of one call

  std::unique_ptr<Communicator> owned_;  // set for sub-communicators
  Communicator& host_;
  std::shared_ptr<StagingPool> pool_;    // shared with sub-communicators
};

}  // namespace longctx::comm
