"""Training: the three stages (base MLM, general RM, customized RM), distillation, and the checkpoint
folder they write.

``pipeline.train`` is the entry: the run in this process (``driver``), or in several under ``torchrun``
(``launch``; the DDP primitives are in ``parallel``). The driver trains the planned stages from the
table in ``stages`` (``base``, ``general``, ``custom``, ``multitask``), each given the run's ``context``
and running the shared ``loop``. Needs the [train] extra (torch); ``config``, ``checkpoint``,
``encoders``, ``run_folder``, ``pipeline`` and ``launch`` are torch-free at import."""
