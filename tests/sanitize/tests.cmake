# tests.cmake - the sanitizer pass (docs/SANITIZERS.md). Included from
# tests/CMakeLists.txt after every family, since it names their tests.
#
# Label `sanitize`: the tests `ctest -L sanitize` runs in the sanitizer build
# (scripts/test.sh: build-debug, -DMPITRAIN_SANITIZE=address,undefined):
# the unit programs that take seconds there, and multi-rank runs that take
# the engine end to end. Under ASan at -O0 a process costs ~2 s more to
# start and end (the leak check symbolizes Open MPI's leaks to suppress
# them), so the pass takes few runs: the Release pass runs everything.
#   ckpt_exact      training on 2 ranks (SGD and AdamW, MNIST), a stop with a
#                   checkpoint, resume, bitwise the same as one run
#   registry_runs   the registry written by training runs, its commands
#   bad_input_np2   every bad input of bad_input on 2 ranks (below)
#   ckpt_shard_np2  sharded checkpoints written and read under every layout
# Left out, each minutes under ASan: test_flash_attention, the sbgemm sweep
# (test_backend_bf16_on), ckpt_shard_np3/np4, dp_equivalence (np1/2/4
# twice over; ckpt_exact trains on 2 ranks already), bad_input's np4 and
# no-mpirun runs. ctest adds the mnist_fetch fixture to a pass needing it.
set(MT_SANITIZE_TESTS
  # unit programs
  test_gradcheck test_config test_core test_registry test_gpt_ops
  test_backend_cmp_self test_backend_bf16 test_backend_bf16_off
  test_fused_ops test_xent_adamw test_matmul_lt test_gpt_model test_tokens
  ckpt_shard_np2
  # multi-rank runs
  ckpt_exact registry_runs
)
set_property(TEST ${MT_SANITIZE_TESTS} APPEND PROPERTY LABELS sanitize)

# In a sanitizer build every test (labelled or not) runs its programs with
# these options; mpirun's ranks inherit the environment (one host).
#   ASan: full stacks at malloc (Open MPI, HDF5 and OpenBLAS have no frame
#         pointers: the fast unwinder stops in them, and the suppressions
#         could not see the library that leaked), leaks checked at exit.
#   LSan: Open MPI's and its libraries' own leaks hidden (lsan.supp, each
#         entry says why); ours still fail the test.
#   UBSan: a stack with each report; the build makes it fatal.
if(MPITRAIN_SANITIZE)
  add_test(NAME bad_input_np2
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_bad_input.sh
                   $<TARGET_FILE:mpitrain> ${CMAKE_SOURCE_DIR})
  set_tests_properties(bad_input_np2 PROPERTIES LABELS "mpi;sanitize" TIMEOUT 300
    ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1;MT_BAD_INPUT_MODES=np2")
  # The longest first (seconds measured here) so that `ctest -j2` does not
  # end on one of them alone; ctest uses its own timings once it has them.
  set_tests_properties(bad_input_np2 PROPERTIES COST 140)
  set_tests_properties(registry_runs ckpt_shard_np2 PROPERTIES COST 110)
  set_tests_properties(ckpt_exact test_core test_gpt_model PROPERTIES COST 35)
  set(MT_SANITIZE_ENV
    "ASAN_OPTIONS=fast_unwind_on_malloc=0:detect_leaks=1"
    "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/sanitize/lsan.supp:print_suppressions=0"
    "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
  get_property(MT_ALL_TESTS DIRECTORY PROPERTY TESTS)
  set_property(TEST ${MT_ALL_TESTS} APPEND PROPERTY ENVIRONMENT ${MT_SANITIZE_ENV})
endif()
