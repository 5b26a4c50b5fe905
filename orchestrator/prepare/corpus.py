"""A corpus as a stream of documents: its files found, read and checked.

Every way a corpus can be unusable is one sentence naming the file (CorpusError, exit 2): a path that does
not exist, a folder without files, a file that cannot be read, binary data (a NUL byte) or text that is not
UTF-8, a JSONL line that is not JSON or lacks the text field, a Parquet file that cannot be read or lacks the
column, no text at all, and fewer documents than a train/validation split needs. The corpus is read in a
first pass (`scan`) that finds all of these before anything is trained or written, then streamed again for
each later pass: nothing holds the whole corpus in memory, nor a whole file (JSONL a line at a time, Parquet a
row batch at a time, a text file cut at `split_on` a chunk at a time), except a text file that is one document.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import UsageError

JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
PARQUET_BATCH_ROWS = 4096
CHUNK_BYTES = 8 << 20
"""Bytes read at a time from a text file cut at prepare.split_on (JSONL is read a line at a time)."""


class CorpusError(UsageError):
    """The corpus cannot be tokenized as given (one sentence naming the file)."""


@dataclass(frozen=True)
class CorpusStats:
    """What the first pass found."""

    files: int
    documents: int
    bytes: int
    """UTF-8 bytes of the documents' text."""


@dataclass(frozen=True)
class Corpus:
    """The documents of `path` (a file or a folder), read as `text_field` (JSONL, Parquet) or split at `split_on`
    (text files; empty: one document per file)."""

    path: Path
    text_field: str = "text"
    split_on: str = ""

    @classmethod
    def at(cls, path: str, *, text_field: str = "text", split_on: str = "") -> Corpus:
        root = Path(path).expanduser()
        if not root.exists():
            raise CorpusError(f"prepare.input={path} does not exist.")
        return cls(root.resolve(), text_field=text_field, split_on=split_on)

    def files(self) -> list[Path]:
        """The corpus's files in a fixed order; hidden files and folders are skipped."""
        if self.path.is_file():
            return [self.path]
        files = sorted(p for p in self.path.rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self.path).parts))
        if not files:
            raise CorpusError(f"prepare.input={self.path} holds no files: give a text, JSONL or Parquet file, or a "
                              f"folder of them.")
        return files

    def scan(self) -> CorpusStats:
        """Read everything once: every error is raised here, before a tokenizer is trained or a file written."""
        files = self.files()
        documents = size = 0
        for text in self.documents(files):
            documents += 1
            size += len(text.encode("utf-8"))
        if documents == 0:
            raise CorpusError(f"prepare.input={self.path} holds no text: its {len(files)} file(s) are empty or "
                              f"whitespace only.")
        if documents < 2:
            hint = (" or set prepare.split_on (e.g. prepare.split_on='\\n\\n' cuts text files into paragraphs)"
                    if not self.split_on else "")
            raise CorpusError(f"prepare.input={self.path} holds 1 document: a train/validation split by document "
                              f"needs at least 2; add documents{hint}.")
        return CorpusStats(files=len(files), documents=documents, bytes=size)

    def documents(self, files: list[Path] | None = None) -> Iterator[str]:
        """Every non-blank document's text, in file order."""
        for file in files if files is not None else self.files():
            suffix = file.suffix.lower()
            if suffix in JSONL_SUFFIXES:
                pieces = self._jsonl(file)
            elif suffix in PARQUET_SUFFIXES:
                pieces = self._parquet(file)
            elif self.split_on:
                pieces = _split_text(file, self.split_on)
            else:
                pieces = [_read_text(file)]
            yield from (piece for piece in pieces if piece.strip())

    def _jsonl(self, file: Path) -> Iterator[str]:
        for number, line in enumerate(_text_lines(file), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise CorpusError(f"{file} line {number} is not JSON ({err.msg}): a .jsonl file holds one JSON object "
                                  f"per line.") from None
            if not isinstance(record, dict) or self.text_field not in record:
                has = f" (it has {', '.join(map(str, record))})" if isinstance(record, dict) else ""
                raise CorpusError(f"{file} line {number} has no {self.text_field!r} field{has}: set prepare.text_field "
                                  f"to the key that holds the text.")
            text = record[self.text_field]
            if not isinstance(text, str):
                raise CorpusError(f"{file} line {number}: {self.text_field!r} is a {type(text).__name__}, not text.")
            yield text

    def _parquet(self, file: Path) -> Iterator[str]:
        import pyarrow as pa  # noqa: PLC0415  (only for Parquet corpora)
        import pyarrow.parquet as pq  # noqa: PLC0415

        try:
            reader = pq.ParquetFile(file)
        except (OSError, pa.ArrowException) as err:
            raise CorpusError(f"{file} is not a readable Parquet file ({_first_line(err)}).") from None
        columns = reader.schema_arrow.names
        if self.text_field not in columns:
            raise CorpusError(f"{file} has no column {self.text_field!r} (it has {', '.join(columns)}): set "
                              f"prepare.text_field to the column that holds the text.")
        try:
            for batch in reader.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[self.text_field]):
                for text in batch.column(0).to_pylist():
                    if text is not None and not isinstance(text, str):
                        raise CorpusError(f"{file}: column {self.text_field!r} holds {type(text).__name__} values, "
                                          f"not text.")
                    yield text or ""
        except (OSError, pa.ArrowException) as err:
            raise CorpusError(f"{file} is not a readable Parquet file ({_first_line(err)}).") from None


