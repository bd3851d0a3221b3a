# fuzz.cmake - MPITRAIN_FUZZ: the libFuzzer build (docs/FUZZING.md).
#
# Every library and program of this build is compiled with
# -fsanitize=fuzzer-no-link (coverage for libFuzzer), address and undefined
# (any UB aborts: -fno-sanitize-recover), so a fuzz target finds memory
# errors and UB in the code under test, not only crashes. The targets
# themselves (tests/fuzz/fuzz_*.c, registered by tests/cmake/90_fuzz.cmake)
# link -fsanitize=fuzzer, which brings libFuzzer's main. clang only (gcc has
# no libFuzzer); CPU only (nvcc cannot build the instrumented host code).
option(MPITRAIN_FUZZ "Build the libFuzzer targets (tests/fuzz; clang, CPU only)" OFF)
if(MPITRAIN_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR
      "MPITRAIN_FUZZ=ON needs clang (libFuzzer), but the C compiler is ${CMAKE_C_COMPILER_ID}.\n"
      "HINT: configure a fresh build folder with CC=clang (apt-get install clang libclang-rt-14-dev)")
  endif()
  if(NOT MPITRAIN_CUDA STREQUAL "OFF")
    message(FATAL_ERROR
      "MPITRAIN_FUZZ=ON builds the CPU code only.\n"
      "HINT: add -DMPITRAIN_CUDA=OFF")
  endif()
  set(MT_FUZZ_SAN -fsanitize=address,undefined -fno-sanitize-recover=all)
  # -O1 -g: readable stack traces at a speed that still fuzzes well.
  # -Wno-pass-failed: instrumented loops cannot honour `omp simd`; clang
  # warns at each (the plain build vectorizes them). -Wno-unknown-pragmas:
  # clang ignores the kernels' `GCC ivdep` hints (gcc builds use them).
  # (after MT_WARN's -Wall, which would turn them on again)
  add_compile_options(-fsanitize=fuzzer-no-link ${MT_FUZZ_SAN} -fno-omit-frame-pointer -g -O1)
  list(APPEND MT_WARN -Wno-pass-failed -Wno-unknown-pragmas)
  add_link_options(${MT_FUZZ_SAN})
  message(STATUS "mpitrain: libFuzzer build (MPITRAIN_FUZZ=ON): targets in tests/fuzz")
endif()
