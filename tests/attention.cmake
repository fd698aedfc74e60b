# Tests of attention/ (owned with attention/).
longctx_test(test_attention_schedule SOURCES test_attention_schedule.cpp DEPS longctx_attention)
longctx_test(test_attention_tile SOURCES test_attention_tile.cpp DEPS longctx_attention)
longctx_test(test_attention_cpu SOURCES test_attention_cpu.cpp DEPS longctx_attention)
longctx_test(test_attention_gradcheck SOURCES test_attention_gradcheck.cpp DEPS longctx_attention)

# Kernel timing driver (not a test): bench_attention_kernels --seq-len ... ; see jobs/bench/.
add_executable(bench_attention_kernels bench_attention_kernels.cpp)
target_compile_options(bench_attention_kernels PRIVATE ${LONGCTX_WARNINGS} ${LONGCTX_CPU_FLAGS})
target_link_libraries(bench_attention_kernels PRIVATE longctx_attention)

# Sequence-parallel (sharded equals unsharded) at 1-4 ranks.
longctx_mpi_test(test_sequence_parallel SOURCES test_sequence_parallel.cpp DEPS longctx_attention longctx_comm RANKS 1 2 3 4)

# The tensor-core kernels' row arithmetic, on the host (every build).
longctx_test(test_flash_layout SOURCES test_flash_layout.cpp DEPS longctx_attention)
longctx_test(test_flash_emulation SOURCES test_flash_emulation.cpp DEPS longctx_attention)
# The kernels' own source on the CPU (GPU emulation: a fiber per GPU thread), every build.
longctx_test(test_flash_kernels_emulated SOURCES test_flash_kernels_emulated.cpp gpu_emulation.cpp
             DEPS longctx_attention)

# CUDA backend vs the reference (skips without a GPU or without CUDA in the build).
longctx_test(test_attention_cuda SOURCES test_attention_cuda.cpp DEPS longctx_attention)
if(LONGCTX_HAVE_CUDA AND LONGCTX_NCCL_INCLUDE_DIR)
  # The distributed GPU path (staged through MPI, ranks may share one GPU) equals one GPU; skips without a GPU.
  longctx_mpi_test(test_sequence_parallel_cuda SOURCES test_sequence_parallel_cuda.cpp
                   DEPS longctx_attention longctx_comm RANKS 1 2 4)
endif()
target_compile_options(test_flash_kernels_emulated PRIVATE -Wno-unknown-pragmas)  # CUDA's #pragma unroll
