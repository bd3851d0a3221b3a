add_test(NAME cli COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_cli.sh $<TARGET_FILE:mpitrain>
                          ${CMAKE_SOURCE_DIR})
set_tests_properties(cli PROPERTIES TIMEOUT 120)
