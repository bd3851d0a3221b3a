# Checkpoints and model files under tensor and pipeline parallelism
# (tests/test_ckpt_shard.c): every (tp, pp) grid of 2, 3 and 4 ranks
# writes, and every grid of the same ranks loads, exactly (the issue caps
# tests at 4 ranks; `mpirun -np 8` runs dp, tp and pp all 2, in about a minute).
add_executable(test_ckpt_shard ${CMAKE_SOURCE_DIR}/tests/test_ckpt_shard.c)
target_compile_options(test_ckpt_shard PRIVATE ${MT_WARN})
target_link_libraries(test_ckpt_shard PRIVATE mt_core)
foreach(np 2 3 4)
  add_test(NAME ckpt_shard_np${np}
           COMMAND ${MPIEXEC_EXECUTABLE} -np ${np} --oversubscribe $<TARGET_FILE:test_ckpt_shard>)
  set_tests_properties(ckpt_shard_np${np} PROPERTIES TIMEOUT 600 ENVIRONMENT
    "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMP_NUM_THREADS=1")
endforeach()
