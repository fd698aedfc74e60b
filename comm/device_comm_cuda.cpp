// CUDA copies for the staged path and the NCCL communicator (see device_comm.hpp).
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <nccl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "comm/device_comm.hpp"
#include "comm/mpi_roll_call.hpp"
#include "runtime/core/check.hpp"
#include "runtime/core/watchdog.hpp"

namespace longctx::comm {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

class CudaCopier : public MemoryCopier {
 public:
  std::string name() const override { return "cuda"; }
  void to_host(void* host, const void* device, size_t bytes) override {
    if (bytes) LONGCTX_CHECK_CUDA(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost));
    bytes_to_host += bytes;
  }
  void to_device(void* device, const void* host, size_t bytes) override {
    if (bytes) LONGCTX_CHECK_CUDA(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice));
    bytes_to_device += bytes;
  }
  // Pinned memory can run out well before the host's (a container's limit): a usage error
  // that names the size, as a device allocation's is (before: an internal failure, exit 1; from a review).
  void* allocate_host(size_t bytes) override {
    void* host = nullptr;
    const cudaError_t rc = cudaMallocHost(&host, bytes);
    if (rc == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw UsageError("the staged communicator (--comm staged, or auto's choice): cannot pin " +
                       std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB more of host memory to stage device " +
                       "buffers through (the node's memory, or a container's limit); a smaller problem per rank, " +
                       "or --comm nccl with one GPU per rank, needs less");
    }
    LONGCTX_CHECK_CUDA(rc);
    return host;
  }
  void free_host(void* host) override { cudaFreeHost(host); }
};

// libnccl.so.2's entry points, resolved once. Types come from nccl.h, so a signature cannot drift.
struct Nccl {
  std::string error;  // why it could not be loaded ("" when loaded)
  int version = 0;
  decltype(&ncclGetVersion) GetVersion = nullptr;
  decltype(&ncclGetUniqueId) GetUniqueId = nullptr;
  decltype(&ncclCommInitRank) CommInitRank = nullptr;
  decltype(&ncclCommDestroy) CommDestroy = nullptr;
  decltype(&ncclCommAbort) CommAbort = nullptr;
  decltype(&ncclCommGetAsyncError) CommGetAsyncError = nullptr;
  decltype(&ncclGetErrorString) GetErrorString = nullptr;
  decltype(&ncclAllGather) AllGather = nullptr;
  decltype(&ncclReduceScatter) ReduceScatter = nullptr;
  decltype(&ncclAllReduce) AllReduce = nullptr;
  decltype(&ncclBroadcast) Broadcast = nullptr;
  decltype(&ncclReduce) Reduce = nullptr;
  decltype(&ncclSend) Send = nullptr;
  decltype(&ncclRecv) Recv = nullptr;
  decltype(&ncclGroupStart) GroupStart = nullptr;
  decltype(&ncclGroupEnd) GroupEnd = nullptr;
};

const Nccl& nccl() {
  static Nccl api;
  static std::once_flag once;
  std::call_once(once, [] {
    void* handle = dlopen("libnccl.so.2", RTLD_NOW | RTLD_GLOBAL);
    if (!handle) {
      const char* why = dlerror();
      api.error = std::string("cannot load libnccl.so.2 (") + (why ? why : "?") +
                  "); put NCCL's lib folder on LD_LIBRARY_PATH";
      return;
    }
    auto resolve = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(handle, name));
      if (!fn && api.error.empty()) api.error = std::string("libnccl.so.2 lacks ") + name;
    };
    resolve(api.GetVersion, "ncclGetVersion");
    resolve(api.GetUniqueId, "ncclGetUniqueId");
    resolve(api.CommInitRank, "ncclCommInitRank");
    resolve(api.CommDestroy, "ncclCommDestroy");
    resolve(api.CommAbort, "ncclCommAbort");
    resolve(api.CommGetAsyncError, "ncclCommGetAsyncError");
    resolve(api.GetErrorString, "ncclGetErrorString");
    resolve(api.AllGather, "ncclAllGather");
    resolve(api.ReduceScatter, "ncclReduceScatter");
    resolve(api.AllReduce, "ncclAllReduce");
    resolve(api.Broadcast, "ncclBroadcast");
    resolve(api.Reduce, "ncclReduce");
    resolve(api.Send, "ncclSend");
    resolve(api.Recv, "ncclRecv");
    resolve(api.GroupStart, "ncclGroupStart");
    resolve(api.GroupEnd, "ncclGroupEnd");
    if (api.error.empty() && api.GetVersion(&api.version) != ncclSuccess) api.error = "ncclGetVersion failed";
  });
  return api;
}

