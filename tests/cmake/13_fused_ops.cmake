# The CPU backend's fused element-wise ops (kernels/cpu/fused_cpu.c) against
# the unfused ops they replace, by finite differences, and bitwise at 1, 2
# and 3 threads (tests/test_fused_ops.c).
mt_unit_test(test_fused_ops)
