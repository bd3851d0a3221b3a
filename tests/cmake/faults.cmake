# Fault injection (tests/faults, docs/FAULTS.md): a full disk and I/O errors
# in checkpoint and registry writes (the LD_PRELOAD shim libiofault.so), a
# read-only or full registry file system, the checkpoint folder removed, the
# data file changed before a resume, and ranks killed at points of a step;
# each case's error line and exit status, nothing lost, and a resume bitwise
# equal to an uninterrupted run. ctest -L faults runs them alone.
add_library(iofault MODULE ${CMAKE_SOURCE_DIR}/tests/faults/iofault.c)
target_compile_options(iofault PRIVATE ${MT_WARN})
target_link_libraries(iofault PRIVATE ${CMAKE_DL_LIBS})

foreach(t disk data kill)
  add_test(NAME faults_${t}
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/faults/test_${t}.sh $<TARGET_FILE:mpitrain>
                   $<TARGET_FILE:h5cmp> $<TARGET_FILE:iofault> ${CMAKE_SOURCE_DIR} ${MT_MNIST})
  set_tests_properties(faults_${t} PROPERTIES FIXTURES_REQUIRED mnist TIMEOUT 300 LABELS faults
                       ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")
endforeach()
