# The GPT model: whole-model gradient check, dropout masks, shape errors.
mt_unit_test(test_gpt_model)
