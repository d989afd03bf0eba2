"""Training: the three stages (base MLM, general RM, customized RM). Needs the [train] extra."""
