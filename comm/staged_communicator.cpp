#include "comm/staged_communicator.hpp"

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

namespace longctx::comm {

void HostCopier::to_host(void* host, const void* device, size_t bytes) {
  if (bytes) std::memcpy(host, device, bytes);
  bytes_to_host += bytes;
}
void HostCopier::to_device(void* device, const void* host, size_t bytes) {
  if (bytes) std::memcpy(device, host, bytes);
  bytes_to_device += bytes;
}
void* HostCopier::allocate_host(size_t bytes) { return ::operator new(bytes); }
void HostCopier::free_host(void* host) { ::operator delete(host); }

StagingPool::~StagingPool() {
  for (const auto& [buffer, bytes] : sizes_) copier_->free_host(buffer);
}

void* StagingPool::acquire(size_t bytes) {
  if (bytes == 0) return nullptr;
  std::lock_guard<std::mutex> lock(mutex_);
  const auto fit = free_.lower_bound(bytes);
  if (fit != free_.end() && fit->first <= 2 * bytes) {  // reuse, but don't tie up a much larger one
    void* buffer = fit->second;
    free_.erase(fit);
    return buffer;
  }
  void* buffer = copier_->allocate_host(bytes);
  sizes_[buffer] = bytes;
  return buffer;
}

void StagingPool::release(void* buffer) {
  if (!buffer) return;
  std::lock_guard<std::mutex> lock(mutex_);
  free_.emplace(sizes_.at(buffer), buffer);
}

void StagingPool::forget(void* buffer) {
  if (!buffer) return;
  std::lock_guard<std::mutex> lock(mutex_);
  sizes_.erase(buffer);
}

// The host buffers of one call: inputs copied in when staged, outputs copied back by finish(), all
// returned to the pool at the end (kept out of it if the call failed: the host library may still
// write them; and never freed, also not with the pool, which the unwinding after a timeout destroys
// before the job's abort: before, pinned memory was unmapped under an abandoned collective; from a review).
class StagedCommunicator::Staging {
 public:
  explicit Staging(StagingPool& pool) : pool_(pool) {}
  ~Staging() {
    for (void* buffer : buffers_) {
      if (abandoned_) pool_.forget(buffer);
      else pool_.release(buffer);
    }
  }
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;

  // A host copy of `bytes` at device pointer `device`.
  void* in(const void* device, size_t bytes) {
    void* host = take(bytes);
    pool_.copier().to_host(host, device, bytes);
    return host;
  }
  // A host buffer whose contents finish() copies to `device`.
  void* out(void* device, size_t bytes) {
    void* host = take(bytes);
    outputs_.push_back({device, host, bytes});
    return host;
  }
  // Both: in-place calls (all_reduce, broadcast).
  void* in_out(void* device, size_t bytes) {
    void* host = in(device, bytes);
    outputs_.push_back({device, host, bytes});
    return host;
  }
  void finish() {
    for (const Output& o : outputs_) pool_.copier().to_device(o.device, o.host, o.bytes);
    outputs_.clear();
  }
  void abandon() { abandoned_ = true; }

 private:
  struct Output {
    void* device;
    void* host;
    size_t bytes;
  };
  void* take(size_t bytes) {
    void* buffer = pool_.acquire(bytes);
    if (buffer) buffers_.push_back(buffer);
    return buffer;
  }

  StagingPool& pool_;
  std::vector<void*> buffers_;
  std::vector<Output> outputs_;
  bool abandoned_ = false;
};

namespace {

// A host request and the staging it copies back from when it completes.
template <class Staging>
class StagedRequest : public Request::Impl {
 public:
  StagedRequest(Request inner, std::unique_ptr<Staging> staging)
      : inner_(std::move(inner)), staging_(std::move(staging)) {}
  // Destroyed while pending: the host operation ends first (waited for, or abandoned), and an abandoned
  // one's buffers stay out of the pool (before: the members' order gave them back first, while the host
  // library could still write them).
  ~StagedRequest() override {
    if (!inner_.finish_or_abandon()) staging_->abandon();
  }
  bool worth_waiting_for() const override { return inner_.worth_waiting_for(); }
  void wait() override {
    try {
      inner_.wait();
    } catch (...) {
      staging_->abandon();
      throw;
    }
    staging_->finish();
  }
  bool test() override {
    bool done = false;
    try {
      done = inner_.test();
    } catch (...) {
      staging_->abandon();
      throw;
    }
    if (done) staging_->finish();
    return done;
  }

