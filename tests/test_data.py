"""The data layer on the real released files and on malformed copies of them."""

from __future__ import annotations

import http.server
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctxpaper import data
from ctxpaper.contexts import CONTEXTS

RELEASED = data.VENDORED_DIR


@pytest.fixture(scope="module")
def labels() -> pd.DataFrame:
    return data.load_labels()


# --- the real files --------------------------------------------------------

def test_labels_shape_types_and_paper_facts(labels):
    assert labels.shape == (49929, 15)
    assert list(labels.columns) == list(CONTEXTS)
    assert all(dt == bool for dt in labels.dtypes)
    assert labels.index.name == "song_id" and labels.index.is_unique
    # paper §3.2: ~24k positives per label, ~7 labels per track
    assert 23_000 < labels.sum().mean() < 25_000
    assert 7.0 < labels.sum(axis=1).mean() < 7.5
    # balancing caps the rarest contexts at exactly 20,000
    assert labels.sum().min() == 20_000


def test_counts_aligned_by_song_id_not_position(labels):
    counts = data.load_counts()
    assert counts.index.equals(labels.index)
    raw = pd.read_csv(RELEASED / data.COUNTS_FILE, index_col="song_id")
    # the two released files are in different row orders: a positional join
    # would pair counts with the wrong tracks
    assert not raw.index.equals(labels.index)
    probe = raw.index[[0, 1000, 40000]]
    assert (counts.loc[probe].to_numpy() == raw.loc[probe, list(CONTEXTS)].to_numpy()).all()
    agree = (counts.to_numpy() > 0) == labels.to_numpy()
    assert agree.mean() > 0.9999


def test_label_count_disagreements_are_reported(labels):
    dq = data.label_count_disagreements(labels, data.load_counts())
    raw_counts = pd.read_csv(RELEASED / data.COUNTS_FILE, index_col="song_id").loc[labels.index]
    expected = int(((raw_counts.to_numpy() > 0) != labels.to_numpy()).sum())
    assert len(dq) == expected == 36
    row = dq.iloc[0]
    assert bool(labels.loc[row.song_id, row.context]) == bool(row.label)
    assert (dq["kind"] == "label without count").sum() == (dq["label"] & (dq["count"] == 0)).sum()


def test_official_split(labels):
    split = data.load_split()
    assert len(split) == 48582
    assert split["subset"].value_counts().to_dict() == {"train": 32771, "test": 12169, "validation": 3642}
    assert ((split["fold"] == 0) == (split["subset"] == "test")).all()
    assert split.index.isin(labels.index).all()
    train_artists = set(split.loc[split.subset == "train", "artist_id"])
    test_artists = set(split.loc[split.subset == "test", "artist_id"])
    assert not train_artists & test_artists


def test_locate_verifies_hash_and_data_hashes_table():
    table = data.data_hashes()
    assert set(table["file"]) == set(data.REGISTRY)
    for _, row in table.iterrows():
        assert data.sha256_file(row["location"]) == row["sha256"]


# --- locating, verifying, downloading ---------------------------------------

def test_env_dir_takes_precedence_and_tampered_file_fails(tmp_path, monkeypatch):
    shutil.copy(RELEASED / data.LABELS_FILE, tmp_path / data.LABELS_FILE)
    monkeypatch.setenv("CTXPAPER_DATA_DIR", str(tmp_path))
    assert data.locate(data.LABELS_FILE) == tmp_path / data.LABELS_FILE
    with open(tmp_path / data.LABELS_FILE, "a") as fh:
        fh.write("1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1\n")
    with pytest.raises(data.DataError, match=r"sha256 mismatch.*expected f8025095"):
        data.locate(data.LABELS_FILE)


