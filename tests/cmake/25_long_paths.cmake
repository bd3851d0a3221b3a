# Paths of any length (tests/test_long_paths.sh): config values up to
# PATH_MAX - 1 characters, a run, its checkpoints, resume and registry under
# a folder about 3,000 characters deep.
add_test(NAME long_paths
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_long_paths.sh $<TARGET_FILE:mpitrain>
                 ${CMAKE_SOURCE_DIR} ${MT_MNIST})
set_tests_properties(long_paths PROPERTIES FIXTURES_REQUIRED mnist TIMEOUT 300
                     ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")
