"""Data: corpora, tokenizer, record datasets, bAbI, Grain pipelines."""
