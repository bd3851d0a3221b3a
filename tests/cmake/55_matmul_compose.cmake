# The compositions the products with epilogues are specified by
# (tests/matmul_compose.c), shared by the tests that compare with them or
# run the model on them (test_matmul_lt builds it in itself).
target_sources(test_backend_cmp PRIVATE ${CMAKE_SOURCE_DIR}/tests/matmul_compose.c)
target_sources(test_gpt_model PRIVATE ${CMAKE_SOURCE_DIR}/tests/matmul_compose.c)
