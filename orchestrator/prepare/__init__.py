"""action=prepare: a folder of text, JSONL or Parquet files -> the token files `data=tokens` reads.

    options.py    PrepareConfig (the `prepare:` node of the root config)
    corpus.py     the corpus as documents: files found, read and checked (empty, binary, unreadable, too small)
    tokenizer.py  the tokenizer: a byte-level BPE trained on the training split, or a local tokenizer.json
    run.py        split by document, encode with a progress bar, write train.bin, val.bin, tokenizer.json and
                  meta.json into the output folder at once (nothing half-written)
"""
