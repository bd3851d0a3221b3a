# The architecture, kept true (tests/layering.py, docs/ARCHITECTURE.md):
# layering - includes only point down base <- kernels <- parallel <- io <-
#            core <- cli, no include circle between files, no MPI call
#            outside parallel/ (in the sources, and no MPI symbol in the
#            compiled libraries of the other layers);
# code_shape - no file of kernels/, parallel/, io/, core/ over 700 lines, no
#            function there over 120.
find_program(MT_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
add_test(NAME layering COMMAND ${MT_PYTHON3} ${CMAKE_SOURCE_DIR}/tests/layering.py
                               ${CMAKE_SOURCE_DIR} includes ${CMAKE_BINARY_DIR})
add_test(NAME code_shape COMMAND ${MT_PYTHON3} ${CMAKE_SOURCE_DIR}/tests/layering.py
                                 ${CMAKE_SOURCE_DIR} shape)
set_tests_properties(layering code_shape PROPERTIES TIMEOUT 60 LABELS architecture)
