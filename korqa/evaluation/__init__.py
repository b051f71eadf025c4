"""Evaluation, above the pipeline and training: a reader on KorQuAD with its error analysis
(evaluate, report), the pipeline's fusion fitted (fusion) and its don't-know measured
(open_domain). The KorQuAD metric itself is `korqa.korquad_metric`, which training uses too."""
