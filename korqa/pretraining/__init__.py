"""Pre-training a Korean BERT: WordPiece vocabulary, MLM + NSP instances, the training loop."""
