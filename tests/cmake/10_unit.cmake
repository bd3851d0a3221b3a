# Unit test programs, linked against the engine library.
function(mt_unit_test name)
  add_executable(${name} ${CMAKE_SOURCE_DIR}/tests/${name}.c)
  target_compile_options(${name} PRIVATE ${MT_WARN})
  target_link_libraries(${name} PRIVATE mtcore)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT 120 ENVIRONMENT "OMP_NUM_THREADS=1")
endfunction()

mt_unit_test(test_gradcheck)
mt_unit_test(test_config)
mt_unit_test(test_core)
mt_unit_test(test_registry)
mt_unit_test(test_gpt_ops)