const Nccl& loaded_nccl() {
  const Nccl& api = nccl();
  if (!api.error.empty()) throw UsageError("--comm nccl: " + api.error);
  return api;
}

void check_nccl(ncclResult_t rc, const char* what) {
  if (rc != ncclSuccess && rc != ncclInProgress)
    throw InternalError(std::string("NCCL: ") + what + ": " + nccl().GetErrorString(rc));
}

ncclDataType_t nccl_type(DataType type) {
  switch (type) {
    case DataType::f32: return ncclFloat32;
    case DataType::f64: return ncclFloat64;
    case DataType::i32: return ncclInt32;
    case DataType::i64: return ncclInt64;
    case DataType::u64: return ncclUint64;
    case DataType::u8: return ncclUint8;
  }
  throw InternalError("comm: unknown DataType");
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::min: return ncclMin;
  }
  throw InternalError("comm: unknown ReduceOp");
}

struct NcclState;
// Every NCCL communicator of the process, for abort_now (the states register themselves).
std::mutex& live_states_mutex() {
  static std::mutex mutex;
  return mutex;
}
std::vector<NcclState*>& live_states() {
  static std::vector<NcclState*> states;
  return states;
}

// One NCCL communicator and its stream, shared by the communicator and its pending requests.
struct NcclState {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t ready = nullptr;  // "work so far on the default stream": calls start after it
  int* flag = nullptr;          // the barrier's one-integer all-reduce
  int device = 0;
  bool aborted = false;

  NcclState() {
    std::lock_guard<std::mutex> lock(live_states_mutex());
    live_states().push_back(this);
  }
  NcclState(const NcclState&) = delete;
  NcclState& operator=(const NcclState&) = delete;
  ~NcclState() {
    {
      std::lock_guard<std::mutex> lock(live_states_mutex());
      std::vector<NcclState*>& states = live_states();
      states.erase(std::remove(states.begin(), states.end(), this), states.end());
    }
    if (comm) {
      if (aborted) {
        nccl().CommAbort(comm);
      } else {  // may wait for the peers (NCCL's finalize), which have no timeout of their own
        const watchdog::Guard guard("NCCL: the release of a communicator (ncclCommDestroy)");
        nccl().CommDestroy(comm);
      }
    }
    if (ready) cudaEventDestroy(ready);
    if (flag) cudaFree(flag);
    if (stream) cudaStreamDestroy(stream);
  }

  // Aborts the communicator now, before the throw that follows: its kernel still spinning on the GPU
  // would otherwise make the unwinding's first cudaFree (which synchronizes the device) wait forever, and
  // the rank would never reach the process abort that ends the job (from a review; not seen on a GPU).
  // Every other communicator of the process too: the next branch's all-gather may be in flight on another
  // group's communicator, its kernel as stuck when the peer died (before: this one alone; from a review).
  void abort_now() {
    std::lock_guard<std::mutex> lock(live_states_mutex());
    for (NcclState* state : live_states()) {
      state->aborted = true;
      if (state->comm) nccl().CommAbort(state->comm);
      state->comm = nullptr;
    }
  }

