"""Options of `action=prepare` (the `prepare:` node of the root config). Owned by the prepare stage.

Plain dataclasses (no hydra/omegaconf import), registered in the ConfigStore with the root config; each field's
docstring says what it means, and `__post_init__` rejects bad values with one sentence naming the dotted key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_VOCAB = 2**32 - 1


@dataclass
class PrepareConfig:
    """Turn a corpus into `data=tokens` files: `action=prepare prepare.input=DIR prepare.output=DIR`."""

    input: str = ""
    """A text, JSONL or Parquet file, or a folder of them (searched recursively; hidden files are skipped).
    .jsonl/.ndjson: one JSON object per line, the document in `text_field`; .parquet: one document per row in
    column `text_field`; any other file is UTF-8 text, one document per file (or per `split_on` piece)."""
    output: str = ""
    """The folder to write (it must not exist, or be empty): train.bin, val.bin, tokenizer.json, meta.json."""
    tokenizer: str = ""
    """A local tokenizer.json (Hugging Face `tokenizers` format) to encode with; empty: train a byte-level BPE
    with `vocab_size` entries on the training split."""
    vocab_size: int = 8192
    """Vocabulary size of the trained BPE (its special token included); ignored with `tokenizer`."""
    val_fraction: float = 0.05
    """Share of the documents held out for validation (at least one document on each side)."""
    seed: int = 0
    """Seed of the random choice of validation documents."""
    text_field: str = "text"
    """JSONL key or Parquet column holding a document's text."""
    split_on: str = ""
    """Cut text files into documents at this separator (e.g. "\\n\\n" for paragraphs); empty: a file is one
    document."""
    eos_token: str = "<|endoftext|>"
    """Special token written after every document (a trained BPE adds it; a loaded tokenizer uses it when its
    vocabulary has it)."""
    min_tokens: int = 1024
    """Refuse a corpus that encodes to fewer tokens than this: too small to train on."""
    bpe_sample_mb: float = 100.0
    """Train the BPE on an evenly spread sample of the training documents of about this many MB of text (every
    k-th training document); 0: on all of them. Merges learnt from 100 MB of text barely change with more, and
    training time and memory stay bounded however large the corpus."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.val_fraction) and 0.0 < self.val_fraction < 0.5):
            raise ValueError(f"prepare.val_fraction={self.val_fraction} is invalid: it must lie in (0, 0.5).")
        if not 2 <= self.vocab_size <= MAX_VOCAB:
            raise ValueError(f"prepare.vocab_size={self.vocab_size} is invalid: it must lie in [2, {MAX_VOCAB}].")
        if self.seed < 0:
            raise ValueError(f"prepare.seed={self.seed} is invalid: it must be >= 0.")
        if self.min_tokens < 0:
            raise ValueError(f"prepare.min_tokens={self.min_tokens} is invalid: it must be >= 0.")
        if not (math.isfinite(self.bpe_sample_mb) and self.bpe_sample_mb >= 0):
            raise ValueError(f"prepare.bpe_sample_mb={self.bpe_sample_mb} is invalid: it must be a number of MB >= 0 "
                             f"(0: train on every training document).")
        if not self.text_field:
            raise ValueError("prepare.text_field is empty: name the JSONL key or Parquet column holding the text.")

    def check_paths(self) -> None:
        """What action=prepare needs that the other actions do not: both folders named."""
        for key in ("input", "output"):
            if not getattr(self, key):
                raise ValueError(f"prepare.{key} is required for action=prepare: give "
                                 f"{'the file or folder of text to tokenize' if key == 'input' else 'a new folder'} "
                                 f"(prepare.{key}=PATH).")
