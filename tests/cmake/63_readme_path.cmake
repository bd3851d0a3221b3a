# The README's whole path with GPT-2's tokenizer, its commands read from
# README.md and run as written (tests/test_readme_path.sh): fetch the
# vocabulary, tokenize, train on 2 ranks (about a minute), plot, generate,
# export, load the export into PyTorch. Exit 77: skipped, saying why.
add_test(NAME readme_path
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_readme_path.sh $<TARGET_FILE:mpitrain>
                 ${CMAKE_SOURCE_DIR})
set_tests_properties(readme_path PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77 LABELS "mpi"
                     ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1;OMP_NUM_THREADS=1")