 private:
  Request inner_;
  std::unique_ptr<Staging> staging_;
};

template <class Staging>
Request staged(Request inner, std::unique_ptr<Staging> staging) {
  return Request(std::make_unique<StagedRequest<Staging>>(std::move(inner), std::move(staging)));
}

}  // namespace

StagedCommunicator::StagedCommunicator(Communicator& host, std::shared_ptr<MemoryCopier> copier)
    : Communicator(host.counters_, host.timeout_seconds()),
      host_(host),
      pool_(std::make_shared<StagingPool>(std::move(copier))) {}

StagedCommunicator::StagedCommunicator(std::unique_ptr<Communicator> owned, std::shared_ptr<StagingPool> pool)
    : Communicator(owned->counters_, owned->timeout_seconds()),
      owned_(std::move(owned)),
      host_(*owned_),
      pool_(std::move(pool)) {}

void StagedCommunicator::abort(int exit_code) {
  host_.abort(exit_code);
  std::abort();  // not reached: the host communicator's abort does not return
}

std::unique_ptr<Communicator> StagedCommunicator::sub(int first, int count) {
  return std::unique_ptr<Communicator>(new StagedCommunicator(host_.sub(first, count), pool_));
}

// ---- stage in now, copy out on completion ------------------------------------------------------

Request StagedCommunicator::iall_gather_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                                            DataType type) {
  const size_t s = size_of(type);
  auto staging = std::make_unique<Staging>(*pool_);
  void* hs = staging->in(send, send_count * s);
  void* hr = staging->out(recv, recv_count * s);
  return staged(host_.iall_gather_raw(hs, send_count, hr, recv_count, type), std::move(staging));
}

Request StagedCommunicator::iall_gatherv_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                                             const std::vector<size_t>& counts, DataType type) {
  const size_t s = size_of(type);
  auto staging = std::make_unique<Staging>(*pool_);
  void* hs = staging->in(send, send_count * s);
  void* hr = staging->out(recv, recv_count * s);
  return staged(host_.iall_gatherv_raw(hs, send_count, hr, recv_count, counts, type), std::move(staging));
}

Request StagedCommunicator::ireduce_scatter_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                                                const std::vector<size_t>& counts, DataType type, ReduceOp op) {
  const size_t s = size_of(type);
  auto staging = std::make_unique<Staging>(*pool_);
  void* hs = staging->in(send, send_count * s);
  void* hr = staging->out(recv, recv_count * s);
  return staged(host_.ireduce_scatter_raw(hs, send_count, hr, recv_count, counts, type, op), std::move(staging));
}

Request StagedCommunicator::iall_reduce_raw(void* data, size_t count, DataType type, ReduceOp op) {
  auto staging = std::make_unique<Staging>(*pool_);
  void* h = staging->in_out(data, count * size_of(type));
  return staged(host_.iall_reduce_raw(h, count, type, op), std::move(staging));
}

Request StagedCommunicator::ibroadcast_raw(void* data, size_t count, DataType type, int root) {
  const size_t bytes = count * size_of(type);
  auto staging = std::make_unique<Staging>(*pool_);
  void* h = rank() == root ? staging->in(data, bytes) : staging->out(data, bytes);
  return staged(host_.ibroadcast_raw(h, count, type, root), std::move(staging));
}

Request StagedCommunicator::isend_raw(const void* data, size_t count, DataType type, int dest, int tag) {
  auto staging = std::make_unique<Staging>(*pool_);
  void* h = staging->in(data, count * size_of(type));
  return staged(host_.isend_raw(h, count, type, dest, tag), std::move(staging));
}

Request StagedCommunicator::irecv_raw(void* data, size_t count, DataType type, int source, int tag) {
  auto staging = std::make_unique<Staging>(*pool_);
  void* h = staging->out(data, count * size_of(type));
  return staged(host_.irecv_raw(h, count, type, source, tag), std::move(staging));
}

}  // namespace longctx::comm
