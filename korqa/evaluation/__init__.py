"""Scoring: the KorQuAD 1.0 metric, model evaluation and the error-analysis report."""
