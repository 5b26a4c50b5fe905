"""action=prepare: split by document, encode, and write the token folder that `data=tokens` reads.

Output (trainers/data.py reads it): `train.bin` and `val.bin`, the documents' token ids back to back, each
document followed by the end-of-document id, as flat little-endian uint16 (vocabularies up to 65,536) or uint32
arrays (nanoGPT's layout); `tokenizer.json`; and `meta.json` with the vocabulary size, dtype, token and document
counts of each split, the tokenizer's SHA-256 and where the corpus came from. The split is by document: a
seeded random `val_fraction` of the documents (at least one) is held out whole, so no validation text is
trained on, and the BPE is trained on the training documents only.

Passes: scan (every bad-input error, before anything is trained or written), train the BPE, encode. Files are
written into a staging folder beside the output and renamed into place at the end: a failure or Ctrl-C leaves
nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from orchestrator.prepare import tokenizer as tok
from orchestrator.prepare.corpus import Corpus, CorpusError
from orchestrator.prepare.options import PrepareConfig

META = "meta.json"
FORMAT = "scaling-orchestrator tokens 1"


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


def _progress() -> Progress:
    """A progress bar on a terminal; silent otherwise (the phase lines are printed either way)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not sys.stderr.isatty(), transient=True)


def prepare(options: PrepareConfig) -> Prepared:
    """Tokenize `options.input` into `options.output`; every bad input is a CorpusError (exit 2), nothing written."""
    corpus = Corpus.at(options.input, text_field=options.text_field, split_on=options.split_on)
    out = _output_folder(options.output)
    files = corpus.files()
    print(f"prepare: reading {len(files)} file(s) under {corpus.path}", flush=True)
    stats = corpus.scan()
    is_val = val_documents(stats.documents, fraction=options.val_fraction, seed=options.seed)
    print(f"prepare: {stats.documents:,} documents, {stats.bytes:,} bytes of text; {int(is_val.sum()):,} held out "
          f"for validation", flush=True)

    def split(want_val: bool) -> Iterator[str]:
        return (text for text, val in zip(corpus.documents(files), is_val, strict=True) if val == want_val)

    if options.tokenizer:
        info = tok.load(options.tokenizer, eos_token=options.eos_token)
    else:
        print(f"prepare: training a byte-level BPE of {options.vocab_size:,} entries on the training documents",
              flush=True)
        info = tok.train_bpe(split(False), vocab_size=options.vocab_size, eos_token=options.eos_token,
                             count=int((~is_val).sum()), progress=sys.stderr.isatty())
    dtype = np.uint16 if info.vocab_size <= 2**16 else np.uint32

    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        counts = {"train": [0, 0], "val": [0, 0]}  # tokens, documents
        with open(staging / "train.bin", "wb") as train, open(staging / "val.bin", "wb") as val, _progress() as bar:
            task = bar.add_task("encoding", total=stats.documents)
            for ids, held_out in zip(tok.encode(info, corpus.documents(files)), is_val, strict=True):
                name = "val" if held_out else "train"
                (val if held_out else train).write(np.asarray(ids, dtype=dtype).tobytes())
                counts[name][0] += len(ids)
                counts[name][1] += 1
                bar.advance(task)
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
            "tokenizer": {"file": "tokenizer.json", "sha256": sha256, "source": info.source},
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
