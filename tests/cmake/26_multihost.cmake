# 26_multihost.cmake - tests/test_multihost.sh: training across two hosts for
# real (docs/MULTIHOST.md). Two network namespaces joined by a veth pair, each
# with its own address (10.213.0.0/24, inside the namespaces only), host name,
# /tmp and /dev/shm; mpirun on one reaches the other over TCP through an rsh
# agent that enters its namespaces. dp2 (a rank per host), dp2.tp2 and dp2.pp2
# (partners on different hosts) give the one-host run's losses (exact text)
# and final checkpoint (bitwise); the registry names both hosts. Needs root,
# iproute2 and util-linux; exits 77 (skipped, saying why) where namespaces
# cannot be made. RUN_SERIAL: its two-host runs are timed and its /proc scan
# at cleanup should see only its own namespaces' processes.
# MT_MPI_ENV comes from 20_mnist.cmake (included before this file).
add_test(NAME multihost
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_multihost.sh $<TARGET_FILE:mpitrain>
                 $<TARGET_FILE:h5cmp> ${CMAKE_SOURCE_DIR})
set_tests_properties(multihost PROPERTIES
  LABELS "mpi"
  TIMEOUT 240
  RUN_SERIAL TRUE
  SKIP_RETURN_CODE 77
  ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")
