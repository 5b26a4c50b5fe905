"""action=prepare: split by document, encode, and write the token folder that `data=tokens` reads.

Output (trainers/data.py reads it): `train.bin` and `val.bin`, the documents' token ids back to back, each
document followed by the end-of-document id, as flat little-endian uint16 (vocabularies up to 65,536) or uint32
arrays (nanoGPT's layout); `tokenizer.json`; and `meta.json` with the vocabulary size, dtype, token and document
counts of each split, the tokenizer's SHA-256 and where the corpus came from. The split is by document: a
seeded random `val_fraction` of the documents (at least one) is held out whole, so no validation text is
trained on, and the BPE is trained on the training documents only.

Passes: scan (every bad-input error, before anything is trained or written), train the BPE on an evenly spread
sample of the training documents (`prepare.bpe_sample_mb`), encode. Every pass streams the corpus: documents
are read one at a time, encoded in batches of a few MB on all cores (tokenizers' `encode_batch_fast`, which
releases the GIL, so the next batch is read while one is encoded) and appended to the .bin files, so memory
stays flat however large the corpus. Files are written into a staging folder beside the output
(`.NAME.partial-PID`) and renamed into place at the end: a failure or Ctrl-C leaves nothing half-written, and
the staging folder of a prepare that was killed (its pid no longer running) is removed by the next one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)

from orchestrator.errors import RunFailure
from orchestrator.prepare import tokenizer as tok
from orchestrator.prepare.corpus import Corpus, CorpusError
from orchestrator.prepare.options import PrepareConfig

META = "meta.json"
FORMAT = "scaling-orchestrator tokens 1"
PROGRESS_LINE_S = 15.0
"""Seconds between progress lines when stderr is not a terminal (on a terminal: a live bar)."""


@dataclass(frozen=True)
class Prepared:
    """What was written."""

    path: Path
    meta: dict


def val_documents(count: int, *, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask over the documents: True for the held-out ones (round(fraction * count), at least one, and
    at least one left to train on), chosen by a seeded permutation."""
    n_val = min(max(round(fraction * count), 1), count - 1)
    mask = np.zeros(count, dtype=bool)
    mask[np.random.default_rng(seed).permutation(count)[:n_val]] = True
    return mask


def _output_folder(option: str) -> Path:
    out = Path(option).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CorpusError(f"prepare.output={option} exists and is not an empty folder: name a new folder (nothing is "
                          f"overwritten).")
    return out


