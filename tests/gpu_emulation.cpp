// The CPU stand-in for CUDA kernel source: see gpu_emulation.hpp.
#include "gpu_emulation.hpp"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif
#include <vector>

namespace longctx::cuda::emulation {

thread_local EmulatedDim3 thread_idx, block_idx, block_dim, grid_dim;

namespace {

// The threads of one block are fibers of one host thread, switched at every barrier: a collective costs a
// few context switches instead of OS-thread wake-ups. On x86-64 a switch is a handful of instructions
// (fiber_switch below: the callee-saved registers and the stack pointer); elsewhere ucontext, whose
// swapcontext makes a system call per switch (signal mask).
#if defined(__x86_64__)
// fiber_switch(save, load): stores this context's stack pointer in *save and resumes the one saved at
// `load` (by fiber_switch, or laid out by start_stack).
extern "C" void longctx_emulation_fiber_switch(void** save, void* load);
asm(R"(
  .text
  .globl longctx_emulation_fiber_switch
  .type longctx_emulation_fiber_switch, @function
longctx_emulation_fiber_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size longctx_emulation_fiber_switch, .-longctx_emulation_fiber_switch
)");

struct Context {
  void* sp = nullptr;
};
void switch_context(Context& from, Context& to) { longctx_emulation_fiber_switch(&from.sp, to.sp); }

// A fresh stack whose first switch "returns" into entry(): six zero registers, then entry's address, then
// a zero return address for entry (which never returns), so entry starts with the ABI's alignment.
void start_stack(Context& context, char* stack, size_t size, void (*entry)()) {
  auto top = reinterpret_cast<uintptr_t>(stack + size) & ~static_cast<uintptr_t>(15);
  auto* slot = reinterpret_cast<void**>(top);
  *--slot = nullptr;                               // entry's return address
  *--slot = reinterpret_cast<void*>(entry);        // where the first switch's ret goes
  for (int i = 0; i < 6; ++i) *--slot = nullptr;  // rbp, rbx, r12 .. r15
  context.sp = slot;
}
#else
struct Context {
  ucontext_t uc;
};
void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
void start_stack(Context& context, char* stack, size_t size, void (*entry)()) {
  getcontext(&context.uc);
  context.uc.uc_stack.ss_sp = stack;
  context.uc.uc_stack.ss_size = size;
  context.uc.uc_link = nullptr;
  makecontext(&context.uc, entry, 0);
}
#endif
class Barrier;

struct Copy {
  void* to;
  const void* from;
  bool valid;
};

struct BulkReduce {
  float* to;
  const float* from;
  uint32_t bytes;
  std::vector<float> at_issue;  // the source then: the copy engine may read it any time up to the wait
};

// One thread's asynchronous operations of one kind: those not yet committed, then the closed groups, oldest
// first. wait(n, perform) performs all but the newest n closed groups.
template <class Op>
struct AsyncGroups {
  std::vector<Op> open;
  std::deque<std::vector<Op>> committed;
  void commit() {
    committed.push_back(std::move(open));
    open.clear();
  }
  template <class F>
  void wait(int newest_left_pending, F&& perform) {
    for (; committed.size() > static_cast<size_t>(newest_left_pending); committed.pop_front())
      for (const Op& op : committed.front()) perform(op);
  }
  bool empty() const { return open.empty() && committed.empty(); }
};

struct Fiber {
  AsyncGroups<Copy> copies;       // cp.async
  AsyncGroups<BulkReduce> bulks;  // cp.reduce.async.bulk
  Context context;
  char* stack = nullptr;  // from the host thread's pool (stacks are reused by every block)
  unsigned id = 0;
  bool done = false;
  const Barrier* waiting_on = nullptr;  // resumed only once that barrier's generation moves on
  uint64_t waiting_generation = 0;
};

struct Scheduler {
  Context main;
  std::vector<Fiber> fibers;
  size_t current = 0;
  const std::function<void()>* body = nullptr;
};

thread_local Scheduler* scheduler = nullptr;

// Arrive, then wait (the scheduler runs the other fibers) until all `count` have arrived.
class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  void wait() {
    const uint64_t generation = generation_;
    if (++waiting_ == count_) {
      waiting_ = 0;
      ++generation_;
      return;
    }
    Fiber& me = scheduler->fibers[scheduler->current];
    me.waiting_on = this;
    me.waiting_generation = generation;
    switch_context(me.context, scheduler->main);
    me.waiting_on = nullptr;
  }
  uint64_t generation() const { return generation_; }

