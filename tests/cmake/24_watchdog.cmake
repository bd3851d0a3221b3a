# The communication watchdog (docs/PARALLEL.md, "Watchdog"): parallel.timeout
# names the rank behind a stalled collective and ends the job with exit 5.
add_test(NAME watchdog
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_watchdog.sh $<TARGET_FILE:mpitrain>
                 ${CMAKE_SOURCE_DIR} ${MT_MNIST})
set_tests_properties(watchdog PROPERTIES FIXTURES_REQUIRED mnist TIMEOUT 300
                     ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")
