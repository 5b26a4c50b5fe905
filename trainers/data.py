"""Token sources for the GPT trainer: the synthetic language, byte-level text, and token memmaps.

Every source serves fixed-length sequences of `seq_len + 1` tokens (inputs are the first `seq_len`,
targets the last `seq_len`), so a sequence is exactly `seq_len` training tokens. Sequence `i` of the
training stream is a pure function of (data config, trial seed, i): resuming at a token count needs
no iterator state, and the data order is deterministic given the seed.

Corpora (bytes, tokens) are cut into non-overlapping windows; each epoch visits them in a fresh
seeded permutation behind a fresh seeded offset (so epochs differ). Validation is a split that is
never trained on: the tail of a byte corpus, `val.bin` of a token folder, a separate seed stream of
the synthetic language. Nothing is downloaded.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainers import synthetic
from trainers.config import DataConfig

SCAN_BLOCK = 1 << 24
"""Elements per block when scanning a token file for its largest id."""
META_FILE = "meta.json"
"""What a token folder written by `action=prepare` holds (orchestrator/prepare/run.py)."""


class DataError(ValueError):
    """The data the config names cannot serve the trial (missing, empty, too small, wrong vocab)."""


@dataclass
class Source:
    """Where a trial's sequences come from. `train(start, count)` and `val()` return int64 tensors of
    shape (count, seq_len + 1) and (n_val, seq_len + 1)."""

    seq_len: int
    vocab_size: int
    epochs: float
    """Passes over the training corpus that the trial's D needs (0 for the unbounded synthetic stream)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Numbers the trial reports (entropy floor, corpus sizes)."""

    def train(self, start: int, count: int) -> torch.Tensor:
        raise NotImplementedError

    def val(self) -> torch.Tensor:
        raise NotImplementedError


class SyntheticSource(Source):
    def __init__(self, cfg: DataConfig, *, seq_len: int, seed: int, n_val: int) -> None:
        self.spec = synthetic.LanguageSpec.from_config(cfg)
        self.lang = synthetic.language(self.spec)
        self.trial_seed, self.n_val = seed, n_val
        floor, floor_se = synthetic.floor_on(self.spec, seq_len=seq_len, n_seqs=n_val)
        info = {"entropy_floor": floor, "entropy_floor_se": floor_se, "unigram_entropy": self.lang.unigram_entropy()}
        super().__init__(seq_len=seq_len, vocab_size=cfg.vocab_size, epochs=0.0, info=info)

    def train(self, start: int, count: int) -> torch.Tensor:
        seqs = self.lang.sequences(synthetic.TRAIN_SPLIT, self.trial_seed, start, count, self.seq_len + 1)
        return torch.from_numpy(seqs)

    def val(self) -> torch.Tensor:
        return torch.from_numpy(self.lang.sequences(synthetic.VAL_SPLIT, 0, 0, self.n_val, self.seq_len + 1))


class CorpusSource(Source):
    """Windows of a token array (a memmap or an in-memory byte corpus)."""

    def __init__(self, train: np.ndarray, val: np.ndarray, *, vocab_size: int, seq_len: int, seed: int,
                 n_val: int, tokens: int, allow_repeat: bool, name: str) -> None:
        self.train_arr, self.val_arr, self.seed = train, val, seed
        self.windows, val_windows, epochs = corpus_windows(len(train), len(val), seq_len=seq_len, tokens=tokens,
                                                           allow_repeat=allow_repeat, name=name)
        per_epoch = self.windows * seq_len
        self.n_val = min(n_val, val_windows)
        info = {"train_tokens_per_epoch": per_epoch, "val_tokens": self.n_val * seq_len}
        super().__init__(seq_len=seq_len, vocab_size=vocab_size, epochs=epochs, info=info)

    @staticmethod
    def _epoch_order(seed: int, epoch: int, windows: int, seq_len: int) -> tuple[int, np.ndarray]:
        rng = np.random.default_rng([seed, epoch])
        return int(rng.integers(seq_len)), rng.permutation(windows)

    def train(self, start: int, count: int) -> torch.Tensor:
        t = self.seq_len
        out = np.empty((count, t + 1), dtype=np.int64)
        cached: tuple[int, tuple[int, np.ndarray]] | None = None
        for row, i in enumerate(range(start, start + count)):
            epoch, j = divmod(i, self.windows)
            if cached is None or cached[0] != epoch:
                cached = (epoch, self._epoch_order(self.seed, epoch, self.windows, t))
            offset, order = cached[1]
            begin = offset + int(order[j]) * t
            out[row] = self.train_arr[begin : begin + t + 1]
        return torch.from_numpy(out)

    def val(self) -> torch.Tensor:
        t = self.seq_len
        rows = [np.asarray(self.val_arr[i * t : i * t + t + 1], dtype=np.int64) for i in range(self.n_val)]
        return torch.from_numpy(np.stack(rows))


