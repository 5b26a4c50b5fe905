"""The tokenizer of a prepared corpus (the one module that imports Hugging Face `tokenizers`).

Either a byte-level BPE trained on the corpus's training split (GPT-2's scheme, Radford et al. 2019: a
256-symbol byte alphabet, so every UTF-8 text encodes without unknown tokens and decodes back to itself,
since no normalizer touches the text), or a local tokenizer.json. Both run offline. The tokenizer is saved
beside the tokens, and its identity is the SHA-256 of that file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers.models import BPE

from orchestrator.prepare.corpus import CorpusError

ENCODE_BATCH = 1024
"""Most documents per `encode_batch_fast` call (tokenizers encodes a batch on all cores, without the GIL)."""
ENCODE_BATCH_BYTES = 4 << 20
"""Most text per `encode_batch_fast` call: a batch is cut at whichever limit comes first."""


@dataclass
class TokenizerInfo:
    """The tokenizer a corpus was encoded with."""

    tokenizer: Tokenizer
    source: str
    """"trained byte-level BPE" or the path of the loaded tokenizer.json."""
    eos_id: int | None
    """The id written after every document (None: the loaded tokenizer has no such token)."""

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)


def train_bpe(documents: Iterator[str], *, vocab_size: int, eos_token: str, count: int,
              progress: bool = False) -> TokenizerInfo:
    """A byte-level BPE of at most `vocab_size` entries (the 256 bytes and `eos_token` included); `progress` shows
    tokenizers' own progress bars (on a terminal)."""
    if vocab_size < 257 + 1:
        raise CorpusError(f"prepare.vocab_size={vocab_size} is too small for a byte-level BPE: it needs the 256 "
                          f"byte symbols, the end-of-document token and at least one merge (>= 258).")
    tokenizer = Tokenizer(BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[eos_token], show_progress=progress,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(documents, trainer=trainer, length=count)
    return TokenizerInfo(tokenizer, source="trained byte-level BPE", eos_id=tokenizer.token_to_id(eos_token))


def load(path: str, *, eos_token: str) -> TokenizerInfo:
    """A local tokenizer.json; a file that is missing or not a tokenizer is one sentence."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise CorpusError(f"prepare.tokenizer={path} is not a file: give a tokenizer.json (Hugging Face tokenizers "
                          f"format), or leave it empty to train a BPE on the corpus.")
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as err:  # noqa: BLE001  (tokenizers raises a bare Exception for a malformed file)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CorpusError(f"prepare.tokenizer={path} is not a tokenizer.json ({first}).") from None
    return TokenizerInfo(tokenizer, source=str(file.resolve()), eos_id=tokenizer.token_to_id(eos_token))


def encode(info: TokenizerInfo, documents: Iterator[str]) -> Iterator[list[int]]:
    """Each document's ids followed by the end-of-document id (when there is one), batch by batch."""
    tail = [info.eos_id] if info.eos_id is not None else []
    batch: list[str] = []
    for text in documents:
        batch.append(text)
        if len(batch) == ENCODE_BATCH:
            yield from (ids + tail for ids in encode_batch(info, batch))
            batch = []
    if batch:
        yield from (ids + tail for ids in encode_batch(info, batch))


def encode_batch(info: TokenizerInfo, texts: list[str]) -> list[list[int]]:
    """The ids of each text (no end-of-document id), encoded in parallel; releases the GIL while it works."""
    return [e.ids for e in info.tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


def save(info: TokenizerInfo, path: Path) -> str:
    """Write tokenizer.json; returns its SHA-256 (the tokenizer's identity in meta.json)."""
    info.tokenizer.save(str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def decode(path: Path, ids: list[int]) -> str:
    """The text of `ids` under the tokenizer.json at `path` (special tokens kept)."""
    return Tokenizer.from_file(str(path)).decode(ids, skip_special_tokens=False)
