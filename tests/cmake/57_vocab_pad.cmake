# 57_vocab_pad.cmake - tests/test_vocab_pad.sh: model.vocab_pad (the GPT's
# vocabulary padded in memory) against no padding at 1 rank (fused and
# unfused) and at dp 2 x tp 2, dp 2 x pp 2 with ZeRO-1; checkpoints without
# the padding (resumed across paddings, bitwise model.h5); generate from a
# padded run. Needs /usr/bin/python3 with h5py and numpy.
add_test(NAME gpt_vocab_pad
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_vocab_pad.sh $<TARGET_FILE:mpitrain>
                 $<TARGET_FILE:h5cmp> ${CMAKE_SOURCE_DIR})
set_tests_properties(gpt_vocab_pad PROPERTIES
  LABELS "mpi"
  TIMEOUT 600
  ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")
