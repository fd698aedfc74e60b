# Tests of comm/ (owned with comm/).
longctx_mpi_test(test_comm SOURCES test_comm.cpp DEPS longctx_comm RANKS 1 2 3 4)
