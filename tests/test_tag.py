"""Tests of ctxpaper.tag: export / load of a tagger, tagging real files, the CLI."""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from _users import run_unprivileged, shared_dir
from ctxpaper import model as cmodel  # sets the Keras backend first
from ctxpaper import tag
from ctxpaper.audio import logmel_valid
from ctxpaper.contexts import CONTEXTS
from test_fsio import deadline

FRAMES = 16
# The 12 s tone holds audio in its first 259 frames (frame k is centred on
# sample 1024 k): its crop is the middle 16 of those, by hand: (259 - 16) // 2.
TONE_VALID = 259
OFFSET = 121

REAL = {
    "asc-music": "/usr/share/games/asc/music/*.mp3",
    "sonic-pi": "/usr/share/sonic-pi/samples/loop_tabla.flac",  # 10.7 s, 44.1 kHz stereo FLAC
    "lmms": "/usr/share/lmms/samples/instruments/church_organ01.ogg",  # 11.8 s OGG Vorbis
}


def real_file(package: str) -> Path:
    found = sorted(glob.glob(REAL[package]))
    if not found:
        pytest.skip(f"{REAL[package]} absent: install the Debian package ({package}) to tag a real recording")
    return Path(found[0])


@pytest.fixture(scope="module")
def tiny():
    return cmodel.build_model(FRAMES, "paper", seed=3)


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("export") / "tiny-tagger"
    return tag.export_model(tiny, path, profile="smoke", seed=4, trained_on="untrained test weights")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    """Files the tests write: a 12 s stereo WAV, a 2 s WAV, a text file, a 0-byte file."""
    d = tmp_path_factory.mktemp("files")
    rng = np.random.default_rng(0)
    t = np.arange(12 * 44100) / 44100
    y = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.1 * rng.standard_normal(t.size)], axis=1)
    sf.write(d / "tone.wav", y.astype(np.float32), 44100)
    sf.write(d / "short.wav", y[:2 * 44100].astype(np.float32), 44100)
    (d / "notes.txt").write_text("not audio at all\n" * 50)
    (d / "empty.wav").write_bytes(b"")
    return {p.stem: p for p in d.iterdir()}


def middle(path: Path, frames: int) -> np.ndarray:
    """The middle ``frames`` of the frames of logmel(path) that hold audio, by hand."""
    patch, valid = logmel_valid(path)
    assert valid >= frames
    off = (valid - frames) // 2
    return patch[off:off + frames]


def direct(keras_model, path: Path) -> np.ndarray:
    """The reference: model.predict on the middle of the audio in logmel(path)."""
    return keras_model.predict(middle(path, FRAMES)[None, :, :, None], verbose=0)[0]


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {r["file"]: r for r in rows}


# ----------------------------------------------------------------------------
# the exported format
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("variant", cmodel.ARCHITECTURES)
def test_export_round_trip_reproduces_outputs(variant, tmp_path):
    m = cmodel.build_model(FRAMES, variant, seed=1)
    t = tag.load_tagger(tag.export_model(m, tmp_path / "t"))
    assert (t.frames, t.model_variant) == (FRAMES, variant)
    x = np.random.default_rng(5).normal(size=(3, FRAMES, 96, 1)).astype(np.float32)
    np.testing.assert_allclose(t.model.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-6, atol=1e-7)


def test_export_is_json_plus_hdf5_no_pickle(exported):
    assert sorted(p.name for p in exported.iterdir()) == sorted([tag.META_FILE, tag.WEIGHTS_FILE])
    meta = json.loads((exported / tag.META_FILE).read_text())
    assert meta["frames"] == FRAMES and meta["contexts"] == list(CONTEXTS)
    assert meta["provenance"] == {"profile": "smoke", "seed": 4, "trained_on": "untrained test weights"}
    assert (exported / tag.WEIGHTS_FILE).read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    assert not list(exported.parent.glob(".*"))  # no temporary directory left behind


def test_export_refuses_to_overwrite_unless_asked(tiny, exported):
    before = (exported / tag.META_FILE).read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        tag.export_model(tiny, exported)
    other = cmodel.build_model(FRAMES, "paper", seed=9)
    tag.export_model(other, exported.parent / "copy")
    tag.export_model(other, exported.parent / "copy", overwrite=True, trained_on="x")
    meta = json.loads((exported.parent / "copy" / tag.META_FILE).read_text())
    assert meta["provenance"]["trained_on"] == "x"
    assert (exported / tag.META_FILE).read_bytes() == before