  // Waits for `done`; aborts the communicator and throws past `timeout` seconds or on an NCCL error.
  void wait(cudaEvent_t done, double timeout, const char* what) {
    const auto start = Clock::now();
    std::string call;  // "NCCL all_gather": what the roll call (mpi_roll_call.hpp) hears this rank waits in
    for (int spin = 0;; ++spin) {
      // Asked first: an abort ends the communicator's kernels too, so its event completes with the data
      // partial (before: the event was asked first, and a wait after an abort returned success; from a
      // review, not reachable as the callers stand: they ask worth_waiting_for first).
      if (!comm)
        throw CommTimeout(std::string("NCCL: ") + what + ": its communicator was aborted after another one failed");
      const cudaError_t q = cudaEventQuery(done);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) LONGCTX_CHECK_CUDA(q);
      ncclResult_t async = ncclSuccess;
      check_nccl(nccl().CommGetAsyncError(comm, &async), "ncclCommGetAsyncError");
      if (async != ncclSuccess && async != ncclInProgress) {
        abort_now();
        throw InternalError(std::string("NCCL: ") + what + " failed: " + nccl().GetErrorString(async));
      }
      if (since(start) > timeout) {
        const std::string roll = roll_call::ask(std::string("NCCL ") + what, since(start), roll_call::window(timeout));
        if (cudaEventQuery(done) == cudaSuccess) return;  // it completed during the roll call
        abort_now();
        throw CommTimeout(std::string("NCCL: ") + what + " did not complete within " + std::to_string(timeout) +
                          " s" + (roll.empty() ? " (a peer died or diverged)" : ". " + roll) + "; communicator aborted");
      }
      if (spin > 1000) {
        if (call.empty()) call = std::string("NCCL ") + what;
        roll_call::answer(call, since(start));
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  }
};

class NcclRequest : public Request::Impl {
 public:
  NcclRequest(std::shared_ptr<NcclState> state, std::shared_ptr<Counters> counters, double timeout, const char* what)
      : state_(std::move(state)), counters_(std::move(counters)), timeout_(timeout), what_(what), start_(Clock::now()) {
    LONGCTX_CHECK_CUDA(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    LONGCTX_CHECK_CUDA(cudaEventRecord(done_, state_->stream));
  }
  ~NcclRequest() override { cudaEventDestroy(done_); }
  // Abandoned, not waited for, once aborted (the first failure is the one to report).
  bool worth_waiting_for() const override { return state_->comm != nullptr; }
  void wait() override {
    state_->wait(done_, timeout_, what_);
    counters_->seconds += since(start_);
  }
  bool test() override {
    const cudaError_t q = cudaEventQuery(done_);
    if (q == cudaErrorNotReady) return false;
    LONGCTX_CHECK_CUDA(q);
    counters_->seconds += since(start_);
    return true;
  }

 private:
  std::shared_ptr<NcclState> state_;
  std::shared_ptr<Counters> counters_;
  double timeout_;
  const char* what_;
  Clock::time_point start_;
  cudaEvent_t done_ = nullptr;
};

class NcclCommunicator : public Communicator {
 public:
  // `counters`: the parent's for a sub-communicator (its traffic adds into the parent's), else null.
  NcclCommunicator(Communicator& host, std::unique_ptr<Communicator> owned, int device,
                   std::shared_ptr<Counters> counters)
      : Communicator(counters ? std::move(counters) : std::make_shared<Counters>(), host.timeout_seconds()),
        host_(host), owned_(std::move(owned)),
        state_(std::make_shared<NcclState>()) {
    const Nccl& api = loaded_nccl();
    LONGCTX_CHECK_CUDA(cudaSetDevice(device));
    state_->device = device;
    check_one_gpu_per_rank(device);
    ncclUniqueId id{};
    if (host_.rank() == 0) check_nccl(api.GetUniqueId(&id), "ncclGetUniqueId");
    host_.broadcast(Span<char>(id.internal, sizeof id.internal), 0);
    {  // blocking, without a timeout of its own: a peer stopped after the broadcast held every rank here
       // for good (before; from a review, not seen on a GPU); the watchdog ends the job instead
      const watchdog::Guard guard("NCCL: the set-up of a communicator of " + std::to_string(host_.size()) +
                                  " ranks (ncclCommInitRank)");
      check_nccl(api.CommInitRank(&state_->comm, host_.size(), id, host_.rank()), "ncclCommInitRank");
    }
    LONGCTX_CHECK_CUDA(cudaStreamCreateWithFlags(&state_->stream, cudaStreamNonBlocking));
    LONGCTX_CHECK_CUDA(cudaEventCreateWithFlags(&state_->ready, cudaEventDisableTiming));
    LONGCTX_CHECK_CUDA(cudaMalloc(&state_->flag, sizeof(int)));
  }

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  std::string backend() const override { return "nccl"; }

  void barrier() override {
    begin({});
    check_nccl(nccl().AllReduce(state_->flag, state_->flag, 1, ncclInt32, ncclSum, state_->comm, state_->stream),
               "barrier");
    end("barrier").wait();
  }

  std::unique_ptr<Communicator> sub(int first, int count) override {
    std::unique_ptr<Communicator> host_sub = host_.sub(first, count);
    Communicator& ref = *host_sub;
    return std::make_unique<NcclCommunicator>(ref, std::move(host_sub), state_->device, counters_);
  }

  [[noreturn]] void abort(int exit_code) override {
    state_->aborted = true;
    host_.abort(exit_code);
    std::abort();
  }

