# configs/gpt2_124m.ini, the GPT-2 124M preset, run for 2 steps on 2 ranks
# at 1 sequence of 64 tokens each (tests/test_gpt2_preset.sh).
add_test(NAME gpt2_preset
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_gpt2_preset.sh $<TARGET_FILE:mpitrain>
                 ${CMAKE_SOURCE_DIR})
set_tests_properties(gpt2_preset PROPERTIES TIMEOUT 300 LABELS "mpi"
                     ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1;OMP_NUM_THREADS=1")
