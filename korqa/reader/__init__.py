"""The reader: a model directory (directory.py) loaded into a Reader (reader.py) that cuts
windows (features.py), reads them with an engine and decodes n-best spans (predict.py), with
Korean answer boundaries (josa.py); SQuAD-format examples (squad.py)."""
