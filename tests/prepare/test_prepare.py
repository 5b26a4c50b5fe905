"""action=prepare through the real CLI on a generated corpus of a few MB (text, JSONL and Parquet files): tokens
round-trip, meta.json matches the files, bad corpora are one sentence with nothing written, the planner refuses
a D larger than the corpus, and a GPT sweep trains on the result."""

from __future__ import annotations

import hashlib
import json
import math
import random
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from tests.conftest import run_cli

SYLLABLES = ["ka", "to", "ri", "mu", "sel", "an", "dor", "ve", "li", "qu", "zo", "ën", "ß", "日", "本", "é"]
EOS = "<|endoftext|>"


def _document(rng: random.Random) -> str:
    """A paragraph-structured document of made-up words, with Unicode, tabs, runs of spaces and newlines."""
    words = ["".join(rng.choices(SYLLABLES, k=rng.randint(1, 4))) for _ in range(rng.randint(80, 900))]
    lines = [" ".join(words[i:i + 12]) for i in range(0, len(words), 12)]
    return "\n".join(("\t" if rng.random() < 0.1 else "") + line + ("  " if rng.random() < 0.1 else "")
                     for line in lines) + "\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    """About 3 MB in 3 formats; returns (folder, the documents in the order the corpus reads them)."""
    rng = random.Random(7)
    root = tmp_path_factory.mktemp("corpus")
    folder = root / "corpus"
    (folder / "books").mkdir(parents=True)
    texts = {f"books/{i:02d}.txt": _document(rng) for i in range(40)}
    for name, text in texts.items():
        (folder / name).write_text(text)
    records = [_document(rng) for _ in range(600)]
    with open(folder / "web.jsonl", "w") as f:
        for i, text in enumerate(records):
            f.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")
    rows = [_document(rng) for _ in range(400)]
    pq.write_table(pa.table({"text": rows, "n": list(range(len(rows)))}), folder / "wiki.parquet")
    (folder / ".hidden.txt").write_text("never read")
    docs = [texts[k] for k in sorted(texts)] + records + rows  # books/ < web.jsonl < wiki.parquet
    return folder, docs


@pytest.fixture(scope="module")
def prepared(corpus) -> tuple[Path, dict, list[str]]:
    folder, docs = corpus
    out = folder.parent / "tokens"
    result = run_cli("action=prepare", f"prepare.input={folder}", f"prepare.output={out}", "prepare.vocab_size=512",
                     cwd=folder.parent, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"data=tokens data.path={out}" in result.stdout
    return out, json.loads((out / "meta.json").read_text()), docs


def _split_documents(ids: np.ndarray, eos: int, tokenizer: Tokenizer) -> list[str]:
    ends = np.flatnonzero(ids == eos)
    assert len(ends) and ends[-1] == len(ids) - 1  # every document, the last included, ends with the EOS token
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [tokenizer.decode(ids[s:e].tolist(), skip_special_tokens=False) for s, e in zip(starts, ends)]


def test_tokens_round_trip_and_the_split_is_by_document(prepared):
    out, meta, docs = prepared
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    val_ids = np.fromfile(out / "val.bin", dtype=meta["dtype"])
    train_ids = np.fromfile(out / "train.bin", dtype=meta["dtype"])
    val_docs = _split_documents(val_ids, meta["eos_id"], tokenizer)
    train_docs = _split_documents(train_ids, meta["eos_id"], tokenizer)
    # The decoded validation split is its text exactly: whole documents, in corpus order, each followed by EOS.
    assert tokenizer.decode(val_ids.tolist(), skip_special_tokens=False) == "".join(d + EOS for d in val_docs)
    # Every corpus document is, whole and unchanged, in exactly one split, in corpus order.
    v = t = 0
    for doc in docs:
        if v < len(val_docs) and val_docs[v] == doc:
            v += 1
        else:
            assert train_docs[t] == doc
            t += 1
    assert (v, t) == (len(val_docs), len(train_docs))
    assert len(val_docs) == round(0.05 * len(docs))


def test_meta_counts_match_the_files(prepared):
    out, meta, docs = prepared
    itemsize = np.dtype(meta["dtype"]).itemsize
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 512
    for split in ("train", "val"):
        ids = np.fromfile(out / f"{split}.bin", dtype=meta["dtype"])
        assert meta[f"{split}_tokens"] == (out / f"{split}.bin").stat().st_size // itemsize == len(ids)
        assert meta[f"{split}_documents"] == int((ids == meta["eos_id"]).sum())
        assert int(ids.max()) < meta["vocab_size"]
    assert meta["train_documents"] + meta["val_documents"] == meta["corpus"]["documents"] == len(docs)
    assert meta["corpus"]["files"] == 42  # the hidden file is skipped
    assert meta["corpus"]["bytes"] == sum(len(d.encode()) for d in docs) > 2_000_000
    assert meta["tokenizer"]["sha256"] == hashlib.sha256((out / "tokenizer.json").read_bytes()).hexdigest()
    assert Tokenizer.from_file(str(out / "tokenizer.json")).get_vocab_size() == meta["vocab_size"]
    # BPE compresses: fewer tokens than bytes.
    assert meta["train_tokens"] + meta["val_tokens"] < 0.6 * meta["corpus"]["bytes"]
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "tokenizer.json", "train.bin", "val.bin"]


def test_a_local_tokenizer_json_encodes_the_same_tokens(prepared, tmp_path):
    out, meta, _ = prepared
    again = tmp_path / "again"
    result = run_cli("action=prepare", f"prepare.input={meta['corpus']['path']}", f"prepare.output={again}",
                     f"prepare.tokenizer={out / 'tokenizer.json'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    second = json.loads((again / "meta.json").read_text())
    assert second["tokenizer"]["sha256"] == meta["tokenizer"]["sha256"]
    assert second["tokenizer"]["source"] == str(out / "tokenizer.json")
    for name in ("train.bin", "val.bin"):
        assert (again / name).read_bytes() == (out / name).read_bytes()


def _bad(tmp: Path, kind: str) -> Path:
    """A corpus that cannot be used, of the given kind."""
    folder = tmp / "bad"
    folder.mkdir()
    good = "some words here and there\n" * 40
    if kind == "empty folder":
        pass
    elif kind == "empty files":
        (folder / "a.txt").write_text("")
        (folder / "b.txt").write_text(" \n\n")
    elif kind == "binary":
        (folder / "a.txt").write_text(good)
        (folder / "b.bin").write_bytes(b"\x7fELF\x00\x01\x02")
    elif kind == "not utf-8":
        (folder / "a.txt").write_text(good)
        (folder / "b.txt").write_bytes("café".encode("latin-1"))
    elif kind == "unreadable":
        (folder / "a.txt").write_text(good)
        (folder / "b.txt").symlink_to("/proc/self/mem")  # a regular file whose read fails (EIO), even for root
    elif kind == "one document":
        (folder / "a.txt").write_text(good)
    elif kind == "too small":
        (folder / "a.txt").write_text("hi")
        (folder / "b.txt").write_text("there")
    elif kind == "bad jsonl":
        (folder / "a.jsonl").write_text('{"text": "fine"}\n{"text": broken\n')
    elif kind == "jsonl without the field":
        (folder / "a.jsonl").write_text('{"body": "a"}\n')
    elif kind == "bad parquet":
        (folder / "a.parquet").write_bytes(b"PAR1 not really")
    elif kind == "parquet without the column":
        pq.write_table(pa.table({"body": ["a", "b"]}), folder / "a.parquet")
    return folder


@pytest.mark.parametrize("kind, phrase", [
    ("missing", "does not exist"),
    ("empty folder", "holds no files"),
    ("empty files", "holds no text: its 2 file(s) are empty or whitespace only"),
    ("binary", "b.bin is binary (a NUL byte at offset 4)"),
    ("not utf-8", "b.txt is not UTF-8 text (byte 0xe9 at offset 3)"),
    ("unreadable", "b.txt cannot be read (OSError"),
    ("one document", "holds 1 document: a train/validation split by document needs at least 2"),
    ("too small", "is too small: it encodes to"),
    ("bad jsonl", "a.jsonl line 2 is not JSON"),
    ("jsonl without the field", "a.jsonl line 1 has no 'text' field (it has body)"),
    ("bad parquet", "a.parquet is not a readable Parquet file"),
    ("parquet without the column", "a.parquet has no column 'text' (it has body)"),
])
def test_bad_corpora_are_one_sentence_and_write_nothing(tmp_path, kind, phrase):
    if kind == "unreadable" and not Path("/proc/self/mem").exists():
        pytest.skip("needs Linux's /proc/self/mem")
    folder = tmp_path / "missing" if kind == "missing" else _bad(tmp_path, kind)
    before = sorted(tmp_path.rglob("*"))
    result = run_cli("action=prepare", f"prepare.input={folder}", f"prepare.output={tmp_path / 'out'}",
                     "prepare.vocab_size=300", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert phrase in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(tmp_path.rglob("*")) == before  # no output folder, no staging folder left behind


def test_an_existing_output_and_missing_options_are_refused(prepared, tmp_path):
    out, meta, _ = prepared
    result = run_cli("action=prepare", f"prepare.input={meta['corpus']['path']}", f"prepare.output={out}",
                     cwd=tmp_path)
    assert result.returncode == 2 and "exists and is not an empty folder" in result.stderr
    result = run_cli("action=prepare", f"prepare.input={meta['corpus']['path']}", cwd=tmp_path)
    assert result.returncode == 2 and "prepare.output is required for action=prepare" in result.stderr


@pytest.mark.slow
def test_the_plan_refuses_a_D_larger_than_the_corpus_unless_data_may_repeat(prepared, tmp_path):
    out, meta, _ = prepared
    data = ["data=tokens", f"data.path={out}", f"data.vocab_size={meta['vocab_size']}"]
    too_big = f"sweep.trials=[{{n_layer:1,d_model:32,n_head:2,tokens:{2 * meta['train_tokens']}}}]"
    result = run_cli("sweep=list_example", too_big, *data, "action=plan", "hparams.allow_invalid=true", cwd=tmp_path)
    assert result.returncode == 2
    assert "(2.00 epochs); set data.allow_repeat=true" in result.stderr
    result = run_cli("sweep=list_example", too_big, *data, "data.allow_repeat=true", "action=plan", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # meta.json is checked against the data config: a smaller vocabulary, another dtype.
    small = run_cli("sweep=list_example", *data[:2], "data.vocab_size=300", "action=plan", cwd=tmp_path)
    assert small.returncode == 2 and "set data.vocab_size=512" in small.stderr
    # A larger one is padding: to the next multiple of 64 it is accepted, past it one sentence, nothing planned.
    padded = run_cli("sweep=list_example", *data, "data.allow_repeat=true", "action=plan", cwd=tmp_path)
    assert padded.returncode == 0, padded.stderr
    large = run_cli("sweep=list_example", *data[:2], "data.vocab_size=8192", "action=plan", cwd=tmp_path)
    assert large.returncode == 2 and large.stdout == ""
    assert large.stderr.strip().splitlines()[-1].endswith(
        "(512): the 7680 extra embedding rows are never trained yet count in every trial's N and C; set "
        "data.vocab_size=512 (padding up to 512, the next multiple of 64, is accepted).")
    wide = run_cli("sweep=list_example", *data, "data.dtype=uint32", "action=plan", cwd=tmp_path)
    assert wide.returncode == 2 and "set data.dtype=uint16" in wide.stderr


@pytest.mark.slow  # a real Ray sweep with its report: about 90 s on 2 shared cores
def test_a_gpt_sweep_trains_on_the_prepared_tokens(prepared, tmp_path):
    out, meta, _ = prepared
    result = run_cli("sweep=tiny", "sweep.budgets=[2e10]", "data=tokens", f"data.path={out}",
                     f"data.vocab_size={meta['vocab_size']}", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        losses = [row[0] for row in db.execute(
            "SELECT m.value FROM latest_metrics m JOIN tags t ON t.run_uuid = m.run_uuid "
            "WHERE m.key = 'final_eval_loss' AND t.key = 'status' AND t.value = 'finished'")]
        paths = {row[0] for row in db.execute("SELECT value FROM params WHERE key = 'data.path'")}
    assert len(losses) == 3 and paths == {str(out)}, result.stdout
    # Each model learned the corpus: well below the loss of guessing uniformly over the vocabulary.
    assert all(math.isfinite(loss) and loss < 0.8 * math.log(meta["vocab_size"]) for loss in losses), losses
    assert "runs: http://127.0.0.1:5000/#/experiments/" in result.stdout
