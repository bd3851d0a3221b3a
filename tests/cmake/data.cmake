# data.cmake - ctest entries for `mpitrain data` (MNIST import) and
# scripts/fetch_mnist.sh, all on small synthetic inputs made by
# tests/test_data_import.sh (no download). Included from tests/CMakeLists.txt.
# Each entry runs one group of checks of the script; it exits 77 (skipped)
# when h5dump/h5ls (hdf5-tools), python3 or gzip are missing.
set(MT_DATA_TESTS
  "data_import_npm:npm"        # npm digit JSON -> counts, shapes, labels, pixels, split
  "data_import_idx:idx"        # idx files (dashed and dotted names) -> same checks
  "data_import_errors:errors"  # each bad input: exit 3, one error line naming the file, no output
  "data_cli_usage:usage"       # bad usage: exit 2; --help
  "data_fetch_script:script"   # scripts/fetch_mnist.sh --idx with .gz files, idempotence
)
foreach(entry IN LISTS MT_DATA_TESTS)
  string(REPLACE ":" ";" parts "${entry}")
  list(GET parts 0 name)
  list(GET parts 1 group)
  add_test(NAME ${name}
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_data_import.sh
                   $<TARGET_FILE:mpitrain> ${group})
  set_tests_properties(${name} PROPERTIES LABELS "data" TIMEOUT 120 SKIP_RETURN_CODE 77)
endforeach()
