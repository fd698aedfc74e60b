# Tests of io/ (owned with io/).
longctx_mpi_test(test_io_rows SOURCES test_io_rows.cpp DEPS longctx_io RANKS 1 2 3 4)
longctx_mpi_test(test_io_checkpoint SOURCES test_io_checkpoint.cpp DEPS longctx_io RANKS 1 2 3 4)
longctx_mpi_test(test_io_dump_tokens SOURCES test_io_dump_tokens.cpp DEPS longctx_io RANKS 1 2 3 4)
longctx_mpi_test(test_io_token_import SOURCES test_io_token_import.cpp DEPS longctx_io RANKS 1)

# An outside reader: h5py (Debian python3-h5py) reads a checkpoint and a dump written by 1 and 3 ranks.
add_executable(io_h5py_writer io_h5py_writer.cpp)
target_compile_options(io_h5py_writer PRIVATE ${LONGCTX_WARNINGS} ${LONGCTX_CPU_FLAGS})
target_link_libraries(io_h5py_writer PRIVATE longctx_io)
foreach(np 1 3)
  set(dir ${CMAKE_CURRENT_BINARY_DIR}/io_h5py_check_np${np})
  add_test(NAME io_h5py_read.np${np}
           COMMAND sh -c "rm -rf ${dir} && mkdir -p ${dir} && ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} --oversubscribe --bind-to none $<TARGET_FILE:io_h5py_writer> ${dir} && /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/h5py_read_check.py ${dir} ${np}")
  set_tests_properties(io_h5py_read.np${np} PROPERTIES TIMEOUT 300 PROCESSORS ${np}
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMP_NUM_THREADS=1;OMPI_MCA_rmaps_base_oversubscribe=1")
endforeach()
