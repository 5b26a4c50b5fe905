"""Streaming prepare: files read piece by piece give exactly what whole-file reading gave (with the same errors,
at the same offsets), the BPE trains on a bounded sample, a killed prepare's partial folder is cleaned by the
next one (or named while its prepare still runs), and the memory benchmark's smoke mode runs."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.prepare import corpus as corpus_mod
from orchestrator.prepare.corpus import Corpus, CorpusError
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
TEXT = ("Ünïcödé wörds ß 日本語 and plain words.\n\n" * 3 + "a paragraph\n\nsplit  \n\n") * 50


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64, 1 << 20])
def test_split_text_read_in_chunks_equals_whole_file_split(tmp_path, monkeypatch, chunk):
    path = tmp_path / "a.txt"
    path.write_text(TEXT)
    monkeypatch.setattr(corpus_mod, "CHUNK_BYTES", chunk)  # multi-byte characters and separators cross chunks
    got = list(Corpus.at(str(path), split_on="\n\n").documents())
    assert got == [p for p in TEXT.split("\n\n") if p.strip()]


@pytest.mark.parametrize("chunk", [1, 4, 1 << 20])
def test_errors_found_in_chunks_name_the_same_offset(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(corpus_mod, "CHUNK_BYTES", chunk)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good text\n\nmore " + "café".encode("latin-1") + b"\n\nend")
    with pytest.raises(CorpusError, match=r"bad.txt is not UTF-8 text \(byte 0xe9 at offset 19\)"):
        list(Corpus.at(str(bad), split_on="\n\n").documents())
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"text\n\nab\x00cd")
    with pytest.raises(CorpusError, match=r"nul.txt is binary \(a NUL byte at offset 8\)"):
        list(Corpus.at(str(nul), split_on="\n\n").documents())


def test_jsonl_is_read_line_by_line_with_file_offsets(tmp_path):
    path = tmp_path / "a.jsonl"
    lines = [json.dumps({"text": f"doc {i} ü"}, ensure_ascii=False) for i in range(5)]
    path.write_text("\n".join(lines) + "\n\n")
    assert list(Corpus.at(str(path)).documents()) == [f"doc {i} ü" for i in range(5)]
    offset = len(("\n".join(lines[:3]) + "\n").encode())
    path.write_bytes(("\n".join(lines[:3]) + "\n").encode() + b'{"text": "\xff"}\n')
    with pytest.raises(CorpusError, match=rf"a.jsonl is not UTF-8 text \(byte 0xff at offset {offset + 10}\)"):
        list(Corpus.at(str(path)).documents())


def _corpus(folder: Path, n: int = 400) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "web.jsonl", "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"text": f"document {i}: " + " ".join(f"w{(i * j) % 97}" for j in range(400))}) + "\n")
    return folder


def test_the_bpe_trains_on_a_bounded_sample_and_the_tokens_cover_every_document(tmp_path):
    folder = _corpus(tmp_path / "corpus")
    out = tmp_path / "tokens"
    result = run_cli("action=prepare", f"prepare.input={folder}", f"prepare.output={out}", "prepare.vocab_size=300",
                     "prepare.bpe_sample_mb=0.2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "meta.json").read_text())
    train_docs = meta["train_documents"]
    stride = -(-round(meta["corpus"]["bytes"] * train_docs / meta["corpus"]["documents"]) // 200_000)
    assert stride > 1
    assert f"on {-(-train_docs // stride):,} of the {train_docs:,} training documents (every {stride}th" in result.stdout
    assert meta["tokenizer"]["trained_on_documents"] == -(-train_docs // stride)
    assert meta["train_documents"] + meta["val_documents"] == 400  # every document encoded, not only the sample
    assert "MB/s" in result.stdout and "encoded" in result.stdout


def test_a_killed_prepares_partial_folder_is_removed_by_the_next(tmp_path):
    folder = _corpus(tmp_path / "corpus", n=50)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    stale = tmp_path / f".tokens.partial-{dead.pid}"
    stale.mkdir()
    (stale / "train.bin").write_bytes(b"\x00" * 100)
    result = run_cli("action=prepare", f"prepare.input={folder}", f"prepare.output={tmp_path / 'tokens'}",
                     "prepare.vocab_size=300", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"removed {stale}, the partial output of a prepare that was stopped (pid {dead.pid}" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "tokens"]


def test_a_running_prepares_partial_folder_is_named_not_touched(tmp_path):
    folder = _corpus(tmp_path / "corpus", n=50)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "orchestrator", "prepare"])
    try:
        partial = tmp_path / f".tokens.partial-{alive.pid}"
        partial.mkdir()
        result = run_cli("action=prepare", f"prepare.input={folder}", f"prepare.output={tmp_path / 'tokens'}",
                         "prepare.vocab_size=300", cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"is being written by another prepare (pid {alive.pid}, into {partial})" in lines[0]
        assert partial.is_dir() and not (tmp_path / "tokens").exists()
    finally:
        alive.kill()
        alive.wait()


def test_the_prepare_memory_benchmark_smoke_mode(tmp_path):
    start = time.monotonic()
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "prepare_memory.py"), "--smoke"], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert re.search(r"floor: prepare of [0-9]+ MB under 2 GB: ok", out.stdout), out.stdout
    assert "throughput ratio to raw tokenizers: end to end" in out.stdout
    assert time.monotonic() - start < 300
