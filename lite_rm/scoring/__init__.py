"""Scoring at run time, torch-free (onnxruntime, tokenizers, numpy): the input rule (``encoding``), the
bundle folder and its manifest (``bundle``), the inference engines (``runtimes``), heads and personal
heads (``heads``, ``personalization``), :class:`~lite_rm.scoring.scorer.Scorer`, opening a bundle by hub
name (``hub``) and accuracy on preference test sets (``evaluation``)."""