def _pid_running(pid: int) -> bool:
    """A process `pid` runs and is a prepare (a reused pid of another program does not count, where /proc says)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"orchestrator" in cmdline or b"prepare" in cmdline


def _clear_stale_partials(out: Path) -> None:
    """Remove the staging folders of earlier prepares of `out` that were killed; refuse while one still runs."""
    for partial in sorted(out.parent.glob(f".{out.name}.partial-*")):
        pid_text = partial.name.rpartition("-")[2]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        if _pid_running(int(pid_text)):
            raise RunFailure(f"prepare.output={out} is being written by another prepare (pid {pid_text}, into "
                             f"{partial}); wait for it to finish, or name another output folder.")
        shutil.rmtree(partial, ignore_errors=True)
        print(f"prepare: removed {partial}, the partial output of a prepare that was stopped (pid {pid_text} is no "
              f"longer running)", flush=True)


class _Meter:
    """Progress in bytes of text: a live bar with MB/s and ETA on a terminal, a line every PROGRESS_LINE_S
    otherwise."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, max(total, 1), 0
        self.start = self.printed = time.monotonic()
        self.live = sys.stderr.isatty()
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                            TimeRemainingColumn(), console=Console(stderr=True), disable=not self.live,
                            transient=True)
        self.task = self.bar.add_task(label, total=self.total)

    def __enter__(self) -> _Meter:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def advance(self, size: int) -> None:
        self.done += size
        self.bar.advance(self.task, size)
        now = time.monotonic()
        if not self.live and now - self.printed >= PROGRESS_LINE_S:
            self.printed = now
            print(f"prepare: {self.line()}", file=sys.stderr, flush=True)

    def line(self) -> str:
        seconds = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / seconds
        left = (self.total - self.done) / rate if rate > 0 else math.inf
        eta = f"about {_duration(left)} left" if math.isfinite(left) else "time left unknown"
        return (f"{self.label} {self.done / 1e6:,.1f} of {self.total / 1e6:,.1f} MB "
                f"({100 * self.done / self.total:.0f}%), {rate / 1e6:.2f} MB/s, {eta}")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else (
        f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s")


def _bpe_sample(documents: Iterable[str], is_val: np.ndarray, *, stride: int) -> Iterator[str]:
    """Every `stride`-th training document (the held-out ones are never trained on)."""
    j = 0
    for text, val in zip(documents, is_val, strict=True):
        if not val:
            if j % stride == 0:
                yield text
            j += 1


def _batches(documents: Iterable[str], is_val: np.ndarray) -> Iterator[tuple[list[str], list[bool], int]]:
    """(texts, held out?, UTF-8 bytes) of up to ENCODE_BATCH documents or ENCODE_BATCH_BYTES of text."""
    texts: list[str] = []
    flags: list[bool] = []
    size = 0
    for text, val in zip(documents, is_val, strict=True):
        texts.append(text)
        flags.append(bool(val))
        size += len(text.encode("utf-8"))
        if len(texts) >= tok.ENCODE_BATCH or size >= tok.ENCODE_BATCH_BYTES:
            yield texts, flags, size
            texts, flags, size = [], [], 0
    if texts:
        yield texts, flags, size


def _encode_into(staging: Path, info: tok.TokenizerInfo, documents: Iterable[str], is_val: np.ndarray, *,
                 dtype: type, total_bytes: int) -> dict[str, list[int]]:
    """Encode every document into staging/train.bin and val.bin; returns {split: [tokens, documents]}.

    One batch is encoded (on all cores, without the GIL) while the next is read; each batch's ids are appended
    as one write per file."""
    counts = {"train": [0, 0], "val": [0, 0]}
    eos = np.asarray([info.eos_id] if info.eos_id is not None else [], dtype=dtype)

    def write(files: dict[str, object], texts_ids: list[list[int]], flags: list[bool]) -> None:
        parts: dict[str, list[np.ndarray]] = {"train": [], "val": []}
        for ids, held_out in zip(texts_ids, flags, strict=True):
            name = "val" if held_out else "train"
            parts[name] += [np.asarray(ids, dtype=dtype), eos]
            counts[name][0] += len(ids) + len(eos)
            counts[name][1] += 1
        for name, arrays in parts.items():
            if arrays:
                files[name].write(np.concatenate(arrays).tobytes())

    with (open(staging / "train.bin", "wb", buffering=8 << 20) as train,
          open(staging / "val.bin", "wb", buffering=8 << 20) as val,
          ThreadPoolExecutor(max_workers=1) as pool, _Meter("encoding", total_bytes) as meter):
        files = {"train": train, "val": val}
        pending = None
        for texts, flags, size in _batches(documents, is_val):
            job = (pool.submit(tok.encode_batch, info, texts), flags, size)
            if pending is not None:  # the previous batch, encoded while this one was read
                write(files, pending[0].result(), pending[1])
                meter.advance(pending[2])
            pending = job
        if pending is not None:
            write(files, pending[0].result(), pending[1])
            meter.advance(pending[2])
        seconds = time.monotonic() - meter.start
    print(f"prepare: encoded {total_bytes / 1e6:,.1f} MB of text in {_duration(seconds)} "
          f"({total_bytes / 1e6 / max(seconds, 1e-9):.2f} MB/s)", flush=True)
    return counts


def prepare(options: PrepareConfig) -> Prepared:
    """Tokenize `options.input` into `options.output`; every bad input is a CorpusError (exit 2), nothing written."""
    corpus = Corpus.at(options.input, text_field=options.text_field, split_on=options.split_on)
    out = _output_folder(options.output)
    _clear_stale_partials(out)
    files = corpus.files()
    print(f"prepare: reading {len(files)} file(s) under {corpus.path}", flush=True)
    stats = corpus.scan()
    is_val = val_documents(stats.documents, fraction=options.val_fraction, seed=options.seed)
    print(f"prepare: {stats.documents:,} documents, {stats.bytes:,} bytes of text; {int(is_val.sum()):,} held out "
          f"for validation", flush=True)

    if options.tokenizer:
        info = tok.load(options.tokenizer, eos_token=options.eos_token)
    else:
        n_train = int((~is_val).sum())
        train_bytes = stats.bytes * n_train / stats.documents
        stride = max(1, math.ceil(train_bytes / (options.bpe_sample_mb * 1e6))) if options.bpe_sample_mb else 1
        count = math.ceil(n_train / stride)
        which = ("the training documents" if stride == 1 else
                 f"{count:,} of the {n_train:,} training documents (every {stride}th, about "
                 f"{train_bytes / stride / 1e6:,.0f} MB; prepare.bpe_sample_mb={options.bpe_sample_mb:g})")
        print(f"prepare: training a byte-level BPE of {options.vocab_size:,} entries on {which}", flush=True)
        info = tok.train_bpe(_bpe_sample(corpus.documents(files), is_val, stride=stride),
                             vocab_size=options.vocab_size, eos_token=options.eos_token, count=count,
                             progress=sys.stderr.isatty())
    dtype = np.uint16 if info.vocab_size <= 2**16 else np.uint32

    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        counts = _encode_into(staging, info, corpus.documents(files), is_val, dtype=dtype, total_bytes=stats.bytes)
        total = counts["train"][0] + counts["val"][0]
        if total < options.min_tokens:
            raise CorpusError(f"prepare.input={options.input} is too small: it encodes to {total:,} tokens, fewer than "
                              f"prepare.min_tokens={options.min_tokens:,}; add text (or lower prepare.min_tokens).")
        sha256 = tok.save(info, staging / "tokenizer.json")
        meta = {
            "format": FORMAT,
            "dtype": np.dtype(dtype).name,
            "vocab_size": info.vocab_size,
            "eos_id": info.eos_id,
            "train_tokens": counts["train"][0],
            "val_tokens": counts["val"][0],
            "train_documents": counts["train"][1],
            "val_documents": counts["val"][1],
            "tokenizer": {"file": "tokenizer.json", "sha256": sha256, "source": info.source,
                          "trained_on_documents": None if options.tokenizer else count},
            "corpus": {"path": str(corpus.path), "files": stats.files, "documents": stats.documents,
                       "bytes": stats.bytes, "text_field": options.text_field, "split_on": options.split_on},
            "split": {"by": "document", "val_fraction": options.val_fraction, "seed": options.seed},
        }
        (staging / META).write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Prepared(path=out, meta=meta)


def summary(prepared: Prepared) -> str:
    """What was written and how to use it."""
    m = prepared.meta
    tokens_per_doc = m["train_tokens"] / max(m["train_documents"], 1)
    return (f"prepared {prepared.path}: train {m['train_tokens']:,} tokens ({m['train_documents']:,} documents, "
            f"{tokens_per_doc:,.0f} tokens each on average), val {m['val_tokens']:,} tokens "
            f"({m['val_documents']:,} documents); vocabulary {m['vocab_size']:,} ({m['dtype']}); tokenizer sha256 "
            f"{m['tokenizer']['sha256'][:16]}\n"
            f"use it: data=tokens data.path={prepared.path} data.vocab_size={m['vocab_size']} data.dtype={m['dtype']}\n"
            f"  or as a data config of your own, e.g. conf/data/corpus.yaml with: name: tokens, path: {prepared.path}, "
            f"vocab_size: {m['vocab_size']}, dtype: {m['dtype']} (then --config-dir conf data=corpus)\n"
            f"  a trial's D may be up to about {m['train_tokens']:,} tokens (one epoch; data.allow_repeat=true "
            f"allows more and records the epochs)")