def _read_text(file: Path) -> str:
    """A file's text: unreadable, binary (a NUL byte) and non-UTF-8 files are one sentence each."""
    try:
        data = file.read_bytes()
    except OSError as err:
        raise CorpusError(f"{file} cannot be read ({type(err).__name__}: {err.strerror or err}).") from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise CorpusError(f"{file} is binary (a NUL byte at offset {nul}), not text: remove it from prepare.input or "
                          f"convert it to UTF-8 text, JSONL or Parquet.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(f"{file} is not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}): convert it "
                          f"to UTF-8.") from None


def _open(file: Path):
    try:
        return open(file, "rb")
    except OSError as err:
        raise CorpusError(f"{file} cannot be read ({type(err).__name__}: {err.strerror or err}).") from None


def _checked(file: Path, data: bytes, offset: int) -> None:
    """No NUL byte in `data` (which starts at `offset` of the file)."""
    nul = data.find(b"\x00")
    if nul >= 0:
        raise CorpusError(f"{file} is binary (a NUL byte at offset {offset + nul}), not text: remove it from "
                          f"prepare.input or convert it to UTF-8 text, JSONL or Parquet.")


def _not_utf8(file: Path, data: bytes, offset: int, err: UnicodeDecodeError) -> CorpusError:
    return CorpusError(f"{file} is not UTF-8 text (byte {data[err.start]:#04x} at offset {offset + err.start}): "
                       f"convert it to UTF-8.")


def _text_lines(file: Path) -> Iterator[str]:
    """A file's lines (without their line ends), read one at a time; checked as _read_text checks a whole file."""
    offset = 0
    with _open(file) as fh:
        while True:
            try:
                raw = fh.readline()
            except OSError as err:
                raise CorpusError(f"{file} cannot be read ({type(err).__name__}: {err.strerror or err}).") from None
            if not raw:
                return
            _checked(file, raw, offset)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise _not_utf8(file, raw, offset, err) from None
            offset += len(raw)
            yield line.rstrip("\r\n")


def _split_text(file: Path, separator: str) -> Iterator[str]:
    """A text file's pieces between `separator`s, read CHUNK_BYTES at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, carry = 0, ""
    with _open(file) as fh:
        while True:
            try:
                chunk = fh.read(CHUNK_BYTES)
            except OSError as err:
                raise CorpusError(f"{file} cannot be read ({type(err).__name__}: {err.strerror or err}).") from None
            _checked(file, chunk, offset)
            pending = decoder.getstate()[0]
            try:
                text = carry + decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                raise _not_utf8(file, pending + chunk, offset - len(pending), err) from None
            offset += len(chunk)
            pieces = text.split(separator)
            carry = pieces.pop()
            yield from pieces
            if not chunk:
                break
    yield carry


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
