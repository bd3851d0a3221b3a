# tokens.cmake - ctest entries for llm.c token shards (io/tokens.c) and
# `mpitrain data tokenize`. Included from tests/CMakeLists.txt after
# 10_unit.cmake (fragments are included in sorted order), which defines
# mt_unit_test.
mt_unit_test(test_tokens)
set_tests_properties(test_tokens PROPERTIES LABELS "data")

# The CLI on a small text made by the script; checks the shards with python3
# and numpy, exits 77 (skipped) without them.
add_test(NAME data_tokenize
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_tokenize.sh $<TARGET_FILE:mpitrain>)
set_tests_properties(data_tokenize PROPERTIES LABELS "data" TIMEOUT 120 SKIP_RETURN_CODE 77)
