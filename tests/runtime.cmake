# Tests of runtime/: launcher detection, options, and the CLI end to end.
longctx_test(test_launcher_and_options SOURCES test_launcher_and_options.cpp DEPS longctx_runtime)
longctx_test(test_watchdog SOURCES test_watchdog.cpp DEPS longctx_runtime)

# CLI tests are shell scripts run against the real binary: longctx_cli_test(NAME SCRIPT)
function(longctx_cli_test name script)
  add_test(NAME ${name} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli/${script} $<TARGET_FILE:longctx>)
  set_tests_properties(${name} PROPERTIES TIMEOUT 900 PROCESSORS 2
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMP_NUM_THREADS=1")
endfunction()
longctx_cli_test(cli_info_and_options info_and_options.sh)
longctx_cli_test(cli_config_and_env_options config_and_env_options.sh)
longctx_cli_test(cli_slurm_launch slurm_launch.sh)
set_tests_properties(cli_slurm_launch PROPERTIES RUN_SERIAL TRUE)
longctx_test(test_model SOURCES test_model.cpp DEPS longctx_runtime)
longctx_cli_test(cli_attend attend.sh)
# Ranks stopped under gdb inside the MPI calls that have no timeout: the watchdog ends the job.
longctx_cli_test(cli_untimed_calls untimed_calls.sh)
set_tests_properties(cli_untimed_calls PROPERTIES SKIP_RETURN_CODE 77)
longctx_cli_test(cli_bench bench.sh)
longctx_cli_test(cli_data data.sh)
add_test(NAME cli_ckpt_and_data COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli/ckpt_and_data.sh $<TARGET_FILE:longctx> $<TARGET_FILE:io_h5py_writer>)
set_tests_properties(cli_ckpt_and_data PROPERTIES TIMEOUT 600 PROCESSORS 2
  ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMP_NUM_THREADS=1")
longctx_mpi_test(test_trainer SOURCES test_trainer.cpp DEPS longctx_runtime RANKS 1 2 4)
longctx_cli_test(cli_train train.sh)
longctx_cli_test(cli_eval eval.sh)
# The pack that carries longctx's run-time libraries and Open MPI to a GPU machine without them.
longctx_cli_test(cli_device_pack device_pack.sh)
set_tests_properties(cli_device_pack PROPERTIES SKIP_RETURN_CODE 77)
