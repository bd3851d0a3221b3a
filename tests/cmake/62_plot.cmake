# `mpitrain plot` (tests/test_plot.sh): two tiny GPT runs on 2 ranks plotted
# alone and together, the PNGs read back by tests/png_check.py (zlib + numpy),
# corrupt metrics lines, and every error. About 6 s on 2 cores; needs gnuplot
# (Debian gnuplot-nox, scripts/install_deps.sh) and fails, saying so, without.
add_test(NAME plot
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_plot.sh $<TARGET_FILE:mpitrain>
                 ${CMAKE_SOURCE_DIR})
set_tests_properties(plot PROPERTIES LABELS "cli" TIMEOUT 120
                     ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1;OMP_NUM_THREADS=1")