 private:
  int count_, waiting_ = 0;
  uint64_t generation_ = 0;
};

// One warp's meeting place: each lane posts its operands in its slot, all meet, each computes its result.
struct Warp {
  Barrier barrier{32};
  std::array<std::array<uint32_t, 8>, 32> words{};
  std::array<const void*, 32> addresses{};
  std::array<float, 32> values{};
};

// One queued wgmma: every thread's A registers and accumulator address, and the shared operand.
struct WgmmaOp {
  std::array<std::array<uint32_t, 4>, 128> a{};  // A in registers, unless a_from_shared
  std::array<const uint32_t*, 128> a_registers{};  // where each thread's A was, checked unchanged at the wait
  std::array<float*, 128> d{};
  // Each thread's accumulators as they were at the issue, checked unchanged at the wait (empty when an
  // earlier queued operation accumulates into the same registers: they change when that one runs).
  std::vector<float> d_at_issue;
  int n = 0;
  uint64_t desc = 0, desc_a = 0;
  bool accumulate = false, trans_b = false, bf16 = true, a_from_shared = false, trans_a = false;
  uint64_t group = 0;
};

// One warpgroup's meeting place and its queue of wgmma operations (oldest first).
struct Warpgroup {
  Barrier barrier{128};
  std::array<std::array<uint32_t, 4>, 128> a{};
  std::array<const uint32_t*, 128> a_registers{};
  std::array<float*, 128> d{};
  std::array<uint64_t, 128> uniform{};  // a hash of the operands every thread must agree on
  std::deque<WgmmaOp> queued;
  uint64_t open_group = 0;  // group of the next wgmma; commit closes it
};

struct Block {
  std::vector<unsigned char> shared;
  std::unique_ptr<Barrier> barrier;
  std::vector<std::unique_ptr<Warp>> warps;
  std::vector<std::unique_ptr<Warpgroup>> warpgroups;
};

thread_local Block* current = nullptr;

// Stack `index` of this host thread's pool, `bytes` long: allocated once, uninitialised (only the pages a
// fiber touches are ever mapped), reused by every later block and launch.
char* fiber_stack(size_t index, size_t bytes) {
  thread_local std::vector<std::unique_ptr<char[]>> pool;
  while (pool.size() <= index) pool.emplace_back(new char[bytes]);
  return pool[index].get();
}

// A fiber's entry: the kernel body, then back to the scheduler for good (it never resumes a finished
// fiber, and the entry has nowhere to return to).
void fiber_main() {
  (*scheduler->body)();
  Fiber& me = scheduler->fibers[scheduler->current];
  me.done = true;
  switch_context(me.context, scheduler->main);
  std::abort();
}

Warp& my_warp() { return *current->warps[thread_idx.x / 32]; }
int my_lane() { return static_cast<int>(thread_idx.x % 32); }

float low(uint32_t word, bool bf16) {
  const uint16_t bits = static_cast<uint16_t>(word & 0xffffu);
  return bf16 ? bf16_value(bits) : fp16_value(bits);
}
float high(uint32_t word, bool bf16) {
  const uint16_t bits = static_cast<uint16_t>(word >> 16);
  return bf16 ? bf16_value(bits) : fp16_value(bits);
}

}  // namespace

unsigned char* shared_memory() { return current->shared.data(); }
void sync_block() { current->barrier->wait(); }
void sync_warp() { my_warp().barrier.wait(); }

