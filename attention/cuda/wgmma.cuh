// Warpgroup MMA (wgmma, sm_90a) for the Hopper kernels (flash_blocks_wgmma.cuh): D (+)= A B with A, 64 x 16,
// from registers (per warp of the warpgroup exactly mma.m16n8k16's A fragment of its 16 rows) or from
// shared memory, and B, 16 x N, from shared memory, through matrix descriptors; D's registers per warp
// are mma's C tiles, N / 8 of them.
// Issued by all 128 threads of a warpgroup; asynchronous: wgmma_fence before a batch (after the registers
// it reads were written), commit, then wait before the accumulators are read or B's memory is rewritten.
// Included by flash_blocks_wgmma.cuh only (after flash_device.cuh defines LONGCTX_KERNELS; emulated with
// LONGCTX_GPU_EMULATION).
#pragma once

// Whether this compilation pass has the wgmma code: the sm_90a device pass and the CPU emulation. The
// compute_90 PTX (for newer GPUs) does not: wgmma is specific to 9.0, and the host never launches the
// Hopper kernel there (wgmma_compiled_here() probes which code the GPU runs).
#if defined(LONGCTX_GPU_EMULATION) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define LONGCTX_HAVE_WGMMA 1
#else
#define LONGCTX_HAVE_WGMMA 0
#endif

namespace longctx::cuda::LONGCTX_KERNELS {

// A descriptor for a no-swizzle canonical layout (PTX ISA, "Matrix Descriptor Format"): start address,
// leading byte offset (between core matrices along K) and stride byte offset (along M / N), in 16-byte
// units at bits 0-13, 16-29 and 32-45; base offset and swizzle mode 0. A core matrix is 8 rows of 16
// contiguous bytes.
__device__ __forceinline__ uint64_t smem_descriptor(const void* start, uint32_t leading_bytes, uint32_t stride_bytes) {
#ifdef LONGCTX_GPU_EMULATION
  const uint32_t address = emulation::shared_address(start);
#else
  const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(start));
#endif
  return static_cast<uint64_t>((address >> 4) & 0x3fffu) | static_cast<uint64_t>((leading_bytes >> 4) & 0x3fffu) << 16 |
         static_cast<uint64_t>((stride_bytes >> 4) & 0x3fffu) << 32;
}

template <class T, int N> struct Wgmma;    // A from registers
template <class T, int N> struct WgmmaSS;  // A from shared memory

#ifdef LONGCTX_GPU_EMULATION
__device__ __forceinline__ void wgmma_fence() { emulation::wgmma_fence(); }
__device__ __forceinline__ void wgmma_commit() { emulation::wgmma_commit(); }
template <int N> __device__ __forceinline__ void wgmma_wait() { emulation::wgmma_wait(N); }
template <class R> __device__ __forceinline__ void fence_operand(R&) {}
// Writes by the threads (cp.async) made visible to wgmma's reads: nothing to do on the CPU.
__device__ __forceinline__ void fence_proxy_async() {}
__device__ __forceinline__ void warpgroup_sync(int) { emulation::warpgroup_sync(); }
__device__ __forceinline__ void bulk_reduce_add(float* gmem, const float* smem, uint32_t bytes) {
  emulation::bulk_reduce_add(gmem, smem, bytes);
}
__device__ __forceinline__ void bulk_commit() { emulation::bulk_commit(); }
template <int N> __device__ __forceinline__ void bulk_wait_read() { emulation::bulk_wait(N); }
template <int N> __device__ __forceinline__ void bulk_wait() { emulation::bulk_wait(N); }
template <class T, int N> struct Wgmma {
  template <int TRANS_B>
  static void rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc, int accumulate) {
    emulation::wgmma_rs(d, N, a, desc, accumulate != 0, TRANS_B != 0, std::is_same<T, __nv_bfloat16>::value);
  }
};
template <class T, int N> struct WgmmaSS {
  template <int TRANS_A, int TRANS_B>
  static void ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, int accumulate) {
    emulation::wgmma_ss(d, N, desc_a, desc_b, accumulate != 0, TRANS_A != 0, TRANS_B != 0,
                        std::is_same<T, __nv_bfloat16>::value);
  }
};
#elif LONGCTX_HAVE_WGMMA
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Pins a register's reads and writes on this side of the surrounding wgmma fence / wait (the compiler
// does not know the accumulators change between issue and wait).
__device__ __forceinline__ void fence_operand(float& r) { asm volatile("" : "+f"(r)::"memory"); }
__device__ __forceinline__ void fence_operand(uint32_t& r) { asm volatile("" : "+r"(r)::"memory"); }
// The threads' cp.async writes (generic proxy) before wgmma reads them (async proxy).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// bar.sync on warpgroup wg's (0 or 1) 128 threads alone: named barrier 1 + wg (0 is __syncthreads').
// (Immediate ids: with a register id ptxas reserves all 16 barriers.)
__device__ __forceinline__ void warpgroup_sync(int wg) {
  if (wg == 0)
    asm volatile("bar.sync 1, 128;\n" ::: "memory");
  else
    asm volatile("bar.sync 2, 128;\n" ::: "memory");
}
// gmem[0 .. bytes / 4) += smem[...] as fp32, element-wise atomic adds done by the bulk copy engine
// (cp.reduce.async.bulk, sm_90): one request per row where atomics take one per pair. bytes a multiple of
// 16, both addresses 16-byte aligned; smem written by the threads needs fence_proxy_async first.
__device__ __forceinline__ void bulk_reduce_add(float* gmem, const float* smem, uint32_t bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(gmem),
               "r"(static_cast<uint32_t>(__cvta_generic_to_shared(smem))), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// All but the newest N of this thread's bulk groups have read their shared memory (it may be rewritten) /
// are complete.
template <int N> __device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}
template <int N> __device__ __forceinline__ void bulk_wait() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}

