"""The reader: SQuAD-format examples, model windows, n-best spans and Korean answer boundaries."""
