# 80_device.cmake - tests/test_device.sh: train.device and train.precision
# (docs/CUDA.md) on the CPU: device = cuda without a GPU is one clear error,
# auto falls back, the trainer's, pipeline's and comms' device-memory paths
# (MPITRAIN_TEST_STAGED=1) give bitwise the CPU's results at dp2, tp2.pp2,
# pp2 and pp4 and across a stop and resume, and bf16 (emulated matmuls,
# bf16-stored activations) stays within 1e-3 of fp32 and halves the stored
# activations. Needs /usr/bin/python3 with h5py and numpy.
add_test(NAME device_paths
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_device.sh $<TARGET_FILE:mpitrain>
                 ${CMAKE_SOURCE_DIR} ${MT_MNIST})
set_tests_properties(device_paths PROPERTIES
  FIXTURES_REQUIRED mnist
  LABELS "mpi"
  TIMEOUT 600
  ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")
