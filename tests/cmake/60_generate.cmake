# `mpitrain generate`: sampling from GPT checkpoints trained on this
# repository's docs. The MNIST file, when the mnist fixture has made it,
# adds the check that an MLP checkpoint is refused.
add_test(NAME generate
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_generate.sh $<TARGET_FILE:mpitrain>
                 ${CMAKE_SOURCE_DIR} ${MT_MNIST})
set_tests_properties(generate PROPERTIES TIMEOUT 300
                     ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1;OMP_NUM_THREADS=1")
