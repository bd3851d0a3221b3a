# bad_input.cmake - tests/test_bad_input.sh: every bad input to `mpitrain train`
# (missing/invalid data, bad config keys and values, bad command line) fails
# on every rank with the same status (2 usage/config, 3 data), one
# `mpitrain: error:` line, no hang and no files written; under mpirun -np 2
# (some also -np 4 and without mpirun), plus a positive control that trains.
# Needs /usr/bin/python3 with h5py and numpy; fails (not skips) without them.
# Included from tests/CMakeLists.txt.
add_test(NAME bad_input
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_bad_input.sh
                 $<TARGET_FILE:mpitrain> ${CMAKE_SOURCE_DIR})
set_tests_properties(bad_input PROPERTIES
  LABELS "mpi"
  TIMEOUT 300
  ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1;OMP_NUM_THREADS=1")
