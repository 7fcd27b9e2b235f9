"""``python -m ctxpaper.reproduce``: the plan's arithmetic, its dry run, its errors, and a rehearsal."""

from __future__ import annotations

import socket

import numpy as np
import pandas as pd
import pytest

from ctxpaper import book, deezer, device, features, paper, reproduce
from ctxpaper.losses import LABELS, TABLE2_LOSSES
from ctxpaper.profiles import get_profile
from ctxpaper.runs import Run

QUICK = get_profile("quick")  # max_epochs 10, n_seeds 3


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache and previews folder, and a preview server nobody listens on."""
    monkeypatch.setenv("CTXPAPER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CTXPAPER_PREVIEWS_DIR", str(tmp_path / "previews"))
    monkeypatch.setenv("CTXPAPER_DEEZER_URL", f"http://127.0.0.1:{_closed_port()}")
    return tmp_path


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rates(fetch=10.0, extract=20.0, train=50.0) -> reproduce.Rates:
    return reproduce.Rates(fetch, extract, train, {"fetch": "f", "extract": "e", "train": "t"})


# --------------------------------------------------------------------------
# The plan's arithmetic


def test_plan_disk_and_time_from_known_rates():
    sizes = {"train": 100, "validation": 30, "test": 50}
    plan = reproduce.make_plan(QUICK, 0, sizes, {"train": 1000, "validation": 300, "test": 500}, 30, _rates())
    assert plan.n_tracks == 180 and plan.to_fetch == 150
    assert plan.preview_bytes == 150 * 480_000
    assert plan.feature_bytes == 180 * 646 * 96 * 2 == features.store_bytes(180)
    # 5 losses x 3 seeds x 10 epochs x (100 train + 30 validation / 3) samples at 50 samples/s
    assert plan.n_models == 15
    assert plan.seconds == {"fetch": 15.0, "extract": 9.0, "train": 15 * 10 * 110 / 50}
    text = reproduce.format_plan(plan)
    assert "30 already fetched, 150 to fetch" in text
    assert "previews 72.0 MB to download" in text and "features 22.3 MB" in text
    assert "at most 5 min 30 s" in text and "at most 5 min 54 s" in text  # 330 s training, 354 s in all
    assert "15 models (5 losses × 3 seeds) × at most 10 epochs of 100 tracks" in text
    assert "skipped (--skip-book)" in reproduce.format_plan(plan, skip_book=True)


@pytest.mark.parametrize("on_disk, rates, match", [
    (181, _rates(), "on_disk must be in 0..180"),
    (-1, _rates(), "on_disk must be in 0..180"),
    (0, _rates(train=0.0), "rate train must be > 0"),
])
def test_plan_refuses_impossible_inputs(on_disk, rates, match):
    with pytest.raises(ValueError, match=match):
        reproduce.make_plan(QUICK, 0, {"train": 100, "validation": 30, "test": 50}, {}, on_disk, rates)


def test_nominal_rates_follow_the_client_limit_and_the_model_flops():
    from ctxpaper.model import training_flops

    cpu = device.training_device("cpu")
    client = deezer.DeezerClient("http://127.0.0.1:9", max_calls=10, period=2.0)
    r = reproduce.measure_rates(get_profile("full"), cpu, workers=1, previews=[], measure=False, client=client)
    assert r.fetch == 5.0 and "10 API calls per 2 s" in r.how["fetch"]
    assert r.extract == reproduce.NOMINAL["extract_per_process"]
    assert r.train == pytest.approx(reproduce.NOMINAL["cpu_flops_per_core"] * cpu.cpu_cores / 5.3e9, rel=0.02)
    assert r.train * training_flops(646) == pytest.approx(reproduce.NOMINAL["cpu_flops_per_core"] * cpu.cpu_cores)
    assert all(v.startswith("nominal") for k, v in r.how.items() if k != "fetch")


def test_measured_extraction_rate_decodes_a_real_mp3(tmp_path):
    rate, how = reproduce._extract_rate([], workers=1)
    assert rate > 0 and how.startswith("measured: 8 synthetic 30 s MP3s")


# --------------------------------------------------------------------------
# The command


@pytest.fixture
def no_work(monkeypatch):
    """Every stage that fetches, extracts, trains or builds raises."""
    def forbidden(*a, **k):
        raise AssertionError("the dry run must not do any work")

    for name in ("fetch_previews", "features", "grid", "train"):
        monkeypatch.setattr(Run, name, forbidden)
    monkeypatch.setattr(book, "run", forbidden)


def test_dry_run_prints_the_plan_and_does_no_work(cache, no_work, capsys):
    assert reproduce.main(["--profile", "smoke", "--dry-run", "--no-measure"]) == 0
    out = capsys.readouterr().out
    assert "Plan: reproduce Table 2 on the released tracks (profile smoke, seed 0)" in out
    assert "0 already fetched, 96 to fetch" in out and "nominal" in out
    assert "official" in out and "12,169" in out  # fold 0, beside the selection
    assert not (cache / "previews").exists() and not (cache / "cache" / "reproduce").exists()


def test_without_yes_and_without_a_terminal_nothing_starts(cache, no_work, capsys):
    assert reproduce.main(["--profile", "smoke", "--no-measure"]) == 2
    assert "pass --yes" in capsys.readouterr().err


@pytest.mark.parametrize("argv, named", [
    (["--profile", "huge"], "--profile"),
    (["--seed", "-1"], "--seed"),
    (["--seed", "one"], "--seed"),
    (["--workers", "0"], "--workers"),
    (["--frobnicate"], "--frobnicate"),
])
def test_bad_arguments_exit_2_naming_them(cache, no_work, capsys, argv, named):
    with pytest.raises(SystemExit) as e:
        reproduce.main([*argv, "--dry-run", "--no-measure"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1


def test_unreachable_server_exits_3_naming_it(cache, capsys):
    url = deezer.default_base_url()
    assert reproduce.main(["--profile", "smoke", "--yes", "--no-measure", "--skip-book", "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert f"cannot reach {url}" in err and "ctxpaper.deezer serve" in err
    assert not (cache / "previews").exists()  # nothing half-written


def test_ctrl_c_exits_130_and_says_how_to_continue(cache, monkeypatch, capsys):
    def interrupted(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Run, "fetch_previews", interrupted)
    assert reproduce.main(["--profile", "smoke", "--yes", "--no-measure", "--skip-book"]) == 130
    assert "run the same command again to continue" in capsys.readouterr().err


# --------------------------------------------------------------------------
# End to end against the rehearsal server


@pytest.mark.slow
def test_reproduce_smoke_against_the_rehearsal_server(cache, monkeypatch, capsys):
    from ctxpaper.rehearsal import RehearsalServer

    run = Run.of("smoke", 0, "released")
    sel = run.selection()
    ids = sel.split.index.to_numpy(np.int64)
    no_data, no_preview = [int(sel.ids("train")[0]), int(sel.ids("test")[0])], [int(sel.ids("train")[1])]
    with RehearsalServer(port=0, cache_dir=cache / "rehearsal", seed=0, no_data=no_data,
                         no_preview=no_preview, short=[], max_seconds=900, max_requests=2000) as srv:
        srv.prerender(ids, workers=2)
        monkeypatch.setenv("CTXPAPER_DEEZER_URL", srv.url)
        argv = ["--profile", "smoke", "--yes", "--skip-book", "--no-measure", "--no-progress", "--workers", "2"]
        assert reproduce.main(argv) == 0
        out = capsys.readouterr().out
        calls = srv.stats().get("track", srv.stats()["requests"])
        # A rerun finds every stage done: no new API call, the same summary.
        assert reproduce.main(argv) == 0
        assert srv.stats().get("track", srv.stats()["requests"]) == calls
    assert "[1/4] fetch previews" in out and "[3/4] train" in out and "book: skipped" in out

    m = deezer.read_manifest(cache / "previews").set_index("id").loc[ids]
    assert m.loc[no_data, "status"].eq("no_data").all() and m.loc[no_preview, "status"].eq("no_preview").all()
    assert (m["status"] == "ok").sum() == len(ids) - 3

    path = reproduce.summary_path(Run.of("smoke", 0, "released"))
    assert f"wrote {path}" in out
    header = [line for line in path.read_text().splitlines() if line.startswith("# ")]
    fields = dict(line[2:].split(": ", 1) for line in header)
    assert fields["source"] == "released" and fields["profile"] == "smoke" and fields["seed"] == "0"
    assert fields["previews_from"] == srv.url and fields["commit"] and "Training on" in fields["device"]
    table = pd.read_csv(path, comment="#", header=[0, 1], index_col=0)
    assert list(table.index) == [LABELS[k] for k in TABLE2_LOSSES]
    ours = table.xs("ours", axis=1, level="source")
    assert ours.notna().all().all() and ((ours >= 0) & (ours <= 1)).all().all()
    assert np.allclose(table.xs("paper", axis=1, level="source").to_numpy(), paper.table2().to_numpy())

    baseline, rec = reproduce.released_baseline_dir("smoke", 0)
    assert rec["rehearsal"] and (baseline / "scores.parquet").exists()
    scores = pd.read_parquet(baseline / "scores.parquet")
    assert set(scores.index) <= set(sel.ids("validation")) | set(sel.ids("test"))
    assert not set(scores.index) & set(no_data + no_preview)