 protected:
  Request iall_gather_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                          DataType type) override {
    const size_t g = static_cast<size_t>(size()), s = size_of(type);
    if (recv_count != send_count * g)
      throw UsageError("all_gather: recv has " + std::to_string(recv_count) + " elements, want " +
                       std::to_string(send_count * g));
    begin(all_gatherv_volume(std::vector<size_t>(g, send_count), rank(), s));
    check_nccl(nccl().AllGather(send, recv, send_count, nccl_type(type), state_->comm, state_->stream), "all_gather");
    return end("all_gather");
  }

  Request iall_gatherv_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                           const std::vector<size_t>& counts, DataType type) override {
    check_counts(counts, "all_gatherv");
    const size_t s = size_of(type), me = static_cast<size_t>(rank());
    size_t total = 0;
    for (size_t c : counts) total += c;
    if (send_count != counts[me] || recv_count != total)
      throw UsageError("all_gatherv: send / recv sizes do not match the counts");
    begin(all_gatherv_volume(counts, rank(), s));
    char* out = static_cast<char*>(recv);
    grouped_per_root(counts, "all_gatherv", [&](size_t r, size_t offset) {
      return nccl().Broadcast(r == me ? send : out + offset * s, out + offset * s, counts[r], nccl_type(type),
                              static_cast<int>(r), state_->comm, state_->stream);
    });
    return end("all_gatherv");
  }

  Request ireduce_scatter_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                              const std::vector<size_t>& counts, DataType type, ReduceOp op) override {
    check_counts(counts, "reduce_scatter");
    const size_t s = size_of(type), me = static_cast<size_t>(rank());
    size_t total = 0;
    bool even = true;
    for (size_t c : counts) {
      total += c;
      even = even && c == counts[0];
    }
    if (send_count != total || recv_count != counts[me])
      throw UsageError("reduce_scatter: send / recv sizes do not match the counts");
    begin(reduce_scatter_volume(counts, rank(), s));
    if (even) {
      check_nccl(nccl().ReduceScatter(send, recv, counts[0], nccl_type(type), nccl_op(op), state_->comm,
                                      state_->stream),
                 "reduce_scatter");
    } else {  // uneven blocks: one reduce per root, grouped
      const char* in = static_cast<const char*>(send);
      grouped_per_root(counts, "reduce_scatter", [&](size_t r, size_t offset) {
        void* to = r == me ? recv : const_cast<char*>(in + offset * s);  // significant at the root only
        return nccl().Reduce(in + offset * s, to, counts[r], nccl_type(type), nccl_op(op), static_cast<int>(r),
                             state_->comm, state_->stream);
      });
    }
    return end("reduce_scatter");
  }

  Request iall_reduce_raw(void* data, size_t count, DataType type, ReduceOp op) override {
    begin(all_reduce_volume(count, size(), rank(), size_of(type)));
    check_nccl(nccl().AllReduce(data, data, count, nccl_type(type), nccl_op(op), state_->comm, state_->stream),
               "all_reduce");
    return end("all_reduce");
  }

  Request ibroadcast_raw(void* data, size_t count, DataType type, int root) override {
    begin(broadcast_volume(count, size(), rank(), root, size_of(type)));
    check_nccl(nccl().Broadcast(data, data, count, nccl_type(type), root, state_->comm, state_->stream), "broadcast");
    return end("broadcast");
  }

  Request isend_raw(const void* data, size_t count, DataType type, int dest, int tag) override {
    check_tag(tag);
    begin(send_volume(count, rank(), dest, size_of(type)));
    check_nccl(nccl().Send(data, count, nccl_type(type), dest, state_->comm, state_->stream), "send");
    return end("send");
  }

  Request irecv_raw(void* data, size_t count, DataType type, int source, int tag) override {
    check_tag(tag);
    begin(recv_volume(count, rank(), source, size_of(type)));
    check_nccl(nccl().Recv(data, count, nccl_type(type), source, state_->comm, state_->stream), "recv");
    return end("recv");
  }

 private:
  // Counts the call and orders it after the work issued so far on the legacy default stream.
  void begin(Volume volume) {
    counters_->calls += 1;
    counters_->bytes_sent += volume.sent;
    counters_->bytes_received += volume.received;
    LONGCTX_CHECK_CUDA(cudaEventRecord(state_->ready, cudaStreamLegacy));
    LONGCTX_CHECK_CUDA(cudaStreamWaitEvent(state_->stream, state_->ready, 0));
  }
  Request end(const char* what) {
    return Request(std::make_unique<NcclRequest>(state_, counters_, timeout_seconds(), what));
  }
  // One call(root, element offset) per root with a non-zero count, in one NCCL group.
  template <class Call>
  static void grouped_per_root(const std::vector<size_t>& counts, const char* what, Call&& call) {
    const Nccl& api = nccl();
    check_nccl(api.GroupStart(), "group start");
    size_t offset = 0;
    for (size_t r = 0; r < counts.size(); ++r) {
      if (counts[r]) {
        const ncclResult_t rc = call(r, offset);
        if (rc != ncclSuccess) {
          api.GroupEnd();
          check_nccl(rc, what);
        }
      }
      offset += counts[r];
    }
    check_nccl(api.GroupEnd(), what);
  }
  void check_counts(const std::vector<size_t>& counts, const char* what) const {
    if (counts.size() != static_cast<size_t>(size()))
      throw UsageError(std::string(what) + ": " + std::to_string(counts.size()) + " counts for " +
                       std::to_string(size()) + " ranks");
  }
  static void check_tag(int tag) {
    if (tag != 0) throw UsageError("NCCL send / recv take tag 0 only (NCCL matches them by order), got " + std::to_string(tag));
  }

  // Every rank's (host, GPU uuid); two equal uuids mean two ranks on one GPU, which NCCL cannot do, also
  // where the host names differ (containers sharing a GPU; before: passed, and NCCL's own refusal was exit 1;
  // from a review). The host names decide only where a uuid is unknown (all zero).
  void check_one_gpu_per_rank(int device) {
    constexpr size_t kHost = 64, kRecord = kHost + 16;
    std::vector<char> mine(kRecord, 0), all(kRecord * static_cast<size_t>(host_.size()));
    gethostname(mine.data(), kHost - 1);
    cudaDeviceProp prop{};
    LONGCTX_CHECK_CUDA(cudaGetDeviceProperties(&prop, device));
    std::memcpy(mine.data() + kHost, prop.uuid.bytes, 16);
    host_.all_gather(Span<const char>(mine), Span<char>(all));
    const auto record = [&](int r) { return all.data() + kRecord * static_cast<size_t>(r); };
    const auto uuid_known = [&](int r) {
      return std::any_of(record(r) + kHost, record(r) + kRecord, [](char byte) { return byte != 0; });
    };
    for (int a = 0; a < host_.size(); ++a)
      for (int b = a + 1; b < host_.size(); ++b)
        if (uuid_known(a) && uuid_known(b) ? std::memcmp(record(a) + kHost, record(b) + kHost, kRecord - kHost) == 0
                                           : std::memcmp(record(a), record(b), kRecord) == 0)
          throw UsageError("--comm nccl: ranks " + std::to_string(a) + " and " + std::to_string(b) + " share one GPU on " +
                           std::string(record(a)) +
                           (std::strcmp(record(a), record(b)) != 0 ? " (as " + std::string(record(b)) + ")" : "") +
                           "; NCCL needs one GPU per rank (run one rank per GPU, or use --comm staged)");
  }

  Communicator& host_;
  std::unique_ptr<Communicator> owned_;
  std::shared_ptr<NcclState> state_;
};

}  // namespace