float shfl_xor(float value, int lane_mask) {
  Warp& w = my_warp();
  const int lane = my_lane();
  w.values[static_cast<size_t>(lane)] = value;
  w.barrier.wait();
  const float other = w.values[static_cast<size_t>(lane ^ lane_mask)];
  w.barrier.wait();
  return other;
}

// mma.m16n8k16 .row.col, f32 accumulators. From the PTX ISA's fragment tables, with groupID = lane >> 2
// and threadID_in_group = lane % 4: A element i of a lane (two per register, low half first) sits at
// row groupID (+8 for i in {2,3,6,7}), col 2 threadID_in_group + (i & 1) (+8 for i >= 4); B element i
// at row (k) 2 threadID_in_group + (i & 1) (+8 for i >= 2), col (n) groupID; C element i at row groupID
// (+8 for i >= 2), col 2 threadID_in_group + (i & 1).
void mma_m16n8k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, bool bf16) {
  Warp& w = my_warp();
  const int lane = my_lane();
  auto& mine = w.words[static_cast<size_t>(lane)];
  for (int i = 0; i < 4; ++i) mine[static_cast<size_t>(i)] = a[i];
  mine[4] = b0;
  mine[5] = b1;
  w.barrier.wait();
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const auto& x = w.words[static_cast<size_t>(l)];
    const int g = l >> 2, t = l % 4;
    for (int i = 0; i < 8; ++i) {
      const int row = g + ((i == 2 || i == 3 || i == 6 || i == 7) ? 8 : 0);
      const int col = 2 * t + (i & 1) + (i >= 4 ? 8 : 0);
      const uint32_t word = x[static_cast<size_t>(i / 2)];
      A[row][col] = (i & 1) ? high(word, bf16) : low(word, bf16);
    }
    for (int i = 0; i < 4; ++i) {
      const int k = 2 * t + (i & 1) + (i >= 2 ? 8 : 0);
      const uint32_t word = x[static_cast<size_t>(4 + i / 2)];
      B[k][g] = (i & 1) ? high(word, bf16) : low(word, bf16);
    }
  }
  const int g = lane >> 2, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
    float sum = c[i];
    for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];
    c[i] = sum;
  }
  w.barrier.wait();
}

// ldmatrix.m8n8.x4(.trans).b16: lanes 8j..8j+7 give the row addresses of matrix j; without .trans a lane
// receives row lane / 4, elements 2 (lane % 4) and 2 (lane % 4) + 1 of each matrix (low half first);
// with .trans the same positions of the transposed matrix.
void ldmatrix_x4(uint32_t (&r)[4], const void* address, bool trans) {
  Warp& w = my_warp();
  const int lane = my_lane();
  w.addresses[static_cast<size_t>(lane)] = address;
  w.barrier.wait();
  for (int j = 0; j < 4; ++j) {
    auto element = [&](int row, int col) {
      const auto* p = static_cast<const uint16_t*>(w.addresses[static_cast<size_t>(8 * j + row)]);
      return static_cast<uint32_t>(p[col]);
    };
    const int row = lane / 4, col = 2 * (lane % 4);
    const uint32_t lo = trans ? element(col, row) : element(row, col);
    const uint32_t hi = trans ? element(col + 1, row) : element(row, col + 1);
    r[j] = lo | (hi << 16);
  }
  w.barrier.wait();
}

void copy16(void* smem, const void* gmem, bool valid) {
  scheduler->fibers[scheduler->current].copies.open.push_back({smem, gmem, valid});
}

void copy_commit() { scheduler->fibers[scheduler->current].copies.commit(); }

void copy_wait(int newest_left_pending) {
  scheduler->fibers[scheduler->current].copies.wait(newest_left_pending, [](const Copy& c) {
    if (c.valid) std::memcpy(c.to, c.from, 16);
    else std::memset(c.to, 0, 16);
  });
}

float atomic_add(float* address, float value) {  // fibers of one host thread: no race
  const float old = *address;
  *address = old + value;
  return old;
}