def corpus_windows(train_len: int, val_len: int, *, seq_len: int, tokens: int, allow_repeat: bool,
                   name: str) -> tuple[int, int, float]:
    """(training windows per epoch, validation windows, epochs the trial's tokens need) of a corpus whose
    splits hold `train_len` and `val_len` tokens; DataError when it cannot serve the trial."""
    # Windows start at offset + j*T and span T + 1 tokens; with offset < T that leaves
    # len // T - 1 whole windows per epoch.
    windows = train_len // seq_len - 1
    if windows < 1:
        raise DataError(
            f"data.path={name}: the training split has {train_len} tokens, fewer than the "
            f"{2 * seq_len} needed for one sequence of model.seq_len={seq_len}."
        )
    val_windows = (val_len - 1) // seq_len
    if val_windows < 1:
        raise DataError(
            f"data.path={name}: the validation split has {val_len} tokens, fewer than the "
            f"{seq_len + 1} needed for one sequence of model.seq_len={seq_len}."
        )
    per_epoch = windows * seq_len
    epochs = tokens / per_epoch
    if epochs > 1 and not allow_repeat:
        raise DataError(
            f"data.path={name}: the training split holds {per_epoch} tokens of whole sequences but the "
            f"trial needs tokens={tokens} ({epochs:.2f} epochs); set data.allow_repeat=true to train on "
            f"repeated data, or lower the tokens."
        )
    return windows, val_windows, epochs


def check_data(cfg: DataConfig, *, seq_len: int, tokens: int) -> None:
    """Can `cfg` serve a trial of `tokens` tokens at `seq_len`? From file sizes only (nothing is read), so the
    pre-flight can ask it of every dataset before a run; DataError with the same sentence a trial would raise."""
    if cfg.name == "synthetic":
        return
    path = Path(cfg.path).expanduser()
    common = dict(seq_len=seq_len, tokens=tokens, allow_repeat=cfg.allow_repeat, name=cfg.path)
    if cfg.name == "bytes":
        if not path.exists():
            raise DataError(f"data.path={cfg.path} does not exist.")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        total = sum(os.path.getsize(f) for f in files)
        if total == 0:
            raise DataError(f"data.path={cfg.path} holds no bytes: the corpus is empty.")
        n_val = max(round(cfg.val_fraction * total), 1)
        corpus_windows(total - n_val, n_val, **common)
        return
    files = _token_files(cfg, path)
    _check_meta(cfg, path, files)
    sizes = [_token_count(file, cfg.dtype) for file in files]
    corpus_windows(sizes[0], sizes[1], **common)


PAD_MULTIPLE = 64
"""A vocabulary padded up to a multiple of 64 (nanoGPT's 50257 -> 50304, for faster matmuls) is accepted; more
padding is a mistake (issue 25: data.vocab_size=8192 on a 1024-token folder)."""


