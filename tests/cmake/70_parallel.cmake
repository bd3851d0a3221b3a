# 70_parallel.cmake - tests/test_parallel.sh: tensor, pipeline and data
# parallelism combined (docs/PARALLEL.md). The MLP on real MNIST and a tiny
# GPT on tests/data/gpt_corpus.txt: every dp x tp x pp layout with each in {1, 2}
# (up to 4 ranks, oversubscribed) matches the one-rank run (losses, grad
# norms, final test loss, model.h5; 1e-5), a checkpoint written at dp2.tp2
# resumes at dp2.pp2 and then on one rank, GPipe and 1F1B agree and report
# their peak of held micro-batches, and bad layouts fail with exit 2 and one
# error line on every rank. Needs /usr/bin/python3 with h5py and numpy.
# MT_MNIST and MT_MPI_ENV come from 20_mnist.cmake (included before this file).
add_test(NAME parallel_layouts
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_parallel.sh $<TARGET_FILE:mpitrain>
                 ${CMAKE_SOURCE_DIR} ${MT_MNIST})
set_tests_properties(parallel_layouts PROPERTIES
  FIXTURES_REQUIRED mnist
  LABELS "mpi"
  TIMEOUT 900
  ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")

# tests/test_buckets.sh: the data-parallel sum in buckets overlapped with the
# backward (parallel.bucket_mb, parallel.overlap): MLP and tiny GPT at dp 2
# and 4, tp2 and pp2, small buckets against the flat sum (bitwise at two
# replicas, 1e-6 at four), the traces show early buckets only with overlap,
# run.json's result.gradsync. About 30 s on 2 cores.
add_test(NAME buckets
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_buckets.sh $<TARGET_FILE:mpitrain>
                 $<TARGET_FILE:h5cmp> ${CMAKE_SOURCE_DIR} ${MT_MNIST})
set_tests_properties(buckets PROPERTIES
  FIXTURES_REQUIRED mnist
  LABELS "mpi"
  TIMEOUT 300
  ENVIRONMENT "${MT_MPI_ENV};OMP_NUM_THREADS=1")