int select_device(int local_rank) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();
    throw UsageError("--device cuda: no CUDA device is visible to this process");
  }
  const int device = local_rank % count;
  LONGCTX_CHECK_CUDA(cudaSetDevice(device));
  return device;
}

std::shared_ptr<void> device_alloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t rc = cudaMalloc(&p, bytes ? bytes : 1);
  if (rc == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw UsageError("--comm: cannot allocate " + std::to_string(bytes >> 20) + " MiB on the device");
  }
  LONGCTX_CHECK_CUDA(rc);
  return std::shared_ptr<void>(p, [](void* q) { cudaFree(q); });
}

void device_synchronize() { LONGCTX_CHECK_CUDA(cudaDeviceSynchronize()); }

std::shared_ptr<MemoryCopier> make_cuda_copier() { return std::make_shared<CudaCopier>(); }

bool nccl_available(std::string* version_or_reason) {
  const Nccl& api = nccl();
  if (version_or_reason) {
    if (api.error.empty())
      *version_or_reason = std::to_string(api.version / 10000) + "." + std::to_string(api.version / 100 % 100) + "." +
                           std::to_string(api.version % 100);
    else
      *version_or_reason = api.error;
  }
  return api.error.empty();
}

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host, int device) {
  return std::make_unique<NcclCommunicator>(host, nullptr, device, nullptr);
}

}  // namespace longctx::comm