def test_export_rejects_a_foreign_model(tmp_path):
    import keras

    inp = keras.Input((FRAMES, 96, 1))
    foreign = keras.Model(inp, keras.layers.Dense(15)(keras.layers.Flatten()(inp)), name="mine")
    with pytest.raises(ValueError, match="build_model"):
        tag.export_model(foreign, tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_load_rejects_corrupt_or_incompatible_exports(exported, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    w = bad / tag.WEIGHTS_FILE
    data = bytearray(w.read_bytes())
    data[-100] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(tag.TaggerError, match="sha256"):
        tag.load_tagger(bad)

    shutil.rmtree(bad)
    shutil.copytree(exported, bad)
    meta = json.loads((bad / tag.META_FILE).read_text())
    meta["contexts"] = list(reversed(CONTEXTS))
    (bad / tag.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(tag.TaggerError, match="contexts"):
        tag.load_tagger(bad)

    meta["contexts"], meta["feature_params"]["hop"] = list(CONTEXTS), 512
    (bad / tag.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(tag.TaggerError, match="log-mel parameters"):
        tag.load_tagger(bad)

    (bad / tag.META_FILE).write_text("{ not json")
    with pytest.raises(tag.TaggerError, match="not valid JSON"):
        tag.load_tagger(bad)
    with pytest.raises(tag.ModelNotFoundError, match="no model at"):
        tag.load_tagger(tmp_path / "nowhere")
    with pytest.raises(tag.ModelNotFoundError, match=tag.META_FILE):
        tag.load_tagger(tmp_path)


# ----------------------------------------------------------------------------
# tagging equals the training pipeline
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("package", list(REAL))
def test_real_recording_equals_direct_predict_on_centred_crop(package, tiny, exported):
    path = real_file(package)
    got = tag.load_tagger(exported).predict_file(path)
    assert got.shape == (len(CONTEXTS),)
    np.testing.assert_allclose(got, direct(tiny, path), rtol=1e-5, atol=1e-6)


def test_only_the_centred_crop_matters(exported, written):
    t = tag.load_tagger(exported)
    patch, valid = logmel_valid(written["tone"])
    assert valid == TONE_VALID
    outside = patch.copy()
    outside[:OFFSET] = 0.0
    outside[OFFSET + FRAMES:] = 0.0
    np.testing.assert_array_equal(t.predict_patch(outside, valid), t.predict_patch(patch, valid))
    inside = patch.copy()
    inside[OFFSET:OFFSET + FRAMES] += 1.0
    assert not np.allclose(t.predict_patch(inside, valid), t.predict_patch(patch, valid))
    with pytest.raises(ValueError, match="646"):
        t.predict_patch(patch[:600])


def test_find_audio_expands_directories(tmp_path, written):
    (tmp_path / "a" / "b").mkdir(parents=True)
    sf.write(tmp_path / "a" / "b" / "x.FLAC", np.zeros(100, np.float32), 8000)
    sf.write(tmp_path / "a" / "y.wav", np.zeros(100, np.float32), 8000)
    (tmp_path / "a" / "readme.txt").write_text("x")
    (tmp_path / "a" / ".hidden.wav").write_bytes(b"")
    (tmp_path / "none").mkdir()
    files, errors = tag.find_audio([tmp_path / "a", written["notes"], tmp_path / "a" / "y.wav",
                                    tmp_path / "none", tmp_path / "gone.mp3"])
    assert files == [tmp_path / "a" / "b" / "x.FLAC", tmp_path / "a" / "y.wav", written["notes"]]
    assert [(e.path.name, e.reason) for e in errors] == [("none", "no_audio"), ("gone.mp3", "missing")]


# ----------------------------------------------------------------------------
# the command line
# ----------------------------------------------------------------------------

def test_cli_tags_good_files_reports_bad_ones_and_writes_csv(tiny, exported, written, tmp_path, capsys):
    real = real_file("asc-music")
    out = tmp_path / "out" / "tags.csv"
    out.parent.mkdir()
    argv = [str(real), str(written["tone"]), str(written["notes"]), str(written["empty"]),
            str(written["short"]), str(tmp_path / "missing.ogg"),
            "--model", str(exported), "--top", "3", "--csv", str(out), "--no-progress"]
    assert tag.main(argv) == 1
    cap = capsys.readouterr()
    # provenance first, as recorded at export
    assert cap.out.index("untrained test weights") < cap.out.index(str(real))
    assert "profile smoke" in cap.out and "seed 4" in cap.out and "16 frames" in cap.out
    # each good file: its 3 most probable contexts, sorted, with their probabilities
    for path in (real, written["tone"]):
        ref = direct(tiny, path)
        block = cap.out.split(str(path) + "\n")[1].splitlines()[:3]
        names = [line.split()[0] for line in block]
        assert names == [CONTEXTS[i] for i in np.argsort(-ref)[:3]]
        assert [float(line.split()[1]) for line in block] == pytest.approx(np.sort(ref)[::-1][:3], abs=6e-4)
    for path, reason in ((written["notes"], "unreadable"), (written["empty"], "empty"),
                         (written["short"], "too_short"), (tmp_path / "missing.ogg", "missing")):
        assert str(path) in cap.err and str(path) not in cap.out
    assert "2 file(s) tagged, 4 failed" in cap.err

    rows = read_csv(out)
    assert list(rows) == [str(p) for p in (real, written["tone"], written["notes"], written["empty"],
                                           written["short"])] + [str(tmp_path / "missing.ogg")]
    for path in (real, written["tone"]):
        r = rows[str(path)]
        assert r["error"] == ""
        np.testing.assert_allclose([float(r[c]) for c in CONTEXTS], direct(tiny, path), atol=1e-6)
    for path, reason in ((written["notes"], "unreadable"), (written["empty"], "empty"),
                         (written["short"], "too_short"), (tmp_path / "missing.ogg", "missing")):
        assert rows[str(path)]["error"].startswith(f"{reason}: ")
        assert all(rows[str(path)][c] == "" for c in CONTEXTS)
    assert not [p for p in out.parent.iterdir() if p != out]  # atomic: no temporary file left


def test_cli_all_good_exits_zero(exported, written, capsys):
    assert tag.main([str(written["tone"]), "--model", str(exported), "--top", "20", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("  ") for line in out.split(str(written["tone"]))[1].splitlines()) == 15


def test_cli_directory_without_audio(exported, tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    assert tag.main([str(tmp_path / "docs"), "--model", str(exported), "--no-progress"]) == 1
    assert f"directory {tmp_path / 'docs'} holds no audio" in capsys.readouterr().err


def test_cli_missing_model_exits_2(written, tmp_path, capsys):
    assert tag.main([str(written["tone"]), "--model", str(tmp_path / "nope")]) == 2
    assert f"no model at {tmp_path / 'nope'}" in capsys.readouterr().err


def test_cli_never_trains_when_the_cached_baseline_is_absent(written, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CTXPAPER_CACHE_DIR", str(tmp_path / "cache"))
    assert tag.main([str(written["tone"]), "--profile", "smoke", "--seed", "2"]) == 2
    err = capsys.readouterr().err
    assert "no trained baseline for profile 'smoke', seed 2" in err
    assert "python -m ctxpaper.book --profile smoke --seed 2 05" in err
    assert "python -m ctxpaper.reproduce --profile smoke --seed 2" in err  # the released-data baseline
    assert not (tmp_path / "cache").exists()  # nothing built, nothing created


def test_cached_baseline_dir_is_where_train_variant_trains(tmp_path, monkeypatch):
    """The folder the tagger looks in is the one training writes (world and features built, no model)."""
    from ctxpaper import experiment, runs

    monkeypatch.setenv("CTXPAPER_CACHE_DIR", str(tmp_path / "cache"))

    class Trained(Exception):
        """Stands in for training: carries the folder train_variant chose."""

    def fake_fit_and_score(store, selection, loss, config, directory, progress=True):
        raise Trained(directory)

    monkeypatch.setattr(runs, "_fit_and_score", fake_fit_and_score)
    chosen = set()
    for profile, seed in (("smoke", 0), ("smoke", 2)):
        with pytest.raises(Trained) as got:
            experiment.train_variant(profile, seed, tag.BASELINE_LOSS, progress=False)
        assert tag.cached_baseline_dir(profile, seed) == (got.value.args[0], "simulated")
        chosen.add(got.value.args[0])
    assert len(chosen) == 2


def _train_baseline(d: Path):
    """A finished smoke run in the cache entry of chapter 05's baseline ``d`` (a few seconds)."""
    from ctxpaper import train
    from ctxpaper.runs import Run

    config = Run.of("smoke", 0).train_config("none", 0)
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(40, config.frames, 96)).astype(np.float32)
    y = cmodel.pack_targets(rng.random((40, 15)) < 0.3)
    rows = np.arange(40)
    tb = train.FeatureBatches(feats, rows[:32], y[:32], config.batch_size, config.frames, shuffle_seed=0)
    vb = train.FeatureBatches(feats, rows[32:], y[32:], config.batch_size, config.frames)
    return train.train(tb, vb, d / "run", config, progress=False), config


def test_cli_uses_the_cached_baseline(written, tmp_path, monkeypatch, capsys):
    """A finished run in the cache entry of (smoke, 0) is found and used, unchanged."""
    monkeypatch.setenv("CTXPAPER_CACHE_DIR", str(tmp_path / "cache"))
    d, _ = tag.cached_baseline_dir("smoke", 0)
    result, config = _train_baseline(d)
    assert tag.main([str(written["tone"]), "--profile", "smoke", "--no-progress", "--top", "15"]) == 2
    assert "no trained baseline" in capsys.readouterr().err  # unfinished entry: no scores yet
    (d / "scores.parquet").write_bytes(b"")
    assert tag.main([str(written["tone"]), "--profile", "smoke", "--no-progress", "--top", "15"]) == 0
    out = capsys.readouterr().out
    assert "simulated previews" in out and "profile smoke, seed 0, loss variant 'none'" in out
    ref = result.model.predict(middle(written["tone"], config.frames)[None, :, :, None], verbose=0)[0]
    lines = out.split(str(written["tone"]) + "\n")[1].splitlines()[:15]
    got = {line.split()[0]: float(line.split()[1]) for line in lines}
    assert [got[c] for c in CONTEXTS] == pytest.approx(ref, abs=6e-4)


def test_cli_prefers_the_released_baseline_and_says_so(written, tmp_path, monkeypatch, capsys):
    """A baseline that ctxpaper.reproduce trained on the released tracks wins over the simulated one."""
    from ctxpaper import reproduce
    from ctxpaper.runs import Run

    monkeypatch.setenv("CTXPAPER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CTXPAPER_DEEZER_URL", "http://127.0.0.1:9")
    argv = [str(written["tone"]), "--profile", "smoke", "--no-progress", "--top", "15"]
    simulated, _ = tag.cached_baseline_dir("smoke", 0)
    _train_baseline(simulated)
    (simulated / "scores.parquet").write_bytes(b"")
    released = tmp_path / "cache" / "train" / "released-entry"
    result, config = _train_baseline(released)
    reproduce.write_baseline_pointer(Run.of("smoke", 0, "released"), released)
    # No scores yet: the released run is unfinished, the simulated baseline is used.
    assert tag.cached_baseline_dir("smoke", 0) == (simulated, "simulated")
    (released / "scores.parquet").write_bytes(b"")
    assert tag.cached_baseline_dir("smoke", 0) == (released, "released")
    assert tag.main(argv) == 0
    out = capsys.readouterr().out
    assert "trained on the released tracks' Deezer previews" in out
    assert "rehearsal previews from http://127.0.0.1:9" in out and "simulated previews" not in out
    assert f"build cache (released run), {released}" in out
    ref = result.model.predict(middle(written["tone"], config.frames)[None, :, :, None], verbose=0)[0]
    lines = out.split(str(written["tone"]) + "\n")[1].splitlines()[:15]
    got = {line.split()[0]: float(line.split()[1]) for line in lines}
    assert [got[c] for c in CONTEXTS] == pytest.approx(ref, abs=6e-4)
    assert tag.cached_baseline("smoke", 0).provenance["data_source"] == "released"


def test_export_of_a_run_records_its_profile_and_seed(tiny, tmp_path):
    """A TrainedRun's profile and seed are recorded, and checked when given again."""
    from types import SimpleNamespace

    import pandas as pd

    from ctxpaper.fsio import write_json

    entry = tmp_path / "entry"
    write_json(entry / "params.json", {"params": {"variant": "none", "train": {"seed": 5, "frames": FRAMES}}})
    run = SimpleNamespace(model=tiny, loss="none", best_epoch=2, stop_reason="max_epochs",
                          history=pd.DataFrame({"epoch": [1, 2, 3]}), directory=entry,
                          profile="quick", seed=2)
    t = tag.load_tagger(tag.export_model(run, tmp_path / "t"))
    assert {k: t.provenance[k] for k in ("profile", "seed", "train_seed", "loss_variant", "epochs",
                                         "best_epoch")} == {
        "profile": "quick", "seed": 2, "train_seed": 5, "loss_variant": "none", "epochs": 3,
        "best_epoch": 2}
    assert "simulated previews" in t.provenance["trained_on"]
    assert tag.load_tagger(tag.export_model(run, tmp_path / "same", profile="quick", seed=2))
    with pytest.raises(ValueError, match="profile 'smoke', seed 2"):
        tag.export_model(run, tmp_path / "u", profile="smoke", seed=2)
    anonymous = SimpleNamespace(**{**vars(run), "profile": None, "seed": None})
    with pytest.raises(ValueError, match="cannot tell the profile and seed"):
        tag.export_model(anonymous, tmp_path / "v")
    assert tag.load_tagger(tag.export_model(anonymous, tmp_path / "w", profile="smoke", seed=1)) \
        .provenance["profile"] == "smoke"
    assert not (tmp_path / "u").exists() and not (tmp_path / "v").exists()


# ----------------------------------------------------------------------------
# hostile input: destinations, names, damaged models, odd folders, arguments
# ----------------------------------------------------------------------------

def _copy(src: Path, dest: Path) -> Path:
    dest.write_bytes(src.read_bytes())
    return dest


def test_cli_csv_over_a_recording_is_refused_before_any_work(exported, written, tmp_path, capsys):
    """`--csv *.mp3`: the shell gives `--csv a.mp3 b.mp3`; a.mp3 must survive, nothing is tagged."""
    a, b = _copy(written["tone"], tmp_path / "a.mp3"), _copy(written["tone"], tmp_path / "b.mp3")
    before = a.read_bytes()
    assert tag.main(["--csv", str(a), str(b), "--model", str(exported), "--no-progress"]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""  # no model loaded, nothing tagged
    assert cap.err.count("\n") == 1 and "did the shell expand a wildcard after --csv" in cap.err
    assert a.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["a.mp3", "b.mp3"]
    # a recording under another name, and an input that is not audio, are refused too
    disguised = _copy(written["tone"], tmp_path / "results.csv")
    assert tag.main([str(b), "--csv", str(disguised), "--model", str(exported)]) == 2
    assert "holds audio" in capsys.readouterr().err and disguised.read_bytes() == before
    assert tag.main([str(written["notes"]), "--csv", str(written["notes"]), "--model", str(exported)]) == 2
    assert "is one of the inputs" in capsys.readouterr().err
    assert tag.main([str(b), "--csv", str(exported / tag.META_FILE), "--model", str(exported)]) == 2
    assert "is one of the inputs" in capsys.readouterr().err


def test_cli_tags_a_file_whose_name_is_not_utf8(exported, written, tmp_path, capsys):
    odd = _copy(written["tone"], tmp_path / os.fsdecode(b"caf\xe9 \xff.wav"))
    out = tmp_path / "tags.csv"
    assert tag.main([str(odd), "--csv", str(out), "--model", str(exported), "--top", "15"]) == 0
    shown = f"{tmp_path}/caf\\xe9 \\xff.wav"
    assert shown in capsys.readouterr().out
    rows = read_csv(out)  # valid UTF-8
    assert list(rows) == [shown] and rows[shown]["error"] == ""
    ref = tag.load_tagger(exported).predict_file(written["tone"])
    np.testing.assert_allclose([float(rows[shown][c]) for c in CONTEXTS], ref, atol=1e-6)
    assert not list(Path(tempfile.gettempdir()).glob("ctxpaper-tag-*"))  # the alias folder is gone


def test_cli_csv_that_cannot_be_written_at_the_end_is_saved_elsewhere(exported, written, tmp_path,
                                                                       monkeypatch, capsys):
    """The output folder turns into a file while tagging: the results go to a named fallback."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    real_tag_files = tag.tag_files

    def sabotaged(*args, **kwargs):
        for r in real_tag_files(*args, **kwargs):
            shutil.rmtree(out_dir, ignore_errors=True)
            out_dir.write_text("now a file")
            yield r

    monkeypatch.setattr(tag, "tag_files", sabotaged)
    assert tag.main([str(written["tone"]), "--csv", str(out_dir / "t.csv"), "--model", str(exported),
                     "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"cannot write --csv {out_dir / 't.csv'}" in err
    fallback = Path(err.split("saved to ")[1].split(" instead")[0])
    try:
        assert list(read_csv(fallback)) == [str(written["tone"])]
    finally:
        fallback.unlink()


def test_cli_interrupted_writes_what_was_tagged_and_exits_130(exported, written, tmp_path, monkeypatch, capsys):
    real_tag_files = tag.tag_files

    def ctrl_c_after_first(*args, **kwargs):
        for r in real_tag_files(*args, **kwargs):
            yield r
            raise KeyboardInterrupt

    monkeypatch.setattr(tag, "tag_files", ctrl_c_after_first)
    second = _copy(written["tone"], tmp_path / "second.wav")
    out = tmp_path / "t.csv"
    assert tag.main([str(written["tone"]), str(second), "--csv", str(out), "--model", str(exported),
                     "--no-progress"]) == 130
    assert "interrupted: 1 of 2 file(s) tagged" in capsys.readouterr().err
    rows = read_csv(out)
    assert rows[str(written["tone"])]["error"] == ""
    assert rows[str(second)]["error"].startswith("interrupted: ")


@pytest.mark.parametrize("damage, message", [
    ("garbage weights", r"model.weights.h5 cannot be loaded into a 16-frame paper CNN \("),
    ("truncated weights", r"model.weights.h5 cannot be loaded into a 16-frame paper CNN \("),
    ("weights linked to /dev/zero", r"model.weights.h5 cannot be read: .* is a character device"),
    ("deeply nested tagger.json", r"tagger metadata .*tagger.json nests arrays/objects 100000 deep"),
    ("tagger.json is a FIFO", r"tagger metadata .*tagger.json is a FIFO"),
])
def test_cli_damaged_model_exits_2_naming_the_file(exported, written, tmp_path, capsys, damage, message):
    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    w, meta_file = bad / tag.WEIGHTS_FILE, bad / tag.META_FILE
    if damage.endswith("weights"):
        data = w.read_bytes()
        w.write_bytes(data[:len(data) // 2] if damage.startswith("truncated") else
                      np.random.default_rng(0).bytes(len(data)))
        meta = json.loads(meta_file.read_text())
        meta["weights_sha256"] = hashlib.sha256(w.read_bytes()).hexdigest()  # damage the sha can't see
        meta_file.write_text(json.dumps(meta))
    elif damage.startswith("weights linked"):
        w.unlink()
        w.symlink_to("/dev/zero")
    elif damage.startswith("deeply"):
        meta_file.write_text("[" * 100_000 + "]" * 100_000)
    else:
        meta_file.unlink()
        os.mkfifo(meta_file)
    assert tag.main([str(written["tone"]), "--model", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_cli_damaged_cached_baseline_exits_2_naming_it(written, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CTXPAPER_CACHE_DIR", str(tmp_path / "cache"))
    d, _ = tag.cached_baseline_dir("smoke", 0)
    _train_baseline(d)
    (d / "scores.parquet").write_bytes(b"")
    argv = [str(written["tone"]), "--profile", "smoke", "--no-progress"]
    state = d / "run" / "state.json"
    good_state = state.read_bytes()
    state.write_text("[" * 50_000 + "]" * 50_000)  # json.load would raise RecursionError
    assert tag.main(argv) == 2
    err = capsys.readouterr().err
    assert "cached baseline is damaged: cached training state" in err and str(state) in err
    assert "python -m ctxpaper.book --profile smoke 05" in err and "Traceback" not in err
    state.write_bytes(good_state)
    for npz in (d / "run").glob("best-*.npz"):
        npz.write_bytes(b"PK\x03\x04 truncated zip")  # BadZipFile
    assert tag.main(argv) == 2
    err = capsys.readouterr().err
    assert f"the cached baseline in {d / 'run'} cannot be loaded (BadZipFile" in err


def test_find_audio_follows_folder_links_once_and_names_odd_files(tmp_path, written):
    music, elsewhere = tmp_path / "music", tmp_path / "elsewhere"
    (elsewhere / "deep").mkdir(parents=True)
    music.mkdir()
    _copy(written["tone"], elsewhere / "deep" / "x.wav")
    _copy(written["tone"], music / "y.wav")
    (music / "linked").symlink_to(elsewhere)          # followed
    (elsewhere / "deep" / "loop").symlink_to(music)   # a loop back: each folder once
    (music / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    os.mkfifo(music / "pipe.wav")
    with deadline(20):
        files, errors = tag.find_audio([music, music / "pipe.wav", tmp_path / "nowhere.flac"])
    assert files == [music / "linked" / "deep" / "x.wav", music / "y.wav"]
    assert [(e.path.name, e.reason, e.message) for e in errors] == [
        ("gone.wav", "missing", f"broken symbolic link to {tmp_path / 'nowhere.wav'}"),
        ("pipe.wav", "unreadable", "is a FIFO, not a regular file; refusing to read it"),
        ("pipe.wav", "unreadable", "is a FIFO, not a regular file; refusing to read it"),
        ("nowhere.flac", "missing", "no such file or directory"),
    ]


def test_unreadable_files_get_the_os_reason_not_libsndfile_s(written):
    """As a user bound by permissions: a file and a folder that exist but cannot be read.

    libsndfile says "System error" for the file; the reason shown is the system's.
    """
    with shared_dir() as d:
        (d / "music").mkdir()
        _copy(written["tone"], d / "music" / "locked.wav").chmod(0o000)
        _copy(written["tone"], d / "music" / "open.wav")
        (d / "music" / "sealed").mkdir(mode=0o700)
        _copy(written["tone"], d / "music" / "sealed" / "z.wav")
        code = """if True:
            from ctxpaper import tag
            files, errors = tag.find_audio(["music", "music/locked.wav"])
            for e in errors:
                print("find", e.path, e.reason, e.message, sep="|")
            # libsndfile fails before the model is reached: no weights needed
            untrained = tag.Tagger(model=None, frames=16, model_variant="paper")
            for r in tag.tag_files(untrained, [f for f in files if f.name == "locked.wav"], progress=False):
                print("tag", r.path, r.ok, r.reason, r.message, sep="|")
            """
        res = run_unprivileged(code, d)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "find|music/sealed|unreadable|cannot list directory: Permission denied",
        "find|music/locked.wav|unreadable|Permission denied",
        "tag|music/locked.wav|False|unreadable|Permission denied",
    ]
    assert "music/open.wav" not in res.stdout  # found, and no error


@pytest.mark.parametrize("argv, message", [
    (["--top", "0"], "argument --top: must be a positive integer, got '0'"),
    (["--top", "x"], "argument --top: must be a positive integer, got 'x'"),
    (["--seed", "-1"], "argument --seed: must be a non-negative integer, got '-1'"),
    (["--profile", "fast"], "argument --profile: invalid choice: 'fast'"),
    (["--csv", ""], "argument --csv: empty path"),
    (["--model", ""], "argument --model: empty path"),
    ([""], "argument FILE_OR_DIR: empty path"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_cli_bad_arguments_one_line_exit_2(written, argv, message, capsys):
    full = argv if argv == [""] else [str(written["tone"]), *argv]
    with pytest.raises(SystemExit) as e:
        tag.main(full)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m ctxpaper.tag: error: ")
    assert message in err and err.rstrip().endswith("(see --help)")


def test_console_script_exits_with_mains_status(exported, written, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(tag.__file__).parent.parent),
           "CTXPAPER_CACHE_DIR": str(tmp_path / "cache")}
    code = "import sys; from ctxpaper.tag import cli; sys.argv[0] = 'ctxpaper-tag'; cli()"
    run = lambda *args: subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                                       text=True, timeout=300)
    missing = run(str(tmp_path / "nothing.wav"), "--model", str(exported), "--no-progress")
    assert missing.returncode == 1 and "missing" in missing.stderr
    bad = run("--top", "0", str(written["tone"]))
    assert bad.returncode == 2 and bad.stderr.startswith("ctxpaper-tag: error: ")