def test_unknown_file_name():
    with pytest.raises(data.DataError, match="unknown released file"):
        data.locate("nope.csv")


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # noqa: N802 (http.server API)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def local_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture()
def nowhere(tmp_path, monkeypatch):
    """No local copy anywhere: forces the download path into tmp dirs."""
    monkeypatch.delenv("CTXPAPER_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "VENDORED_DIR", tmp_path / "no-vendored")
    monkeypatch.setenv("CTXPAPER_DOWNLOAD_DIR", str(tmp_path / "downloads"))
    return tmp_path / "downloads"


def test_download_good_file_is_cached(local_server, nowhere, monkeypatch):
    _Handler.body = (RELEASED / data.SUBSET_FILES["validation"]).read_bytes()
    url = f"http://127.0.0.1:{local_server.server_address[1]}/{{name}}"
    monkeypatch.setattr(data, "UPSTREAM_URL", url)
    path = data.locate("validation_ground_truth.csv")
    assert path.parent == nowhere and path.read_bytes() == _Handler.body


def test_bad_download_never_stays_in_cache(local_server, nowhere, monkeypatch):
    _Handler.body = b"song_id,label\n1,car\n"
    url = f"http://127.0.0.1:{local_server.server_address[1]}/{{name}}"
    monkeypatch.setattr(data, "UPSTREAM_URL", url)
    with pytest.raises(data.DataError, match="validation_ground_truth.csv"):
        data.locate("validation_ground_truth.csv")
    leftovers = list(nowhere.glob("*")) if nowhere.exists() else []
    assert leftovers == []


def test_no_copy_and_no_network_names_the_folders(nowhere, monkeypatch):
    monkeypatch.setattr(data, "UPSTREAM_URL", "http://127.0.0.1:9/{name}")  # discard port: refused
    with pytest.raises(data.DataError, match="CTXPAPER_DATA_DIR"):
        data.locate(data.LABELS_FILE)


# --- malformed files ---------------------------------------------------------

HEADER = "song_id," + ",".join(CONTEXTS)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _row(song: int, values: list[int]) -> str:
    return f"{song}," + ",".join(map(str, values))


GOOD = [_row(10, [1] + [0] * 14), _row(11, [0, 1] + [0] * 13), _row(12, [1] * 15)]


def test_read_labels_good_small_file(tmp_path):
    p = _write(tmp_path, "l.csv", "\n".join([HEADER, *GOOD]) + "\n")
    df = data.read_labels(p)
    assert df.shape == (3, 15) and df.loc[12].all() and df.loc[10].sum() == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("song_id," + ",".join(CONTEXTS[:-1]) + "\n" + _row(1, [0] * 14), r"missing columns \['workout'\]"),
        (HEADER + ",extra\n" + _row(1, [0] * 16), r"unexpected columns \['extra'\]"),
        ("\n".join([HEADER, GOOD[0], GOOD[0]]), r"duplicate song_id 10 at rows \[2, 3\]"),
        ("\n".join([HEADER, GOOD[0], _row(13, [2] + [0] * 14)]), r"row 3, column 'car': label 2 is not 0 or 1"),
        ("\n".join([HEADER, _row(13, [0] * 14 + ["x"])]), r"row 2 \(column 'workout'\): 'x' is not an integer"),
        ("\n".join([HEADER, "abc," + ",".join(["0"] * 15)]), r"row 2 \(song_id\): 'abc'"),
        ("", "empty"),
    ],
)
def test_read_labels_errors_name_file_row_and_problem(tmp_path, text, message):
    p = _write(tmp_path, "labels.csv", text)
    with pytest.raises(data.DataError, match=message) as exc:
        data.read_labels(p)
    assert "labels.csv" in str(exc.value)


def test_read_counts_negative_and_misaligned(tmp_path):
    labels = data.read_labels(_write(tmp_path, "l.csv", "\n".join([HEADER, *GOOD])))
    neg = _write(tmp_path, "c.csv", "\n".join([HEADER, _row(10, [-1] + [0] * 14)]))
    with pytest.raises(data.DataError, match=r"row 2, column 'car': count -1 is negative"):
        data.read_counts(neg)
    other = _write(tmp_path, "c2.csv", "\n".join([HEADER, _row(10, [3] + [0] * 14), _row(99, [0] * 15)]))
    with pytest.raises(data.DataError, match="song ids differ from the label file"):
        data.read_counts(other, labels=labels)
    # right ids, other order: aligned to the labels
    shuffled = _write(tmp_path, "c3.csv", "\n".join(
        [HEADER, _row(12, [4] * 15), _row(10, [3] + [0] * 14), _row(11, [0, 5] + [0] * 13)]))
    counts = data.read_counts(shuffled, labels=labels)
    assert list(counts.index) == [10, 11, 12] and counts.loc[11, "chill"] == 5


def _split_files(tmp_path: Path, fold_rows: list[str], subsets: dict[str, list[int]]):
    folds = _write(tmp_path, "folds.csv", "song_id,label,artist_id,fold\n" + "\n".join(fold_rows) + "\n")
    paths = {}
    for name, ids in subsets.items():
        paths[name] = _write(tmp_path, f"{name}.csv", "song_id,label\n" + "".join(f"{i},car\n" for i in ids))
    return folds, paths