void atomic_add2(float* address, float x, float y) {
  if (reinterpret_cast<uintptr_t>(address) % 8 != 0) {
    std::fprintf(stderr, "emulation: float2 atomicAdd at %p, not 8-byte aligned (a misaligned address fault)\n",
                 static_cast<void*>(address));
    std::abort();
  }
  address[0] += x;
  address[1] += y;
}

uint32_t shared_address(const void* p) {
  const auto* byte = static_cast<const unsigned char*>(p);
  if (byte < current->shared.data() || byte > current->shared.data() + current->shared.size()) {
    std::fprintf(stderr, "emulation: %p is not in the block's shared memory\n", p);
    std::abort();
  }
  return static_cast<uint32_t>(byte - current->shared.data());
}

namespace {

[[noreturn]] void wgmma_fault(const char* what) {
  std::fprintf(stderr, "emulation: wgmma: %s\n", what);
  std::abort();
}

Warpgroup& my_warpgroup() {
  if (thread_idx.x / 128 >= current->warpgroups.size()) wgmma_fault("the block has no whole warpgroup for this thread");
  return *current->warpgroups[thread_idx.x / 128];
}

// Runs one queued operation. Descriptor (PTX ISA "Matrix Descriptor Format"): start address, leading and
// stride byte offsets in 16-byte units at bits 0-13, 16-29, 32-45; base offset bits 49-51; layout type
// (swizzle) bits 62-63. In the no-swizzle canonical layouts a core matrix is 8 rows of 16 contiguous bytes
// (128 bytes); LBO steps between core matrices along K, SBO along M / N. K-major: a core matrix row is one
// N index with 8 consecutive K elements; MN-major (trans_b): one K index with 8 consecutive N elements.
// Element (mn, k) of a shared operand: `mn` is M for A, N for B.
float shared_operand(uint64_t desc, int mn, int k, bool mn_major, bool bf16) {
  if ((desc >> 62) != 0) wgmma_fault("only the no-swizzle layout is emulated");
  if (((desc >> 49) & 7u) != 0) wgmma_fault("nonzero descriptor base offset");
  const uint64_t start = (desc & 0x3fffu) << 4, lbo = ((desc >> 16) & 0x3fffu) << 4, sbo = ((desc >> 32) & 0x3fffu) << 4;
  const uint64_t inner = mn_major ? (k % 8) * 16 + (mn % 8) * 2 : (mn % 8) * 16 + (k % 8) * 2;
  const uint64_t address = start + static_cast<uint64_t>(mn / 8) * sbo + static_cast<uint64_t>(k / 8) * lbo + inner;
  if (address + 2 > current->shared.size()) wgmma_fault("operand past the block's shared memory");
  uint16_t bits;
  std::memcpy(&bits, current->shared.data() + address, 2);
  return bf16 ? bf16_value(bits) : fp16_value(bits);
}

// The GPU reads A's registers and reads / writes the accumulators while the operation is in flight: a
// thread that touched them between the issue and the wait raced it there, so that is a fault here.
void check_registers_untouched(const WgmmaOp& op) {
  for (size_t t = 0; t < 128; ++t) {
    if (!op.a_from_shared && std::memcmp(op.a_registers[t], op.a[t].data(), sizeof(op.a[t])) != 0)
      wgmma_fault("A's registers were rewritten between the wgmma and its wait");
    const size_t count = static_cast<size_t>(op.n / 2);
    if (!op.d_at_issue.empty() && std::memcmp(op.d[t], &op.d_at_issue[t * count], sizeof(float) * count) != 0)
      wgmma_fault("accumulators were written between the wgmma and its wait");
  }
}

void run_wgmma(const WgmmaOp& op) {
  check_registers_untouched(op);
  float A[64][16], B[16][256];
  if (op.a_from_shared) {
    for (int m = 0; m < 64; ++m)
      for (int k = 0; k < 16; ++k) A[m][k] = shared_operand(op.desc_a, m, k, op.trans_a, op.bf16);
  } else {
    for (int t = 0; t < 128; ++t) {
      const int lane = t % 32, g = lane / 4, c = lane % 4, w = t / 32;
      for (int r = 0; r < 4; ++r) {  // as mma.m16n8k16's A, per warp's 16 rows
        const int row = 16 * w + g + 8 * (r % 2), col = 2 * c + 8 * (r / 2);
        A[row][col] = low(op.a[static_cast<size_t>(t)][static_cast<size_t>(r)], op.bf16);
        A[row][col + 1] = high(op.a[static_cast<size_t>(t)][static_cast<size_t>(r)], op.bf16);
      }
    }
  }
  for (int k = 0; k < 16; ++k)
    for (int n = 0; n < op.n; ++n) B[k][n] = shared_operand(op.desc, n, k, op.trans_b, op.bf16);
  for (int t = 0; t < 128; ++t) {
    const int lane = t % 32, g = lane / 4, c = lane % 4, w = t / 32;
    float* d = op.d[static_cast<size_t>(t)];
    for (int i = 0; i < op.n / 2; ++i) {  // as mma's C, n/8 tiles of 8 columns
      const int e = i % 4, row = 16 * w + g + 8 * (e / 2), col = 8 * (i / 4) + 2 * c + (e % 2);
      float sum = op.accumulate ? d[i] : 0.f;
      for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];
      d[i] = sum;
    }
  }
}

}  // namespace

