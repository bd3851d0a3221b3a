# Unit test programs, linked against the engine library.
function(mt_unit_test name)
  add_executable(${name} ${CMAKE_SOURCE_DIR}/tests/${name}.c)
  target_compile_options(${name} PRIVATE ${MT_WARN})
  target_link_libraries(${name} PRIVATE mt_core)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT 120 ENVIRONMENT "OMP_NUM_THREADS=1")
endfunction()

mt_unit_test(test_gradcheck)
mt_unit_test(test_config)
mt_unit_test(test_core)
mt_unit_test(test_registry)
mt_unit_test(test_gpt_ops)

# The CUDA backend against the CPU backend, op by op (tests/test_backend_cmp.c).
# Without a GPU, or in a build without CUDA, it says why and ctest reports it
# as skipped (exit 77).
mt_unit_test(test_backend_cmp)
set_tests_properties(test_backend_cmp PROPERTIES SKIP_RETURN_CODE 77)
# The same program checks its own harness everywhere: the CPU backend
# compared with itself must pass every check.
add_test(NAME test_backend_cmp_self COMMAND test_backend_cmp)
set_tests_properties(test_backend_cmp_self PROPERTIES TIMEOUT 120
                     ENVIRONMENT "OMP_NUM_THREADS=1;MT_BACKEND_CMP_SELF=1")
# The CPU backend's bf16 matmul mode, the reference of the CUDA bf16 path:
# rounding, bitwise equality with sgemm on rounded operands, attention
# against a reference (tests/test_backend_bf16.c). No GPU needed.
mt_unit_test(test_backend_bf16)
# The same program with the bf16 path forced (MPITRAIN_CPU_SBGEMM): off is
# the emulation, bitwise (the checks above); on is cblas_sbgemm (or, where
# the OpenBLAS loaded has none, as Debian 12's, the test's stand-in kernel)
# against a reference and the emulation, at many shapes and thread counts.
foreach(mode off on)
  add_test(NAME test_backend_bf16_${mode} COMMAND test_backend_bf16)
  set_tests_properties(test_backend_bf16_${mode} PROPERTIES TIMEOUT 120
                       ENVIRONMENT "OMP_NUM_THREADS=1;MPITRAIN_CPU_SBGEMM=${mode}")
endforeach()
