# The GPT model: whole-model gradient check, dropout masks, shape errors.
mt_unit_test(test_gpt_model)

# PyTorch parity of the model and AdamW: tests/gpt_parity writes the run,
# tests/reference/gpt_parity.py repeats it in PyTorch and compares.
add_executable(gpt_parity ${CMAKE_SOURCE_DIR}/tests/gpt_parity.c)
target_compile_options(gpt_parity PRIVATE ${MT_WARN})
target_link_libraries(gpt_parity PRIVATE mt_core)
add_test(NAME gpt_torch_parity
         COMMAND bash -c "$<TARGET_FILE:gpt_parity> gpt_parity_run.h5 10 && /usr/bin/python3 ${CMAKE_SOURCE_DIR}/tests/reference/gpt_parity.py gpt_parity_run.h5")
set_tests_properties(gpt_torch_parity PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
                     ENVIRONMENT "OMP_NUM_THREADS=1")
# The same with the fused ops (train.fused: flash attention, residual +
# LayerNorm, bias + GELU, one-pass cross-entropy, one AdamW pass).
add_test(NAME gpt_torch_parity_fused
         COMMAND bash -c "$<TARGET_FILE:gpt_parity> gpt_parity_fused.h5 10 fused && /usr/bin/python3 ${CMAKE_SOURCE_DIR}/tests/reference/gpt_parity.py gpt_parity_fused.h5")
set_tests_properties(gpt_torch_parity_fused PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
                     ENVIRONMENT "OMP_NUM_THREADS=1")

# Training the GPT model through `mpitrain train` on tests/data/gpt_corpus.txt.
add_test(NAME gpt_train
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_gpt_train.sh $<TARGET_FILE:mpitrain>
                 $<TARGET_FILE:h5cmp> ${CMAKE_SOURCE_DIR})
set_tests_properties(gpt_train PROPERTIES TIMEOUT 600
                     ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1;OMP_NUM_THREADS=1")
