# Flash-style causal attention on the CPU (kernels/cpu/flash_attention.c)
# against the unfused attention ops: forward, lse, backward, finite
# differences, thread-count independence, bf16 mode, guard regions
# (tests/test_flash_attention.c).
mt_unit_test(test_flash_attention)
