# The model registry: file-level unit test (test_registry, in 10_unit.cmake)
# and training runs plus the `mpitrain registry` commands on real MNIST.
add_test(NAME registry_runs
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_registry.sh $<TARGET_FILE:mpitrain>
                 ${CMAKE_SOURCE_DIR} ${MT_MNIST})
set_tests_properties(registry_runs PROPERTIES FIXTURES_REQUIRED mnist TIMEOUT 300
                     ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")