void wgmma_fence() {}

namespace {

// A hash of the operands every thread of the warpgroup must agree on.
uint64_t agreement(const WgmmaOp& op) {
  return op.desc ^ (op.desc_a * 0x9e3779b97f4a7c15ull) ^ (static_cast<uint64_t>(op.n) << 1) ^
         (op.accumulate ? 0x9e3779b97f4a7c15ull : 0) ^ (op.trans_a ? 0x2545f4914f6cdd1dull : 0) ^
         (op.trans_b ? 0xc2b2ae3d27d4eb4full : 0) ^ (op.bf16 ? 0x165667b19e3779f9ull : 0);
}

// Every thread of the warpgroup posts its accumulator address (and A registers, if any) and the hash of
// its operands; the first thread checks the agreement and queues `op` with the posts.
void queue_wgmma(float* d, const uint32_t* a, WgmmaOp op) {
  if (op.n < 8 || op.n > 256 || op.n % 8 != 0) wgmma_fault("n must be a multiple of 8 in [8, 256]");
  Warpgroup& wg = my_warpgroup();
  const size_t me = thread_idx.x % 128;
  if (a)
    for (int r = 0; r < 4; ++r) wg.a[me][static_cast<size_t>(r)] = a[r];
  wg.a_registers[me] = a;
  wg.d[me] = d;
  wg.uniform[me] = agreement(op);
  wg.barrier.wait();
  if (me == 0) {
    for (uint64_t u : wg.uniform)
      if (u != wg.uniform[0]) wgmma_fault("the warpgroup's threads disagree on the descriptors, shape or flags");
    if (!op.a_from_shared) {
      op.a = wg.a;
      op.a_registers = wg.a_registers;
    }
    op.d = wg.d;
    bool chained = false;
    for (const WgmmaOp& earlier : wg.queued) chained = chained || earlier.d == wg.d;
    if (!chained) {
      const size_t count = static_cast<size_t>(op.n / 2);
      op.d_at_issue.resize(128 * count);
      for (size_t t = 0; t < 128; ++t) std::memcpy(&op.d_at_issue[t * count], wg.d[t], sizeof(float) * count);
    }
    op.group = wg.open_group;
    wg.queued.push_back(op);
  }
  wg.barrier.wait();
}

// The operation's B and shape; A from registers until wgmma_ss says otherwise.
WgmmaOp wgmma_op(int n, uint64_t desc_b, bool accumulate, bool trans_b, bool bf16) {
  WgmmaOp op;
  op.n = n;
  op.desc = desc_b;
  op.accumulate = accumulate;
  op.trans_b = trans_b;
  op.bf16 = bf16;
  return op;
}

}  // namespace

