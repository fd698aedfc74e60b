# Tests of comm/ (owned with comm/).
longctx_mpi_test(test_comm SOURCES test_comm.cpp DEPS longctx_comm RANKS 1 2 3 4)
# Device buffers: the staged path and NCCL (skips without a GPU; CUDA builds only).
if(LONGCTX_HAVE_CUDA AND LONGCTX_NCCL_INCLUDE_DIR)
  longctx_mpi_test(test_comm_device SOURCES test_comm_device.cpp DEPS longctx_comm CUDA::cudart_static RANKS 1 2)
endif()