def _check_meta(cfg: DataConfig, path: Path, files: list[Path]) -> None:
    """A folder that `action=prepare` wrote says what it holds (meta.json): its dtype and vocabulary must agree with
    data.dtype and data.vocab_size (a larger vocab_size is padding, up to the next multiple of PAD_MULTIPLE), and
    its token counts with the files."""
    file = path / META_FILE
    if not file.is_file():
        return
    try:
        meta = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"data.path={cfg.path}: {file} cannot be read ({err}).") from None
    if meta.get("dtype", cfg.dtype) != cfg.dtype:
        raise DataError(f"data.dtype={cfg.dtype} does not match {file}: its tokens are {meta['dtype']}; set "
                        f"data.dtype={meta['dtype']}.")
    vocab = meta.get("vocab_size")
    if isinstance(vocab, int) and cfg.vocab_size < vocab:
        raise DataError(f"data.vocab_size={cfg.vocab_size} is smaller than the tokenizer's vocabulary in {file} "
                        f"({vocab}): set data.vocab_size={vocab}.")
    padded = -(-vocab // PAD_MULTIPLE) * PAD_MULTIPLE if isinstance(vocab, int) else None
    if padded is not None and cfg.vocab_size > padded:
        raise DataError(f"data.vocab_size={cfg.vocab_size} is larger than the tokenizer's vocabulary in {file} "
                        f"({vocab}): the {cfg.vocab_size - vocab} extra embedding rows are never trained yet count in "
                        f"every trial's N and C; set data.vocab_size={vocab} (padding up to {padded}, the next "
                        f"multiple of {PAD_MULTIPLE}, is accepted).")
    for split, bin_file in zip(("train", "val"), files):
        stated, held = meta.get(f"{split}_tokens"), _token_count(bin_file, cfg.dtype)
        if stated is not None and stated != held:
            raise DataError(f"data.path={cfg.path}: {bin_file.name} holds {held} tokens but {META_FILE} says {stated}: "
                            f"the folder changed after it was prepared; prepare it again.")


def _token_files(cfg: DataConfig, path: Path) -> list[Path]:
    """train.bin and val.bin of a nanoGPT-layout folder."""
    if not path.exists():
        raise DataError(f"data.path={cfg.path} does not exist.")
    files = [path / f"{split}.bin" if path.is_dir() else None for split in ("train", "val")]
    for split, file in zip(("train", "val"), files):
        if file is None or not file.is_file():
            raise DataError(f"data.path={cfg.path} must be a folder holding train.bin and val.bin (nanoGPT layout); "
                            f"{split}.bin is missing.")
    return files


def _token_count(file: Path, dtype: str) -> int:
    itemsize = np.dtype(dtype).itemsize
    size = os.path.getsize(file)
    if size == 0:
        raise DataError(f"data.path: {file} is empty.")
    if size % itemsize:
        raise DataError(f"data.path: {file} has {size} bytes, not a whole number of data.dtype={dtype} tokens.")
    return size // itemsize


def _read_bytes(path: Path) -> np.ndarray:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return np.frombuffer(b"".join(p.read_bytes() for p in files), dtype=np.uint8)


def _check_vocab(arr: np.ndarray, *, vocab_size: int, name: str) -> None:
    """A token id >= vocab_size would index past the embedding: scan the file once, in blocks."""
    top = max((int(arr[i : i + SCAN_BLOCK].max()) for i in range(0, len(arr), SCAN_BLOCK)), default=0)
    if top >= vocab_size:
        raise DataError(
            f"data.vocab_size={vocab_size} does not match {name}: it contains token id {top}; "
            f"set data.vocab_size to at least {top + 1}."
        )


def _memmap(file: Path, dtype: str) -> np.ndarray:
    _token_count(file, dtype)
    return np.memmap(file, dtype=dtype, mode="r")


def build_source(cfg: DataConfig, *, seq_len: int, seed: int, tokens: int, eval_tokens: int) -> Source:
    """The trial's source; validation holds ceil(eval_tokens / seq_len) sequences (fewer if a corpus's
    validation split is smaller). Raises `DataError` with a one-sentence reason on bad input."""
    n_val = math.ceil(eval_tokens / seq_len)
    if cfg.name == "synthetic":
        return SyntheticSource(cfg, seq_len=seq_len, seed=seed, n_val=n_val)
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise DataError(f"data.path={cfg.path} does not exist.")
    common = dict(vocab_size=cfg.vocab_size, seq_len=seq_len, seed=seed, n_val=n_val, tokens=tokens,
                  allow_repeat=cfg.allow_repeat, name=cfg.path)
    if cfg.name == "bytes":
        corpus = _read_bytes(path)
        if len(corpus) == 0:
            raise DataError(f"data.path={cfg.path} holds no bytes: the corpus is empty.")
        n_val_bytes = max(round(cfg.val_fraction * len(corpus)), 1)
        # The held-out split is a contiguous tail, so no training window overlaps it.
        return CorpusSource(corpus[:-n_val_bytes], corpus[-n_val_bytes:], **common)
    train_file, val_file = _token_files(cfg, path)
    _check_meta(cfg, path, [train_file, val_file])
    train, val = _memmap(train_file, cfg.dtype), _memmap(val_file, cfg.dtype)
    _check_vocab(train, vocab_size=cfg.vocab_size, name=str(train_file))
    _check_vocab(val, vocab_size=cfg.vocab_size, name=str(val_file))
    return CorpusSource(train, val, **common)
