"""A real corpus nobody here wrote, end to end: prepare -> pilot -> IsoFLOP sweep -> report, on 2 CPU cores.

The corpus is built on the machine without downloads: the docstrings and comments of the installed Python
standard library (`sysconfig.get_paths()["stdlib"]`, every *.py file: module, class and function docstrings via
`ast`, comments via `tokenize`), one document per module, capped at --mb megabytes. Then, through the real CLI
in a scratch folder:
  1. action=prepare   (data.allow_repeat=true: the ~1.8M training tokens are fewer than the smallest models at
                      1e11 train on) a byte-level BPE of --vocab entries (a small vocabulary: the embeddings of a large one
                      would be most of N at CPU sizes, which the pilot refuses or warns about);
  2. action=pilot     the lr and batch law, the IsoFLOP centre and the throughput, written as hparams=pilot_stdlib;
  3. the sweep        sweep=stdlib (an IsoFLOP design of --budgets, adaptive placement on) with hparams=pilot_stdlib;
  4. the report       reports/stdlib/: fit.json's checks, how many budgets have a bracketed minimum, the headline.
Prints each stage's wall time and the figures; exits 1 when fewer than 3 budgets are bracketed.

    python benchmarks/pilot_corpus.py --out DIR [--mb 6] [--vocab 512] [--budgets 1e10,3e10,1e11]
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import subprocess
import sys
import sysconfig
import time
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SWEEP = """\
# @package _global_
# An IsoFLOP sweep of a small GPT on the Python standard library's docstrings and comments (benchmarks/pilot_corpus.py).
sweep:
  name: stdlib
  kind: isoflop
  description: IsoFLOP profiles on the stdlib's docstrings (CPU, minutes)
  budgets: {budgets}
  sizes_per_budget: 5
  span: 4.0
  min_tokens_per_param: 1.0
  seeds: [0]
adaptive:
  enabled: true
  tolerance: 2.0
  max_sizes: 7
model:
  n_layer: 2
  n_head: 2
  scale_depth: false
  head_dim: 2
  seq_len: 64
trainer:
  eval_tokens: 65536
  evals_per_run: 2
"""


def docs_of(path: Path) -> str:
    """The docstrings and comments of one module, in source order."""
    source = path.read_text(encoding="utf-8", errors="ignore")
    parts = []
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                parts.append(doc)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT and len(tok.string) > 3 and not tok.string.startswith("#!"):
                parts.append(tok.string.lstrip("# "))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return "\n".join(parts)


def build_corpus(folder: Path, *, megabytes: float) -> tuple[int, int]:
    """One .txt per stdlib module (tests and site-packages left out), until the cap; returns (files, bytes)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    folder.mkdir(parents=True)
    files = total = 0
    for path in sorted(stdlib.rglob("*.py")):
        rel = path.relative_to(stdlib)
        if rel.parts[0] in ("site-packages", "test", "idlelib", "lib2to3") or "tests" in rel.parts:
            continue
        text = docs_of(path)
        if len(text) < 200:
            continue
        text = text.encode("utf-8", errors="ignore")[: int(megabytes * 1e6) - total].decode("utf-8", errors="ignore")
        (folder / ("_".join(rel.with_suffix("").parts) + ".txt")).write_text(text, encoding="utf-8")
        files += 1
        total += len(text.encode())
        if total >= megabytes * 1e6:
            break
    return files, total


def cli(*args: str, cwd: Path, log: Path) -> tuple[int, float, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, check=False)
    log.write_text(out.stdout + "\n--- stderr ---\n" + out.stderr)
    return out.returncode, time.perf_counter() - t0, out.stdout + out.stderr


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True, help="a fresh folder")
    parser.add_argument("--mb", type=float, default=6.0)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--budgets", default="1e10,3e10,1e11")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=False)
    t0 = time.perf_counter()
    files, size = build_corpus(out / "corpus", megabytes=args.mb)
    print(f"corpus: {files} stdlib modules' docstrings and comments, {size / 1e6:.2f} MB "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)
    code, secs, text = cli("action=prepare", "prepare.input=corpus", "prepare.output=tokens",
                           f"prepare.vocab_size={args.vocab}", cwd=out, log=out / "prepare.log")
    if code:
        print(text[-2000:])
        return 1
    meta = json.loads((out / "tokens" / "meta.json").read_text())
    print(f"prepare: {secs:.0f} s; {meta.get('splits', meta)}", flush=True)
    conf = out / "conf"
    (conf / "sweep").mkdir(parents=True)
    (conf / "data").mkdir()
    budgets = "[" + ", ".join(args.budgets.split(",")) + "]"
    (conf / "sweep" / "stdlib.yaml").write_text(SWEEP.format(budgets=budgets))
    (conf / "data" / "stdlib.yaml").write_text(
        f"name: tokens\nvocab_size: {meta['vocab_size']}\npath: {out / 'tokens'}\ndtype: {meta['dtype']}\n"
        f"allow_repeat: true\n")  # the stdlib's docs hold ~1.8M training tokens; the smallest models at 1e11 see
    # up to about 1.4 epochs of them (each trial records its epochs)
    base = ["--config-dir", str(conf), "sweep=stdlib", "data=stdlib"]
    code, secs, text = cli(*base, "action=pilot", "pilot.name=stdlib", cwd=out, log=out / "pilot.log")
    print(f"pilot: {secs:.0f} s, exit {code}")
    print("\n".join(line for line in text.splitlines() if line.startswith(("  ", "pilot ", "warning")) and
                    "|" not in line), flush=True)
    if code:
        return 1
    code, secs, text = cli(*base, "hparams=pilot_stdlib", cwd=out, log=out / "sweep.log")
    print(f"sweep + report: {secs:.0f} s, exit {code}", flush=True)
    if not (out / "reports" / "stdlib" / "fit.json").is_file():
        print(text[-2000:])
        return 1
    fit = json.loads((out / "reports" / "stdlib" / "fit.json").read_text())
    profiles = fit.get("isoflop", {}).get("profiles", [])
    bracketed = sum(1 for p in profiles if not p["edge"])
    print(f"bracketed minima: {bracketed} of {len(fit.get('budgets', {}).get('values', []))} budgets; "
          f"trustworthy: {fit.get('trustworthy')}")
    for c in fit.get("checks", []):
        print(f"  {c.get('status', '?'):7s} {c.get('title', c.get('name'))}: {c.get('detail', '')}")
    print(f"total {time.perf_counter() - t0:.0f} s (corpus, prepare, pilot, sweep, report)")
    return 0 if bracketed >= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
