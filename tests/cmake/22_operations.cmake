# Operations (docs/TRAINING.md): the NaN policy, and every error path's line
# in a merged (2>&1) log, with faults injected through MPITRAIN_FAULT.
foreach(t nan_policy error_lines)
  add_test(NAME ${t}
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_${t}.sh $<TARGET_FILE:mpitrain>
                   ${CMAKE_SOURCE_DIR} ${MT_MNIST})
  set_tests_properties(${t} PROPERTIES FIXTURES_REQUIRED mnist TIMEOUT 300
                       ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")
endforeach()
