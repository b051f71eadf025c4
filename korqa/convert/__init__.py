"""Conversions between korqa's model directories and other formats: e5 import, reader export."""