def test_read_split_small_and_errors(tmp_path):
    labels = data.read_labels(_write(tmp_path, "l.csv", "\n".join([HEADER, *GOOD])))
    folds, paths = _split_files(tmp_path, ["10,car,1,0", "11,chill,2,1", "12,car\tchill,3,2"],
                                {"train": [11], "validation": [12], "test": [10]})
    split = data.read_split(folds, paths, labels)
    assert split.loc[10, "subset"] == "test" and split.loc[12, "artist_id"] == 3

    folds, paths = _split_files(tmp_path, ["10,car,1,0", "77,chill,2,1"], {"train": [77], "validation": [], "test": [10]})
    with pytest.raises(data.DataError, match="not in the label file"):
        data.read_split(folds, paths, labels)

    folds, paths = _split_files(tmp_path, ["10,car,1,7"], {"train": [], "validation": [], "test": [10]})
    with pytest.raises(data.DataError, match="fold 7 is not in 0–3"):
        data.read_split(folds, paths, labels)

    folds, paths = _split_files(tmp_path, ["10,car,1,0", "11,chill,2,1"], {"train": [10, 11], "validation": [], "test": []})
    with pytest.raises(data.DataError, match="test subset is not fold 0"):
        data.read_split(folds, paths, labels)

    folds, paths = _split_files(tmp_path, ["10,karaoke,1,0"], {"train": [], "validation": [], "test": [10]})
    with pytest.raises(data.DataError, match=r"row 2: unknown context\(s\) \['karaoke'\]"):
        data.read_split(folds, paths, labels)

    folds, paths = _split_files(tmp_path, ["10,car,1,0", "11,car,1,1"], {"train": [], "validation": [], "test": [10]})
    with pytest.raises(data.DataError, match="1 song ids are in no subset file"):
        data.read_split(folds, paths, labels)


def test_labels_are_a_copy(labels):
    mutated = data.load_labels()
    mutated.iloc[0, 0] = not mutated.iloc[0, 0]
    assert data.load_labels().iloc[0, 0] == labels.iloc[0, 0]
    assert np.array_equal(data.load_labels().to_numpy(), labels.to_numpy())


# --- hostile input: the environment and the file system -------------------------

def _as_unprivileged(fn):
    """Run ``fn()`` where permissions apply, and return the message of what it raised.

    Root reads any file whatever its mode, so as root ``fn`` runs in a forked
    child that has dropped to the ``nobody`` user (the modules are already
    imported, so the child needs no file but the ones under test).
    """
    def message():
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 (the test inspects any outcome)
            return f"{type(exc).__name__}: {exc}"
        return "no error"

    if os.geteuid() != 0:
        return message()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, report, exit without pytest's cleanup
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, message().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        out = fh.read().decode()
    os.waitpid(pid, 0)
    return out


@pytest.fixture()
def unreadable_copy():
    """A data folder (searchable by anyone) holding the label file with mode 000."""
    d = Path(tempfile.mkdtemp(prefix="ctxpaper-unreadable-"))
    d.chmod(0o755)
    shutil.copy(RELEASED / data.LABELS_FILE, d / data.LABELS_FILE)
    (d / data.LABELS_FILE).chmod(0)
    yield d
    shutil.rmtree(d)


def test_unreadable_data_file_is_a_data_error_saying_what_to_do(unreadable_copy, monkeypatch):
    path = unreadable_copy / data.LABELS_FILE
    data._verified.cache_clear()
    monkeypatch.setenv("CTXPAPER_DATA_DIR", str(unreadable_copy))
    for call in (lambda: data.locate(data.LABELS_FILE), lambda: data.read_labels(path)):
        msg = _as_unprivileged(call)
        assert msg.startswith("DataError: "), msg
        assert str(path) in msg and "Permission denied" in msg and "chmod" in msg


def test_data_dir_that_is_missing_or_a_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CTXPAPER_DATA_DIR", str(tmp_path / "typo"))
    with pytest.raises(data.DataError, match=r"CTXPAPER_DATA_DIR=.*typo': no such folder"):
        data.locate(data.LABELS_FILE)
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("CTXPAPER_DATA_DIR", str(tmp_path / "file"))
    with pytest.raises(data.DataError, match=r"CTXPAPER_DATA_DIR=.*file' is a file, not a folder"):
        data.locate(data.LABELS_FILE)


def test_data_file_that_is_not_a_regular_file_is_refused(tmp_path, monkeypatch):
    # Hashing a device would never end: /dev/zero under the file's name is refused.
    (tmp_path / data.LABELS_FILE).symlink_to("/dev/zero")
    monkeypatch.setenv("CTXPAPER_DATA_DIR", str(tmp_path))
    with pytest.raises(data.DataError, match=r"hot_vector\.csv: not a regular file"):
        data.locate(data.LABELS_FILE)
