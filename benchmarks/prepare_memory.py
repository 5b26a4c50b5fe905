"""Peak memory and throughput of `action=prepare` on a large synthetic-text JSONL corpus, measured on the CLI
process (peak RSS of its process tree), with its throughput as a ratio to raw Hugging Face `tokenizers`
batch-encoding of the same text.

The corpus is generated into a temporary folder (deleted afterwards): documents of 200 to 2000 words drawn from
a Zipf-distributed vocabulary of 50,000 made-up words, with punctuation and newlines, one JSON object per line.
The baseline is `Tokenizer.encode_batch_fast` (the call prepare itself uses) with the tokenizer prepare trained,
on up to 200 MB of the same documents already in memory, in batches of 1024, the faster of two runs: the
library's own speed on this machine, with nothing read, parsed, split or written. The ratio is prepare's
end-to-end MB/s (scan, BPE training on its sample, encoding, writing) over that, and the encode pass's own MB/s
over that.

    python benchmarks/prepare_memory.py                  # a 2 GB corpus (several minutes on 2 cores)
    python benchmarks/prepare_memory.py --size-mb 200    # any size
    python benchmarks/prepare_memory.py --smoke          # 5 MB, seconds
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from treerss import run_measured

ROOT = Path(__file__).resolve().parent.parent
LIMIT_GB = 2.0
BASELINE_MB = 200


def words(rng: np.random.Generator, n: int = 50_000) -> list[str]:
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    lengths = rng.integers(2, 11, n)
    return ["".join(rng.choice(letters, k)) for k in lengths]


def generate(path: Path, size_mb: float, *, seed: int = 0) -> int:
    """Write about `size_mb` MB of JSONL; returns the number of documents."""
    rng = np.random.default_rng(seed)
    vocab = np.array(words(rng))
    ranks = np.arange(1, len(vocab) + 1)
    p = 1.0 / ranks
    p /= p.sum()
    target, written, docs = size_mb * 1e6, 0, 0
    with open(path, "w") as fh:
        while written < target:
            block = []
            for _ in range(256):
                n = int(rng.integers(200, 2000))
                w = vocab[rng.choice(len(vocab), n, p=p)]
                cuts = rng.integers(8, 20, n // 8 + 1).cumsum()
                text = " ".join(w.tolist())
                sentences = [" ".join(w[a:b].tolist()) for a, b in zip(np.r_[0, cuts[:-1]], cuts) if a < n]
                text = ". ".join(s.capitalize() for s in sentences) + ".\n"
                block.append(json.dumps({"text": text}))
            chunk = "\n".join(block) + "\n"
            fh.write(chunk)
            written += len(chunk)
            docs += len(block)
    return docs


def baseline(corpus: Path, tokenizer: Path) -> tuple[float, float]:
    """(MB/s, MB) of encode_batch_fast on up to BASELINE_MB of the corpus's documents, in memory."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    texts, size = [], 0
    with open(corpus) as fh:
        for line in fh:
            text = json.loads(line)["text"]
            texts.append(text)
            size += len(text.encode())
            if size >= BASELINE_MB * 1e6:
                break
    start = time.perf_counter()
    for i in range(0, len(texts), 1024):
        tok.encode_batch_fast(texts[i:i + 1024], add_special_tokens=False)
    seconds = time.perf_counter() - start
    return size / 1e6 / seconds, size / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a 5 MB corpus")
    parser.add_argument("--size-mb", type=float, default=2000.0)
    parser.add_argument("--vocab-size", type=int, default=8192)
    args = parser.parse_args()
    size = 5.0 if args.smoke else args.size_mb
    work = Path(tempfile.mkdtemp(prefix="prepare_memory_"))
    try:
        corpus = work / "corpus.jsonl"
        t = time.perf_counter()
        docs = generate(corpus, size)
        mb = corpus.stat().st_size / 1e6
        print(f"corpus: {mb:,.1f} MB of JSONL, {docs:,} documents (generated in {time.perf_counter() - t:.0f} s)",
              flush=True)
        log = work / "prepare.log"
        with open(log, "w") as out:
            code, seconds, tree_gb, largest_gb = run_measured(
                [sys.executable, "-m", "orchestrator", "action=prepare", f"prepare.input={corpus}",
                 f"prepare.output={work / 'tokens'}", f"prepare.vocab_size={args.vocab_size}"],
                cwd=work, env={"PYTHONPATH": str(ROOT)}, stdout=out, stderr=out, timeout=4 * 3600)
        text = log.read_text()
        if code != 0:
            print(text[-2000:])
            raise SystemExit(f"prepare failed with exit code {code}")
        meta = json.loads((work / "tokens" / "meta.json").read_text())
        text_mb = meta["corpus"]["bytes"] / 1e6
        encoded = re.search(r"encoded [\d,.]+ MB of text in \S+ \(([\d.]+) MB/s\)", text)
        encode_rate = float(encoded.group(1)) if encoded else float("nan")
        runs = [baseline(corpus, work / "tokens" / "tokenizer.json") for _ in range(2)]  # the faster of two
        raw_rate, raw_mb = max(runs)
        rate = text_mb / seconds
        tokens = meta["train_tokens"] + meta["val_tokens"]
        print(f"prepare: {text_mb:,.1f} MB of text -> {tokens:,} tokens in {seconds:.1f} s ({rate:.2f} MB/s end to "
              f"end, encode pass {encode_rate:.2f} MB/s)")
        print(f"peak RSS: process tree {tree_gb:.2f} GB (sampled), largest process {largest_gb:.2f} GB (getrusage)")
        print(f"raw tokenizers encode_batch_fast on {raw_mb:,.0f} MB in memory: {raw_rate:.2f} MB/s")
        print(f"throughput ratio to raw tokenizers: end to end {rate / raw_rate:.2f}, encode pass "
              f"{encode_rate / raw_rate:.2f} (goal >= 0.5)")
        peak = max(tree_gb, largest_gb)
        print(f"floor: prepare of {mb:,.0f} MB under {LIMIT_GB:g} GB: {'ok' if peak < LIMIT_GB else 'MISSED'} "
              f"({peak:.2f} GB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