void wgmma_rs(float* d, int n, const uint32_t (&a)[4], uint64_t desc_b, bool accumulate, bool trans_b, bool bf16) {
  queue_wgmma(d, a, wgmma_op(n, desc_b, accumulate, trans_b, bf16));
}

void wgmma_ss(float* d, int n, uint64_t desc_a, uint64_t desc_b, bool accumulate, bool trans_a, bool trans_b,
              bool bf16) {
  WgmmaOp op = wgmma_op(n, desc_b, accumulate, trans_b, bf16);
  op.desc_a = desc_a;
  op.a_from_shared = true;
  op.trans_a = trans_a;
  queue_wgmma(d, nullptr, op);
}

void wgmma_commit() {
  Warpgroup& wg = my_warpgroup();
  wg.barrier.wait();
  if (thread_idx.x % 128 == 0) ++wg.open_group;
  wg.barrier.wait();
}

void wgmma_wait(int newest_left_pending) {
  Warpgroup& wg = my_warpgroup();
  wg.barrier.wait();
  if (thread_idx.x % 128 == 0) {
    const uint64_t limit = wg.open_group >= static_cast<uint64_t>(newest_left_pending)
                               ? wg.open_group - static_cast<uint64_t>(newest_left_pending)
                               : 0;  // groups below `limit` complete
    while (!wg.queued.empty() && wg.queued.front().group < limit) {
      run_wgmma(wg.queued.front());
      wg.queued.pop_front();
    }
  }
  wg.barrier.wait();
}

void warpgroup_sync() { my_warpgroup().barrier.wait(); }

void bulk_reduce_add(float* gmem, const float* smem, uint32_t bytes) {
  const auto* from = reinterpret_cast<const unsigned char*>(smem);
  if (bytes == 0 || bytes % 16 != 0) wgmma_fault("bulk reduce: the size must be a nonzero multiple of 16 bytes");
  if (reinterpret_cast<uintptr_t>(gmem) % 16 != 0 || reinterpret_cast<uintptr_t>(smem) % 16 != 0)
    wgmma_fault("bulk reduce: addresses must be 16-byte aligned");
  if (from < current->shared.data() || from + bytes > current->shared.data() + current->shared.size())
    wgmma_fault("bulk reduce: the source is not inside the block's shared memory");
  scheduler->fibers[scheduler->current].bulks.open.push_back(
      {gmem, smem, bytes, std::vector<float>(smem, smem + bytes / 4)});
}

void bulk_commit() { scheduler->fibers[scheduler->current].bulks.commit(); }

void bulk_wait(int newest_left_pending) {
  scheduler->fibers[scheduler->current].bulks.wait(newest_left_pending, [](const BulkReduce& r) {
    if (std::memcmp(r.from, r.at_issue.data(), r.bytes) != 0)
      wgmma_fault("bulk reduce: its shared source changed between the issue and the wait (a missing barrier "
                  "before it, or a rewrite before wait_group.read)");
    for (uint32_t i = 0; i < r.bytes / 4; ++i) r.to[i] += r.from[i];
  });
}

namespace {
// Rows counted per order counter and branch, this launch; the counters the running block waited on.
std::map<const int*, std::vector<int>> counted_rows;
std::set<const int*> waited_on;
}  // namespace

void add_count(int* counter, int value, int branch) {
  if (branch > 0 && waited_on.count(counter) == 0) {
    std::fprintf(stderr,
                 "emulation: block %u of branch %d counts rows it wrote without having waited for earlier branches' "
                 "rows there\n",
                 block_idx.x, branch);
    std::abort();
  }
  *counter += value;
  std::vector<int>& rows = counted_rows[counter];
  if (rows.size() <= static_cast<size_t>(branch)) rows.resize(static_cast<size_t>(branch) + 1, 0);
  rows[static_cast<size_t>(branch)] += value;
}

