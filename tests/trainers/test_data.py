"""Corpus sources: byte text and token memmaps, deterministic splits, and every kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainers.config import DataConfig
from trainers.data import DataError, build_source


def _bytes_source(path, *, tokens=64, seq_len=8, allow_repeat=False, seed=0, eval_tokens=16):
    cfg = DataConfig(name="bytes", path=str(path), allow_repeat=allow_repeat, val_fraction=0.1)
    return build_source(cfg, seq_len=seq_len, seed=seed, tokens=tokens, eval_tokens=eval_tokens)


def _write_tokens(folder, train, val, dtype="uint16"):
    folder.mkdir(exist_ok=True)
    np.asarray(train, dtype=dtype).tofile(folder / "train.bin")
    np.asarray(val, dtype=dtype).tofile(folder / "val.bin")
    return folder


def test_bytes_split_is_a_disjoint_tail_and_deterministic(tmp_path):
    text = bytes(range(256)) * 4  # 1024 bytes: position i holds byte i % 256
    (tmp_path / "a.txt").write_bytes(text)
    source = _bytes_source(tmp_path / "a.txt")
    train, val = source.train(0, 8), source.val()  # (8, 9), (2, 9)
    assert train.dtype == torch.int64 and train.shape == (8, 9) and val.shape == (2, 9)
    # The tail (last ~10%) is validation: its first window starts at byte 922 = 1024 - 102.
    assert val[0, 0].item() == (1024 - 102) % 256
    # Every training window is a contiguous run of the corpus (consecutive bytes mod 256).
    assert ((train[:, 1:] - train[:, :-1]) % 256 == 1).all()
    assert torch.equal(train, _bytes_source(tmp_path / "a.txt").train(0, 8))  # same seed, same order
    assert not torch.equal(train, _bytes_source(tmp_path / "a.txt", seed=1).train(0, 8))


def test_bytes_folder_reads_every_file_in_sorted_order(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"B" * 300)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_bytes(b"A" * 300)
    source = _bytes_source(tmp_path)
    assert source.info["train_tokens_per_epoch"] == (540 // 8 - 1) * 8  # 600 bytes - 60 held out
    assert source.val().unique().tolist() == [ord("A")]  # sorted paths: b.txt, sub/a.txt; the tail is A


def test_corpus_smaller_than_d_needs_allow_repeat_and_records_epochs(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"x" * 1000)
    with pytest.raises(DataError, match="data.allow_repeat=true"):
        _bytes_source(tmp_path / "a.txt", tokens=8 * 1000)
    source = _bytes_source(tmp_path / "a.txt", tokens=8 * 1000, allow_repeat=True)
    assert source.epochs == pytest.approx(8000 / source.info["train_tokens_per_epoch"])
    # Later epochs keep serving sequences (a fresh order and offset per epoch).
    windows = source.info["train_tokens_per_epoch"] // 8
    assert source.train(windows * 3, 4).shape == (4, 9)


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_token_memmaps_in_nanogpt_layout(tmp_path, dtype):
    vocab = 70_000 if dtype == "uint32" else 1000
    rng = np.random.default_rng(0)
    folder = _write_tokens(tmp_path / "tok", rng.integers(0, vocab, 4000), rng.integers(0, vocab, 500), dtype)
    cfg = DataConfig(name="tokens", path=str(folder), vocab_size=vocab, dtype=dtype)
    source = build_source(cfg, seq_len=16, seed=0, tokens=1600, eval_tokens=64)
    val = np.fromfile(folder / "val.bin", dtype=dtype)
    assert np.array_equal(source.val()[0].numpy(), val[:17])
    assert source.train(0, 5).max().item() < vocab


def test_missing_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        _bytes_source(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="val.bin is missing"):
        folder = tmp_path / "tok"
        folder.mkdir()
        np.zeros(100, dtype="uint16").tofile(folder / "train.bin")
        build_source(DataConfig(name="tokens", path=str(folder)), seq_len=8, seed=0, tokens=64, eval_tokens=8)


def test_empty_corpus_is_a_data_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        _bytes_source(tmp_path / "empty")
    (tmp_path / "tiny.txt").write_bytes(b"abc")
    with pytest.raises(DataError, match="fewer than"):
        _bytes_source(tmp_path / "tiny.txt")
    folder = _write_tokens(tmp_path / "tok", [], [1, 2, 3])
    with pytest.raises(DataError, match="empty"):
        build_source(DataConfig(name="tokens", path=str(folder)), seq_len=8, seed=0, tokens=64, eval_tokens=8)


def test_vocab_mismatch_is_a_data_error(tmp_path):
    folder = _write_tokens(tmp_path / "tok", np.arange(600) % 300, np.arange(100))
    with pytest.raises(DataError, match="contains token id 299"):
        build_source(DataConfig(name="tokens", path=str(folder), vocab_size=256), seq_len=8, seed=0, tokens=64,
                     eval_tokens=8)


def test_a_prepared_folders_meta_json_must_agree_with_the_config_and_the_files(tmp_path):
    # action=prepare writes meta.json (orchestrator/prepare/run.py); both the size-only pre-flight check and the
    # trial's source hold the config and the files to it.
    import json

    from trainers.data import check_data

    folder = _write_tokens(tmp_path / "tok", np.arange(600) % 300, np.arange(100))
    meta = {"dtype": "uint16", "vocab_size": 300, "train_tokens": 600, "val_tokens": 100}
    (folder / "meta.json").write_text(json.dumps(meta))
    cfg = dict(name="tokens", path=str(folder))
    for check in (lambda c: check_data(c, seq_len=8, tokens=64),
                  lambda c: build_source(c, seq_len=8, seed=0, tokens=64, eval_tokens=8)):
        check(DataConfig(**cfg, vocab_size=300))
        check(DataConfig(**cfg, vocab_size=320))  # padding up to the next multiple of 64 is accepted
        with pytest.raises(DataError, match="212 extra embedding rows are never trained"):
            check(DataConfig(**cfg, vocab_size=512))  # more would count untrained rows in every trial's N and C
        with pytest.raises(DataError, match="set data.vocab_size=300"):
            check(DataConfig(**cfg, vocab_size=256))
        with pytest.raises(DataError, match="its tokens are uint16; set data.dtype=uint16"):
            check(DataConfig(**cfg, vocab_size=300, dtype="uint32"))
    (folder / "meta.json").write_text(json.dumps({**meta, "train_tokens": 601}))
    with pytest.raises(DataError, match="train.bin holds 600 tokens but meta.json says 601"):
        check_data(DataConfig(**cfg, vocab_size=300), seq_len=8, tokens=64)


def test_bytes_need_vocab_256_and_a_path():
    with pytest.raises(ValueError, match="must be 256"):
        DataConfig(name="bytes", path="x", vocab_size=100)
    with pytest.raises(ValueError, match="data.path is required"):
        DataConfig(name="tokens")


@pytest.mark.parametrize("kind", ["bytes", "tokens"])
def test_the_size_only_check_agrees_with_building_the_source(tmp_path, kind):
    # The pre-flight's check_data reads file sizes only; it must reject exactly what build_source rejects,
    # with the same sentence, and accept exactly what it accepts.
    from trainers.data import check_data

    seq_len, cases = 8, 0
    for n in (0, 5, 9, 17, 18, 40, 100, 400):
        for tokens in (8, 64, 256):
            for allow_repeat in (False, True):
                folder = tmp_path / f"{kind}-{n}-{tokens}-{allow_repeat}"
                folder.mkdir()
                if kind == "bytes":
                    (folder / "a.txt").write_bytes(bytes(i % 256 for i in range(n)))
                    cfg = DataConfig(name="bytes", path=str(folder / "a.txt"), allow_repeat=allow_repeat,
                                     val_fraction=0.1)
                else:
                    _write_tokens(folder, np.arange(n) % 50, np.arange(max(n // 4, 1)) % 50)
                    cfg = DataConfig(name="tokens", path=str(folder), vocab_size=64, allow_repeat=allow_repeat)
                try:
                    build_source(cfg, seq_len=seq_len, seed=0, tokens=tokens, eval_tokens=16)
                    built = None
                except DataError as err:
                    built = str(err)
                try:
                    check_data(cfg, seq_len=seq_len, tokens=tokens)
                    checked = None
                except DataError as err:
                    checked = str(err)
                assert checked == built, (n, tokens, allow_repeat)
                cases += built is not None
    assert 0 < cases < 48  # both outcomes occur
