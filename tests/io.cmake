# Tests of io/ (owned with io/).
longctx_mpi_test(test_io_rows SOURCES test_io_rows.cpp DEPS longctx_io RANKS 1 2 3 4)
longctx_mpi_test(test_io_checkpoint SOURCES test_io_checkpoint.cpp DEPS longctx_io RANKS 1 2 3 4)
longctx_mpi_test(test_io_dump_tokens SOURCES test_io_dump_tokens.cpp DEPS longctx_io RANKS 1 2 3 4)
