# Test helper programs shared by the test families.
add_executable(h5cmp ${CMAKE_SOURCE_DIR}/tests/h5cmp.c)
target_compile_options(h5cmp PRIVATE ${MT_WARN})
target_include_directories(h5cmp PRIVATE ${HDF5_C_INCLUDE_DIRS})
target_compile_definitions(h5cmp PRIVATE ${HDF5_C_DEFINITIONS})
target_link_libraries(h5cmp PRIVATE ${HDF5_C_LIBRARIES} MPI::MPI_C m)
