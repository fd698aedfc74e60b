// Communicators on device buffers (run by ctest at 1 and 2 ranks; skip without a GPU): the staged path
// (MPI through pinned host memory) at any rank count, sharing one GPU included; NCCL at 1 rank, and its
// refusal of two ranks on one GPU. Inputs are a function of (rank, index); expected results and byte
// counters are computed here from communicator.hpp's table.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "comm/device_comm.hpp"
#include "comm/mpi_communicator.hpp"
#include "comm/staged_communicator.hpp"

namespace longctx::comm {
namespace {

int visible_gpus() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

// A device copy of a host vector, and back.
template <class T>
class DeviceVector {
 public:
  explicit DeviceVector(const std::vector<T>& host) : size_(host.size()) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(1, size_) * sizeof(T)), cudaSuccess);
    data_ = static_cast<T*>(p);
    if (size_) {
      EXPECT_EQ(cudaMemcpy(data_, host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
    }
  }
  ~DeviceVector() { cudaFree(data_); }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;
  Span<T> span() { return Span<T>(data_, size_); }
  Span<const T> cspan() const { return Span<const T>(data_, size_); }
  std::vector<T> host() const {
    std::vector<T> out(size_);
    if (size_) {
      EXPECT_EQ(cudaMemcpy(out.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    }
    return out;
  }

 private:
  T* data_ = nullptr;
  size_t size_;
};

double value(int rank, size_t i) { return 1000.0 * rank + static_cast<double>(i) + 1; }

// all_gatherv (uneven, a zero count), reduce_scatter (uneven), all_reduce (sum, max), broadcast, and a
// non-blocking all_gatherv, each checked element by element, with the counters of the table.
void check_device_calls(Communicator& c) {
  const int g = c.size(), me = c.rank();
  std::vector<size_t> counts;
  for (int r = 0; r < g; ++r) counts.push_back(r == 1 ? 0 : static_cast<size_t>(3 + 2 * r));
  size_t total = 0;
  for (size_t n : counts) total += n;

  for (bool nonblocking : {false, true}) {
    SCOPED_TRACE(nonblocking ? "iall_gatherv" : "all_gatherv");
    std::vector<double> mine(counts[static_cast<size_t>(me)]);
    for (size_t i = 0; i < mine.size(); ++i) mine[i] = value(me, i);
    DeviceVector<double> send(mine), recv(std::vector<double>(total, -1));
    c.reset_counters();
    if (nonblocking) c.iall_gatherv(send.cspan(), recv.span(), counts).wait();
    else c.all_gatherv(send.cspan(), recv.span(), counts);
    std::vector<double> want;
    for (int r = 0; r < g; ++r)
      for (size_t i = 0; i < counts[static_cast<size_t>(r)]; ++i) want.push_back(value(r, i));
    EXPECT_EQ(recv.host(), want);
    EXPECT_EQ(c.counters().bytes_received, (total - mine.size()) * 8);
    EXPECT_EQ(c.counters().bytes_sent, static_cast<uint64_t>(g - 1) * mine.size() * 8);
  }
  {
    SCOPED_TRACE("reduce_scatter");
    std::vector<double> all(total);
    for (size_t i = 0; i < total; ++i) all[i] = value(me, i);
    DeviceVector<double> send(all), recv(std::vector<double>(counts[static_cast<size_t>(me)], -1));
    c.reduce_scatter(send.cspan(), recv.span(), counts);
    size_t first = 0;
    for (int r = 0; r < me; ++r) first += counts[static_cast<size_t>(r)];
    std::vector<double> want(counts[static_cast<size_t>(me)], 0);
    for (size_t i = 0; i < want.size(); ++i)
      for (int r = 0; r < g; ++r) want[i] += value(r, first + i);
    EXPECT_EQ(recv.host(), want);
  }
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::max}) {
    SCOPED_TRACE("all_reduce");
    std::vector<float> data(7);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(value(me, i));
    DeviceVector<float> d(data);
    c.all_reduce(d.span(), op);
    std::vector<float> want(7);
    for (size_t i = 0; i < want.size(); ++i) {
      want[i] = op == ReduceOp::max ? static_cast<float>(value(g - 1, i)) : 0.f;
      if (op == ReduceOp::sum)
        for (int r = 0; r < g; ++r) want[i] += static_cast<float>(value(r, i));
    }
    EXPECT_EQ(d.host(), want);
  }
  {
    SCOPED_TRACE("broadcast");
    std::vector<int64_t> data(5, me == g - 1 ? 42 : -1);
    DeviceVector<int64_t> d(data);
    c.broadcast(d.span(), g - 1);
    EXPECT_EQ(d.host(), std::vector<int64_t>(5, 42));
  }
  c.barrier();
}

class DeviceCommTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (visible_gpus() == 0) GTEST_SKIP() << "no CUDA device visible";
    world = make_mpi_world(120);
    world->set_timeout_seconds(60);
    ASSERT_EQ(cudaSetDevice(world->rank() % visible_gpus()), cudaSuccess);
  }
  std::unique_ptr<Communicator> world;
};

TEST_F(DeviceCommTest, StagedThroughPinnedHostMemory) {
  auto copier = make_cuda_copier();
  StagedCommunicator staged(*world, copier);
  EXPECT_EQ(staged.backend(), "mpi+staged(cuda)");
  check_device_calls(staged);
  EXPECT_GT(copier->bytes_to_host, 0u);
  std::unique_ptr<Communicator> sub = staged.sub(0, world->size());
  check_device_calls(*sub);
}

TEST_F(DeviceCommTest, NcclAtOneRankOrRefusedOnASharedGpu) {
  std::string version;
  if (!nccl_available(&version)) GTEST_SKIP() << version;
  const bool shared = world->size() > visible_gpus();
  if (!shared) {
    std::unique_ptr<Communicator> nccl = make_nccl_communicator(*world, world->rank() % visible_gpus());
    EXPECT_EQ(nccl->backend(), "nccl");
    check_device_calls(*nccl);
    return;
  }
  try {
    make_nccl_communicator(*world, world->rank() % visible_gpus());
    ADD_FAILURE() << "NCCL accepted two ranks on one GPU";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("share one GPU"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace longctx::comm
