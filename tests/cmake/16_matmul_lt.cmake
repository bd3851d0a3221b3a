# The CUDA backend's cuBLASLt call sites (kernels/cuda/matmul_lt.c) compiled
# for the host against the CUDA toolkit's headers and run on a stand-in of
# cuBLASLt (tests/cublaslt_standin.c), against the CPU compositions
# (tests/test_matmul_lt.c): no GPU and no CUDA library needed, the headers
# only. Without them the test says why and is skipped.
find_path(MT_CUBLASLT_INC cublasLt.h
          HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include /opt/cuda/include)
if(MT_CUBLASLT_INC AND EXISTS ${MT_CUBLASLT_INC}/cuda_runtime_api.h)
  add_executable(test_matmul_lt ${CMAKE_SOURCE_DIR}/tests/test_matmul_lt.c
                 ${CMAKE_SOURCE_DIR}/tests/cublaslt_standin.c
                 ${CMAKE_SOURCE_DIR}/tests/matmul_compose.c
                 ${CMAKE_SOURCE_DIR}/kernels/cuda/matmul_lt.c)
  target_compile_options(test_matmul_lt PRIVATE ${MT_WARN})
  target_include_directories(test_matmul_lt PRIVATE ${CMAKE_SOURCE_DIR})
  target_include_directories(test_matmul_lt SYSTEM PRIVATE ${MT_CUBLASLT_INC})
  # the CPU backend only: the stand-in defines the CUDA symbols itself
  target_link_libraries(test_matmul_lt PRIVATE mt_kernels m)
  add_test(NAME test_matmul_lt COMMAND test_matmul_lt)
  set_tests_properties(test_matmul_lt PROPERTIES TIMEOUT 120 ENVIRONMENT "OMP_NUM_THREADS=1")
else()
  add_test(NAME test_matmul_lt
           COMMAND sh -c "echo 'test_matmul_lt: SKIPPED: no CUDA toolkit headers (cublasLt.h, cuda_runtime_api.h) found; install the toolkit (its headers suffice) to run the cuBLASLt call sites on the host stand-in'; exit 77")
  set_tests_properties(test_matmul_lt PROPERTIES SKIP_RETURN_CODE 77)
endif()
