"""Hostile input to ctxpaper.fsio: destinations, permissions, non-regular files, planted JSON."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
from pathlib import Path

import pytest

from _users import run_unprivileged, shared_dir
from ctxpaper import fsio

AUDIO = (".mp3", ".wav", ".flac")


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``."""
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: it hangs")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# ----------------------------------------------------------------------------
# permissions follow the umask
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_writes_and_temp_dirs_follow_the_umask(tmp_path, mask):
    with umask(mask):
        assert fsio.current_umask() == mask
        with fsio.atomic_open(tmp_path / "a.csv") as fh:
            fh.write("x\n")
        fsio.write_json(tmp_path / "b.json", {"k": 1})
        with fsio.atomic_path(tmp_path / "c.bin") as tmp:
            tmp.write_bytes(b"1")
        d = fsio.make_temp_dir(tmp_path, "entry")
    for name in ("a.csv", "b.json", "c.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name
    assert stat.S_IMODE(d.stat().st_mode) == 0o777 & ~mask


# ----------------------------------------------------------------------------
# output destinations
# ----------------------------------------------------------------------------

@pytest.fixture()
def place(tmp_path) -> Path:
    (tmp_path / "a.mp3").write_bytes(b"ID3 a recording")
    (tmp_path / "list.txt").write_text("input list")
    (tmp_path / "sub").mkdir()
    return tmp_path


@pytest.mark.parametrize("dest, inputs, message", [
    ("a.mp3", ["b.mp3"], "refusing to write over a file named as audio"),  # `--csv *.mp3`
    ("new.WAV", [], "named as audio"),
    ("sub", [], "is a directory"),
    ("sub/", [], "is a directory"),
    ("list.txt", ["list.txt"], "is one of the inputs"),
    ("missing/out.csv", [], "directory .*missing does not exist"),
    ("", [], "empty path"),
])
def test_check_output_refuses_and_touches_nothing(place, dest, inputs, message):
    before = {p.name: p.read_bytes() for p in place.iterdir() if p.is_file()}
    with pytest.raises(fsio.DestinationError, match=message):
        fsio.check_output(str(place / dest) if dest else "", [place / i for i in inputs],
                          refuse_suffixes=AUDIO, what="--csv")
    assert {p.name: p.read_bytes() for p in place.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in place.iterdir()) == ["a.mp3", "list.txt", "sub"]


def test_check_output_sees_through_links_and_refuses_special_files(place):
    os.link(place / "list.txt", place / "hard.csv")
    with pytest.raises(fsio.DestinationError, match="one of the inputs"):
        fsio.check_output(place / "hard.csv", [place / "list.txt"])
    (place / "to-audio.csv").symlink_to(place / "a.mp3")
    with pytest.raises(fsio.DestinationError, match="links to .*a.mp3, named as audio"):
        fsio.check_output(place / "to-audio.csv", [], refuse_suffixes=AUDIO)
    os.mkfifo(place / "pipe.csv")
    with pytest.raises(fsio.DestinationError, match="is a FIFO, not a regular file"):
        fsio.check_output(place / "pipe.csv")
    # a link to a CSV elsewhere: the file it points at is what gets written
    (place / "sub" / "real.csv").write_text("old")
    (place / "link.csv").symlink_to(place / "sub" / "real.csv")
    assert fsio.check_output(place / "link.csv") == place / "sub" / "real.csv"
    assert fsio.check_output(place / "fresh.csv") == place / "fresh.csv"
    assert not (place / "fresh.csv").exists()  # the writability probe leaves nothing
    assert not [p for p in place.iterdir() if p.name.startswith(".")]


def test_check_output_refuses_unwritable_places():
    """As a user bound by permissions: a read-only folder and a read-only file."""
    with shared_dir() as d:
        (d / "locked").mkdir(mode=0o755)           # owned by us: others cannot create files
        (d / "open").mkdir()
        (d / "open").chmod(0o777)
        (d / "open" / "ro.csv").write_text("keep")
        (d / "open" / "ro.csv").chmod(0o444)
        code = """if True:
            from ctxpaper import fsio
            for dest in ("locked/out.csv", "open/ro.csv", "open/ok.csv"):
                try:
                    print(dest, "->", fsio.check_output(dest, what="--csv").name)
                except fsio.DestinationError as e:
                    print(dest, "->", e)
            """
        res = run_unprivileged(code, d)
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert lines[0] == "locked/out.csv -> --csv locked/out.csv: cannot create a file in " \
                           f"{d / 'locked'} (Permission denied)"
        assert lines[1] == "open/ro.csv -> --csv open/ro.csv exists and is read-only"
        assert lines[2] == "open/ok.csv -> ok.csv"
        assert (d / "open" / "ro.csv").read_text() == "keep"


def test_display_path_shows_non_utf8_names_as_escapes(tmp_path):
    name = os.fsdecode(b"caf\xe9.wav")
    assert fsio.display_path(tmp_path / name) == f"{tmp_path}/caf\\xe9.wav"
    assert fsio.display_path("plain é.wav") == "plain é.wav"


# ----------------------------------------------------------------------------
# reading: only regular files, and JSON that cannot hurt
# ----------------------------------------------------------------------------

def test_sha256_refuses_devices_fifos_and_folders_without_hanging(tmp_path):
    (tmp_path / "weights.h5").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo.h5")
    with deadline(10):
        with pytest.raises(fsio.BadFileError, match="weights.h5 is a character device, not a regular"):
            fsio.sha256_file(tmp_path / "weights.h5")
        with pytest.raises(fsio.BadFileError, match="fifo.h5 is a FIFO"):
            fsio.sha256_file(tmp_path / "fifo.h5")
        with pytest.raises(fsio.BadFileError, match="is a directory"):
            fsio.sha256_file(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsio.sha256_file(tmp_path / "absent")
    (tmp_path / "x").write_bytes(b"abc")
    assert fsio.sha256_file(tmp_path / "x") == \
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 "abc"


def test_read_json_refuses_deep_nesting_before_parsing(tmp_path):
    bomb = tmp_path / "bomb.json"
    bomb.write_text("[" * 200_000 + "]" * 200_000)  # json.loads: RecursionError
    with pytest.raises(fsio.BadFileError, match=r"entry .*bomb.json nests arrays/objects 200000 deep"):
        fsio.read_json(bomb, "entry")
    # brackets inside strings are text, not nesting
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"a": "[[[[{{{{" * 100, "b": [[1, 2], {"c": "]\\\"]"}]}))
    assert fsio.read_json(ok)["b"][1] == {"c": ']\\"]'}
    with pytest.raises(fsio.BadFileError, match="nests arrays/objects 3 deep, more than the 2"):
        fsio.read_json(ok, max_depth=2)
    plain = tmp_path / "plain.json"  # no escapes: the fast path that counts quotes
    plain.write_text(json.dumps({"a": "[[[[{{{{" * 300, "b": ["]]]"]}))
    assert fsio.read_json(plain, max_depth=2)["b"] == ["]]]"]
    with pytest.raises(fsio.BadFileError, match="nests arrays/objects 2 deep, more than the 1"):
        fsio.read_json(plain, max_depth=1)


@pytest.mark.parametrize("content, message", [
    (b'{"a": 1', r"bad.json is not valid JSON: Expecting ',' delimiter \(line 1, column 8\)"),
    (b'{"a": "\xff"}', r"bad.json is not UTF-8 text \(byte 7\)"),
    (b"[" + b"0," * 600 + b"0]", r"bad.json is 1,203 bytes, more than the 1,000 allowed"),
])
def test_read_json_names_the_file_in_every_error(tmp_path, content, message):
    (tmp_path / "bad.json").write_bytes(content)
    with pytest.raises(fsio.BadFileError, match=message):
        fsio.read_json(tmp_path / "bad.json", max_bytes=1000)


def test_read_json_refuses_a_fifo_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "meta.json")
    with deadline(10), pytest.raises(fsio.BadFileError, match="metadata .*meta.json is a FIFO"):
        fsio.read_json(tmp_path / "meta.json", "metadata")
