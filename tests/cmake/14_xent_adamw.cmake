# The CPU backend's fused cross-entropy and multi-tensor AdamW against the
# unfused ops they replace, and at 1, 2 and 3 threads (tests/test_xent_adamw.c).
mt_unit_test(test_xent_adamw)
