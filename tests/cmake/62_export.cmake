# 62_export.cmake - tests/test_export.sh: `mpitrain export --format
# safetensors` of a tiny GPT (names, Conv1D transposes, config.json, a padded
# vocabulary) and of the MLP on MNIST, checked by an independent reader and a
# PyTorch GPT-2 that reproduces mpitrain's validation loss
# (tests/reference/export_check.py, /usr/bin/python3 with numpy, h5py and
# torch); overwriting and bad input. About 20 s on 2 cores.
add_test(NAME export
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_export.sh $<TARGET_FILE:mpitrain>
                 ${CMAKE_SOURCE_DIR} ${MT_MNIST})
set_tests_properties(export PROPERTIES FIXTURES_REQUIRED mnist TIMEOUT 120
                     LABELS "mpi"
                     ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")