void wait_for_count(const int* counter, int expected, int branch) {
  int earlier = 0;
  const auto it = counted_rows.find(counter);
  for (int e = 0; it != counted_rows.end() && e < branch && e < static_cast<int>(it->second.size()); ++e)
    earlier += it->second[static_cast<size_t>(e)];
  waited_on.insert(counter);
  if (expected == earlier && *counter >= expected) return;
  std::fprintf(stderr,
               "emulation: block %u of branch %d waits for %d rows written and earlier branches wrote %d there (%d "
               "in all): on a GPU it would %s\n",
               block_idx.x, branch, expected, earlier, *counter,
               expected > earlier ? "wait for ever" : "write before them");
  std::abort();
}

void launch(unsigned blocks, unsigned threads, size_t shared_bytes, const std::function<void()>& body) {
  if (threads % 32 != 0) throw std::invalid_argument("emulation: threads must be whole warps");
  counted_rows.clear();
  constexpr size_t kStack = 256 * 1024;
  for (unsigned b = 0; b < blocks; ++b) {
    Block block;
    block.shared.assign(shared_bytes, 0xff);
    waited_on.clear();
    block.barrier = std::make_unique<Barrier>(static_cast<int>(threads));
    for (unsigned w = 0; w < threads / 32; ++w) block.warps.push_back(std::make_unique<Warp>());
    for (unsigned w = 0; w < threads / 128; ++w) block.warpgroups.push_back(std::make_unique<Warpgroup>());
    Scheduler s;
    s.body = &body;
    s.fibers.resize(threads);
    for (unsigned t = 0; t < threads; ++t) {
      Fiber& f = s.fibers[t];
      f.id = t;
      f.stack = fiber_stack(t, kStack);
      start_stack(f.context, f.stack, kStack, fiber_main);
    }
    scheduler = &s;
    current = &block;
    block_idx = {b, 0, 0};
    block_dim = {threads, 1, 1};
    grid_dim = {blocks, 1, 1};
    for (size_t running = threads; running > 0;) {
      running = 0;
      size_t resumed = 0;
      for (size_t t = 0; t < threads; ++t) {
        Fiber& f = s.fibers[t];
        if (f.done) continue;
        ++running;
        if (f.waiting_on && f.waiting_on->generation() == f.waiting_generation) continue;  // still blocked
        ++resumed;
        s.current = t;
        thread_idx = {static_cast<unsigned>(t), 0, 0};
        switch_context(s.main, f.context);
        if (f.done && !f.copies.empty())
          throw std::logic_error("emulation: a thread ended with cp.async copies never waited for");
        if (f.done && !f.bulks.empty())
          throw std::logic_error("emulation: a thread ended with bulk reductions never waited for");
      }
      if (running > 0 && resumed == 0)
        throw std::logic_error("emulation: every live thread waits at a barrier the others never reach");
    }
    for (const auto& wg : block.warpgroups)
      if (!wg->queued.empty()) throw std::logic_error("emulation: a warpgroup ended with wgmma operations never waited for");
    scheduler = nullptr;
    current = nullptr;
  }
}

uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float bf16_value(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

uint16_t fp16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to infinity
  if (a < 0x38800000u) {                                               // below 2^-14: subnormal units 2^-24
    float m;
    std::memcpy(&m, &a, 4);
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(m * 16777216.0f)));
  }
  uint32_t h = ((a >> 23) - 112u) << 10 | ((a & 0x7fffffu) >> 13);
  const uint32_t rest = a & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

float fp16_value(uint16_t bits) {
  const float sign = (bits & 0x8000u) ? -1.f : 1.f;
  const int exponent = (bits >> 10) & 0x1f, mantissa = bits & 0x3ff;
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -24);
  if (exponent == 31) return mantissa ? NAN : sign * INFINITY;
  return sign * std::ldexp(1.f + static_cast<float>(mantissa) / 1024.f, exponent - 15);
}

}  // namespace longctx::cuda::emulation
