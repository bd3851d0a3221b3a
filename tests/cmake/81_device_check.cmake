# 81_device_check.cmake - tests/test_device_check.sh: scripts/device_check.sh,
# the one command a lent GPU machine runs, proven here without a GPU: its
# --dry-run-cpu runs every stage on the CPU with this build's binaries
# (exit 0 in under 90 s, results.json with every stage and a reason for each
# one not available, at most 8 files two folders deep, the table last); a
# planted broken test_backend_cmp fails it (exit 1) and a planted hang times
# out inside --deadline; --stages runs a subset; a hang inside a trajectory
# run (deaf to TERM, one process escaped from every timeout's group) times
# the stage out with the rows done before it kept and nothing left running;
# TERM during a stage still writes results.json; without the dry run the
# preflight exits 77 with one "no GPU" line, and on a stand-in GPU machine
# (a fake nvidia-smi) 2, 78 and 79, and a whole GPU-mode run with a crashing
# test_backend_cmp ends in a complete results.json naming the crash; a bad
# argument exits 2. Needs /usr/bin/python3 with torch, h5py and numpy (the
# trajectory's PyTorch check), mpirun.
add_test(NAME device_check
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_device_check.sh ${CMAKE_SOURCE_DIR}
                 ${CMAKE_BINARY_DIR})
set_tests_properties(device_check PROPERTIES
  LABELS "mpi"
  TIMEOUT 300
  RUN_SERIAL TRUE
  ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")
