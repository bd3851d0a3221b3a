# 90_fuzz.cmake - the libFuzzer targets (tests/fuzz, docs/FUZZING.md), only
# in a build configured with -DMPITRAIN_FUZZ=ON (cmake/fuzz.cmake). Each
# ctest `fuzz_<target>` (label fuzz) runs every regression input of the
# target once, then fuzzes it for a few seconds from its seed corpus
# (tests/fuzz/run.sh). `cmake --build B --target fuzz` builds them all.
if(NOT MPITRAIN_FUZZ)
  return()
endif()
set(MT_FUZZ_DIR ${CMAKE_SOURCE_DIR}/tests/fuzz)
set(MT_FUZZ_SECONDS 8 CACHE STRING "Seconds each fuzz ctest fuzzes (after its regression inputs)")
add_custom_target(fuzz)
function(mt_fuzz_target name)
  add_executable(fuzz_${name} ${MT_FUZZ_DIR}/fuzz_${name}.c ${MT_FUZZ_DIR}/fuzz_util.c ${ARGN})
  target_compile_options(fuzz_${name} PRIVATE ${MT_WARN} -fsanitize=fuzzer)
  target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(fuzz_${name} PRIVATE mt_core)
  add_dependencies(fuzz fuzz_${name})
  # a fixed seed: CI explores the same inputs first on every commit, so a
  # crash it finds belongs to the change under test (long runs, through
  # scripts/fuzz.sh, seed from the clock)
  add_test(NAME fuzz_${name}
           COMMAND bash ${MT_FUZZ_DIR}/run.sh $<TARGET_FILE:fuzz_${name}> ${name} ${MT_FUZZ_SECONDS}
                   -- -seed=1)
  set_tests_properties(fuzz_${name} PROPERTIES LABELS "fuzz" TIMEOUT 120 SKIP_RETURN_CODE 77
                       ENVIRONMENT "MPITRAIN_GPT2_VOCAB=${CMAKE_BINARY_DIR}/gpt2_vocab")
endfunction()
mt_fuzz_target(config)
mt_fuzz_target(tokens)
mt_fuzz_target(registry)
mt_fuzz_target(gpt2)
target_compile_definitions(fuzz_gpt2 PRIVATE MT_FUZZ_GPT2_DIR="${CMAKE_BINARY_DIR}/gpt2_vocab")
mt_fuzz_target(dataset ${MT_FUZZ_DIR}/fuzz_h5.c)
mt_fuzz_target(checkpoint ${MT_FUZZ_DIR}/fuzz_h5.c)
# The raw-bytes probe of libhdf5 itself (docs/FUZZING.md): built, never run.
add_executable(h5raw_probe ${MT_FUZZ_DIR}/h5raw_probe.c ${MT_FUZZ_DIR}/fuzz_util.c)
target_compile_options(h5raw_probe PRIVATE ${MT_WARN} -fsanitize=fuzzer)
target_link_options(h5raw_probe PRIVATE -fsanitize=fuzzer)
target_link_libraries(h5raw_probe PRIVATE mt_io)
