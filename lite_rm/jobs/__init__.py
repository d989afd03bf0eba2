"""Jobs built on a :class:`~lite_rm.scoring.scorer.Scorer`: checking and scoring files with resume
(``data_check``, ``batch_scoring``, ``batch_output``), the HTTP server (``serving``, ``local_server``),
Ray Data scale-out (``distributed``), the plots of a run or a bundle (``plotting``) and sharing a bundle
on the Hugging Face Hub with its model card (``publishing``, ``model_card``)."""