// The accumulator operand lists, per count of f32 registers (N / 2): the template string and the outputs.
#define LONGCTX_WGMMA_ACC8 \
  "{%0, %1, %2, %3, %4, %5, %6, %7}"
#define LONGCTX_WGMMA_ACC8_OUT(d) \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
#define LONGCTX_WGMMA_ACC16 \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}"
#define LONGCTX_WGMMA_ACC16_OUT(d) \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
  "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
#define LONGCTX_WGMMA_ACC32 \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "\
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define LONGCTX_WGMMA_ACC32_OUT(d) \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
  "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
  "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
  "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define LONGCTX_WGMMA_ACC64 \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "\
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "\
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "\
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define LONGCTX_WGMMA_ACC64_OUT(d) \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
  "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
  "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
  "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
  "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
  "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
  "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
  "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])

// A from registers: after the N / 2 accumulators come A's 4 registers, the descriptor of B, the scale-d
// predicate and trans-b (A, DESC, PRED, TRANS: their operand numbers); imm-scale-a = imm-scale-b = 1.
#define LONGCTX_WGMMA_RS(T, TY, N, ACC, ACC_OUT, A, DESC, PRED, TRANS)                                        \
  template <> struct Wgmma<T, N> {                                                                            \
    template <int TRANS_B>                                                                                    \
    static __device__ __forceinline__ void rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc,       \
                                              int accumulate) {                                               \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " PRED ", 0;\nwgmma.mma_async.sync.aligned.m64n" #N     \
                   "k16.f32." TY "." TY " " ACC ", " A ", " DESC ", p, 1, 1, " TRANS ";\n}\n"                 \
                   : ACC_OUT(d)                                                                               \
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate), "n"(TRANS_B)); \
    }                                                                                                         \
  };
// A from shared memory: the descriptors of A and B, the scale-d predicate, then trans-a and trans-b.
#define LONGCTX_WGMMA_SS(T, TY, N, ACC, ACC_OUT, DESC_A, DESC_B, PRED, TRANS_A_OP, TRANS_B_OP)               \
  template <> struct WgmmaSS<T, N> {                                                                          \
    template <int TRANS_A, int TRANS_B>                                                                       \
    static __device__ __forceinline__ void ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b,            \
                                              int accumulate) {                                               \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " PRED ", 0;\nwgmma.mma_async.sync.aligned.m64n" #N     \
                   "k16.f32." TY "." TY " " ACC ", " DESC_A ", " DESC_B ", p, 1, 1, " TRANS_A_OP ", " TRANS_B_OP \
                   ";\n}\n"                                                                                    \
                   : ACC_OUT(d)                                                                               \
                   : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(TRANS_A), "n"(TRANS_B));                 \
    }                                                                                                         \
  };
#define LONGCTX_WGMMA_SHAPES(T, TY)                                                                           \
  LONGCTX_WGMMA_RS(T, TY, 32, LONGCTX_WGMMA_ACC16, LONGCTX_WGMMA_ACC16_OUT, "{%16, %17, %18, %19}", "%20", "%21", "%22") \
  LONGCTX_WGMMA_RS(T, TY, 64, LONGCTX_WGMMA_ACC32, LONGCTX_WGMMA_ACC32_OUT, "{%32, %33, %34, %35}", "%36", "%37", "%38") \
  LONGCTX_WGMMA_RS(T, TY, 128, LONGCTX_WGMMA_ACC64, LONGCTX_WGMMA_ACC64_OUT, "{%64, %65, %66, %67}", "%68", "%69", "%70") \
  LONGCTX_WGMMA_SS(T, TY, 16, LONGCTX_WGMMA_ACC8, LONGCTX_WGMMA_ACC8_OUT, "%8", "%9", "%10", "%11", "%12")               \
  LONGCTX_WGMMA_SS(T, TY, 32, LONGCTX_WGMMA_ACC16, LONGCTX_WGMMA_ACC16_OUT, "%16", "%17", "%18", "%19", "%20")          \
  LONGCTX_WGMMA_SS(T, TY, 64, LONGCTX_WGMMA_ACC32, LONGCTX_WGMMA_ACC32_OUT, "%32", "%33", "%34", "%35", "%36")
LONGCTX_WGMMA_SHAPES(__nv_bfloat16, "bf16")
LONGCTX_WGMMA_SHAPES(__half, "f16")
#undef LONGCTX_WGMMA_SHAPES
#undef LONGCTX_WGMMA_SS
#undef LONGCTX_WGMMA_RS
#else
// Passes without wgmma (host, compute_90 PTX): the kernel's body is compiled out there.
#endif

}  // namespace longctx::cuda::LONGCTX_KERNELS
