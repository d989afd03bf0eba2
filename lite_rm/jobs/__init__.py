"""Jobs built on a :class:`~lite_rm.scoring.scorer.Scorer`: checking and scoring files with resume
(``data_check``, ``batch_scoring``, ``batch_output``), the HTTP server (``serving``, ``local_server``),
Ray Data scale-out (``distributed``) and the plots of a run or a bundle (``plotting``)."""
