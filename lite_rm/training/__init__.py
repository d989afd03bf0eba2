"""Training: the three stages (base MLM, general RM, customized RM), distillation, and the checkpoint
folder they write. Needs the [train] extra (torch); ``config``, ``checkpoint`` and ``encoders`` are torch-free."""
