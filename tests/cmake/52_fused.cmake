# 52_fused.cmake - tests/test_fused.sh: train.fused (flash attention, residual
# + LayerNorm, bias + GELU, one-pass cross-entropy, one AdamW pass) against
# the unfused ops for the MLP and the GPT in fp32 and bf16, bitwise across
# thread counts and a stop + resume, within 1e-5 across dp and tp x pp, and a
# smaller activation estimate. Needs /usr/bin/python3 with h5py and numpy.
add_test(NAME fused_train
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_fused.sh $<TARGET_FILE:mpitrain>
                 $<TARGET_FILE:h5cmp> ${CMAKE_SOURCE_DIR} ${MT_MNIST})
set_tests_properties(fused_train PROPERTIES
  FIXTURES_REQUIRED mnist
  LABELS "mpi"
  TIMEOUT 600
  ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")
