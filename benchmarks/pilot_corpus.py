"""A real corpus nobody here wrote, end to end: prepare -> pilot -> IsoFLOP sweep -> report, on 2 CPU cores.

The corpus is built on the machine without downloads: the docstrings and comments of the installed Python
standard library (`sysconfig.get_paths()["stdlib"]`, every *.py file: module, class and function docstrings via
`ast`, comments via `tokenize`), one document per module, capped at --mb megabytes. Then, through the real CLI
in a scratch folder:
  1. action=prepare   a byte-level BPE of --vocab entries (a small vocabulary: the embeddings of a large one would be
                      most of N at CPU sizes, which the pilot refuses or warns about);
  2. the budgets      (--budgets auto) the 3 largest half-decade budgets whose design the corpus holds: the largest D
                      of each budget's sizes, at the largest centre the pilot can measure (pilot.centre_guess x
                      pilot.cell_span: D grows as the square root of the centre), at most --epochs passes over the
                      training tokens (design.corpus_budgets);
  3. action=pilot     the lr and batch law, the IsoFLOP centre and the throughput, written as hparams=pilot_stdlib;
  4. the sweep        sweep=stdlib (an IsoFLOP design of those budgets, adaptive placement on), hparams=pilot_stdlib;
  5. the report       reports/stdlib/: fit.json's checks, how many budgets have a bracketed minimum, the headline.
Prints each stage's wall time and the figures; exits 1 when fewer than 3 budgets are bracketed.

    python benchmarks/pilot_corpus.py --out DIR [--mb 6] [--vocab 512] [--budgets auto|1e10,3e10,1e11] [--epochs 1]
        [--pilot KEY=VALUE ...]   (extra overrides of the pilot, e.g. pilot.trials_per_cell=6)
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
sys.path.insert(0, str(REPO))
CANDIDATES = [1e9, 3e9, 1e10, 3e10, 1e11, 3e11, 1e12, 3e12, 1e13]
"""Half-decade budgets the design is chosen from (--budgets auto)."""

SWEEP = """\
# @package _global_
# An IsoFLOP sweep of a small GPT on the Python standard library's docstrings and comments (benchmarks/pilot_corpus.py).
sweep:
  name: stdlib
  kind: isoflop
  description: IsoFLOP profiles on the stdlib's docstrings (CPU, minutes)
  budgets: {budgets}
  centre_tokens_per_param: 20
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


def choose_budgets(conf: Path, *, train_tokens: int, epochs: float) -> list[float]:
    """The sweep's budgets from the corpus (design.corpus_budgets), printed with the largest D at each candidate."""
    import warnings

    from orchestrator.cli import compose_config, to_typed
    from orchestrator.conf_dirs import ConfigDirs
    from orchestrator.errors import UsageError
    from orchestrator.pilot import design
    from orchestrator.pilot.options import PilotConfig
    from orchestrator.sweep_plan import plan_trials

    pilot = PilotConfig()
    centre = pilot.centre_guess * pilot.cell_span
    largest = []
    for budget in CANDIDATES:
        config = to_typed(compose_config(["sweep=stdlib", "data=stdlib", f"sweep.budgets=[{budget:g}]",
                                          f"sweep.centre_tokens_per_param={centre:g}"], ConfigDirs.of([conf])))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # sizes that collapse to one shape: the pilot's check says so
                largest.append(float(max(t.tokens for t in plan_trials(config, datasets={"stdlib": config.data}))))
        except UsageError:
            largest.append(float("nan"))
    budgets = design.corpus_budgets(CANDIDATES, largest_tokens=largest, train_tokens=train_tokens, epochs=epochs)
    print("budgets: largest D at a centre of " + f"{centre:g} tokens per parameter: " + ", ".join(
        f"C={c:.0e} {d / 1e6:.2f}M" for c, d in zip(CANDIDATES, largest)) + f"; the corpus holds {epochs:g} x "
        f"{train_tokens / 1e6:.2f}M -> {', '.join(f'{b:.0e}' for b in budgets) or 'none: a larger corpus is needed'}",
        flush=True)
    return budgets


def design_line(conf: Path, *, train_tokens: int) -> str:
    """The planned sweep under the pilot's rules: trials, refused ones, steps, and the passes over the corpus."""
    from orchestrator.cli import compose_config, to_typed
    from orchestrator.conf_dirs import ConfigDirs
    from orchestrator.sweep_plan import plan_trials

    config = to_typed(compose_config(["sweep=stdlib", "data=stdlib", "hparams=pilot_stdlib"], ConfigDirs.of([conf])))
    trials = plan_trials(config, datasets={"stdlib": config.data})
    return (f"{len(trials)} first-wave trials, {sum(t.invalid is not None for t in trials)} not valid points; "
            f"{min(t.steps for t in trials)} to {max(t.steps for t in trials)} steps, warmup "
            f"{min(t.warmup_steps for t in trials):.0f} steps or more; largest D {max(t.tokens for t in trials):,} = "
            f"{max(t.tokens for t in trials) / train_tokens:.2f} passes over the {train_tokens:,} training tokens")


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
    parser.add_argument("--budgets", default="auto", help="auto (chosen from the corpus) or C1,C2,...")
    parser.add_argument("--epochs", type=float, default=1.0, help="passes over the training tokens the design may need")
    parser.add_argument("--pilot", nargs="*", default=[], help="extra pilot.KEY=VALUE overrides")
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
    (conf / "data" / "stdlib.yaml").write_text(
        f"name: tokens\nvocab_size: {meta['vocab_size']}\npath: {out / 'tokens'}\ndtype: {meta['dtype']}\n"
        f"allow_repeat: true\n")  # the budgets need at most --epochs passes; each trial records its epochs
    if args.budgets == "auto":
        (conf / "sweep" / "stdlib.yaml").write_text(SWEEP.format(budgets="[1e10]"))
        budgets = choose_budgets(conf, train_tokens=meta["train_tokens"], epochs=args.epochs)
        if not budgets:
            return 1
    else:
        budgets = [float(b) for b in args.budgets.split(",")]
    (conf / "sweep" / "stdlib.yaml").write_text(SWEEP.format(budgets="[" + ", ".join(f"{b:g}" for b in budgets) + "]"))
    base = ["--config-dir", str(conf), "sweep=stdlib", "data=stdlib"]
    code, secs, text = cli(*base, "action=pilot", "pilot.name=stdlib", *args.pilot, cwd=out, log=out / "pilot.log")
    print(f"pilot: {secs:.0f} s, exit {code}")
    print("\n".join(line for line in text.splitlines() if line.startswith(("  ", "pilot ", "warning")) and
                    "|" not in line), flush=True)
    if code:
        return 1
    print(f"sweep design: {design_line(conf, train_tokens=meta['train_tokens'])}", flush=True)
    code, secs, text = cli(*base, "hparams=pilot_stdlib", cwd=out, log=out / "sweep.log")
    print(f"sweep + report: {secs:.0f} s, exit {code}", flush=True)
    if not (out / "reports" / "stdlib" / "fit.json").is_file():
        print(text[-2000:])
        return 1
    stdout = (out / "sweep.log").read_text().split("\n--- stderr ---\n")[0]
    after = stdout.split("\nruns: ", 1)[-1].splitlines()[1:]  # the terminal headline follows the runs table's URL
    print("headline:\n" + "\n".join(line for line in after if line.strip()))
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
