"""The offline Deezer rehearsal server (ctxpaper.rehearsal), on 127.0.0.1 only.

Every server here is bounded (max_seconds) and stopped by its test. The
expensive part, rendering 30 s MP3s, happens once per module in a shared cache.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import soundfile as sf

from ctxpaper import audio as A
from ctxpaper import data
from ctxpaper import deezer as D
from ctxpaper import rehearsal as R
from ctxpaper.synth import descriptor_auc

N_PER_CLASS = 16  # previews with and without "club" in the learnability check


@pytest.fixture(scope="module")
def labels() -> pd.DataFrame:
    return data.load_labels()


@pytest.fixture(scope="module")
def artists() -> pd.Series:
    return data.load_split()["artist_id"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rehearsal-cache")


@pytest.fixture(scope="module")
def picks(labels) -> dict[str, list[int]]:
    """Released ids in roles: club / not club (a seeded draw), and misbehaving ones."""
    rng = np.random.default_rng(2020)
    club = labels.index[labels["club"]].to_numpy()
    other = labels.index[~labels["club"]].to_numpy()
    pool = rng.permutation(other)
    return {"club": rng.choice(club, N_PER_CLASS, replace=False).tolist(),
            "other": pool[:N_PER_CLASS].tolist(),
            "no_data": [int(pool[-1])], "no_preview": [int(pool[-2])], "short": [int(pool[-3])]}


def make_server(labels, artists, cache, picks, **kw) -> R.RehearsalServer:
    opts = dict(port=0, cache_dir=cache, seed=0, max_seconds=120, labels=labels, artists=artists,
                no_data=picks["no_data"], no_preview=picks["no_preview"], short=picks["short"])
    return R.RehearsalServer(**{**opts, **kw})


def track(srv: R.RehearsalServer, tid, session=requests) -> dict:
    r = session.get(f"{srv.url}/track/{tid}", timeout=10)
    assert r.status_code == 200  # Deezer answers its errors with HTTP 200 too
    return r.json()


# --------------------------------------------------------------------------
# The API


def test_track_json_like_deezers(labels, artists, cache, picks):
    tid = picks["club"][0]
    with make_server(labels, artists, cache, picks) as srv:
        js = track(srv, tid)
    assert srv.url.startswith("http://127.0.0.1:") and srv.port > 0
    assert js["id"] == tid and js["type"] == "track" and js["readable"] is True
    assert isinstance(js["title"], str) and js["title"]
    assert isinstance(js["duration"], int) and js["duration"] >= 30
    assert js["artist"]["id"] == int(artists.loc[tid]) and js["artist"]["type"] == "artist"
    assert js["preview"].startswith(f"{srv.url}/preview/{tid}.mp3?hdnea=exp=")
    assert "~hmac=" in js["preview"] and "error" not in js


def test_quota_error_past_the_limit_and_recovery_after_the_window(labels, artists, cache, picks):
    tid = picks["other"][0]
    with make_server(labels, artists, cache, picks, quota=(5, 1.0)) as srv:
        with requests.Session() as s:
            first = [track(srv, tid, s) for _ in range(5)]
            over = [track(srv, tid, s) for _ in range(3)]
            time.sleep(1.05)
            after = track(srv, tid, s)
        stats = srv.stats()
    assert all(js["id"] == tid for js in first)
    assert all(js == {"error": {"type": "Exception", "message": "Quota limit exceeded", "code": D.QUOTA_CODE}}
               for js in over)
    assert after["id"] == tid
    assert stats["quota"] == 3 and stats["track"] == 6


def test_quota_window_slides(labels, artists, cache, picks):
    tid = picks["other"][0]
    with make_server(labels, artists, cache, picks, quota=(4, 1.0)) as srv, requests.Session() as s:
        assert all("id" in track(srv, tid, s) for _ in range(2))
        a = time.monotonic()  # calls 1-2 arrived before a
        time.sleep(0.4)
        assert all("id" in track(srv, tid, s) for _ in range(2))  # calls 3-4 arrive after a + 0.4
        assert track(srv, tid, s)["error"]["code"] == D.QUOTA_CODE  # 4 calls in the last second
        time.sleep(max(0.0, a + 1.05 - time.monotonic()))
        # Calls 1-2 have left the window, calls 3-4 stay in it until a + 1.4.
        assert all("id" in track(srv, tid, s) for _ in range(2))
        assert track(srv, tid, s)["error"]["code"] == D.QUOTA_CODE
        assert time.monotonic() < a + 1.4


def test_no_data_no_preview_and_unknown_ids(labels, artists, cache, picks):
    no_data, no_preview = picks["no_data"][0], picks["no_preview"][0]
    unknown = int(labels.index.max()) + 1
    with make_server(labels, artists, cache, picks, quota=None) as srv:
        answers = {k: track(srv, v) for k, v in
                   {"no_data": no_data, "unknown": unknown, "not_a_number": "abc", "no_preview": no_preview}.items()}
        # The no-preview track has no URL to sign: a hand-made one is refused.
        forged = requests.get(f"{srv.url}/preview/{no_preview}.mp3", timeout=10)
        missing = requests.get(f"{srv.url}/album/1", timeout=10)
    err = {"error": {"type": "DataException", "message": "no data", "code": D.NO_DATA_CODE}}
    assert answers["no_data"] == answers["unknown"] == answers["not_a_number"] == err
    assert answers["no_preview"]["id"] == no_preview and answers["no_preview"]["preview"] == ""
    assert forged.status_code == 403 and missing.status_code == 404


def test_preview_signature_checked(labels, artists, cache, picks):
    tid = picks["short"][0]  # short: cheap to render
    with make_server(labels, artists, cache, picks, quota=None, url_ttl=2) as srv:
        srv.prerender([tid])
        url = track(srv, tid)["preview"]  # valid for at least one more second
        base, _, query = url.partition("?")
        bad_hmac = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
        other_id = url.replace(f"/preview/{tid}.mp3?", f"/preview/{picks['club'][0]}.mp3?", 1)
        codes = {"none": requests.get(base, timeout=10).status_code,
                 "hmac": requests.get(bad_hmac, timeout=10).status_code,
                 "other_id": requests.get(other_id, timeout=10).status_code,
                 "good": requests.get(url, timeout=30).status_code}
        time.sleep(max(0.0, int(query.split("~")[0].removeprefix("hdnea=exp=")) - time.time()) + 0.05)
        codes["expired"] = requests.get(url, timeout=10).status_code
    assert codes == {"none": 403, "hmac": 403, "other_id": 403, "good": 200, "expired": 403}


def test_default_sets_drawn_from_seed_and_shares(labels, artists, cache):
    srv = R.RehearsalServer(cache_dir=cache, seed=3, labels=labels, artists=artists)
    drawn = R.special_ids(labels.index, seed=3)
    n = len(labels)
    assert len(srv.no_data) == round(0.02 * n) and len(srv.no_preview) == len(srv.short) == round(0.01 * n)
    assert (srv.no_data, srv.no_preview, srv.short) == (drawn["no_data"], drawn["no_preview"], drawn["short"])
    with srv:
        assert track(srv, min(srv.no_data))["error"]["code"] == D.NO_DATA_CODE
        assert track(srv, min(srv.no_preview))["preview"] == ""


def test_special_ids_deterministic_disjoint_and_order_free():
    ids = list(range(1000, 3000))
    a = R.special_ids(ids, 0.05, 0.02, 0.03, seed=1)
    assert a == R.special_ids(ids[::-1] + ids[:10], 0.05, 0.02, 0.03, seed=1)
    assert [len(a[k]) for k in ("no_data", "no_preview", "short")] == [100, 40, 60]
    assert not (a["no_data"] & a["no_preview"]) and not (a["no_data"] | a["no_preview"]) & a["short"]
    assert set().union(*a.values()) <= set(ids)
    assert R.special_ids(ids, 0.05, 0.02, 0.03, seed=2)["no_data"] != a["no_data"]
    with pytest.raises(ValueError, match="no_data share"):
        R.special_ids(ids, no_data_share=1.5)
    with pytest.raises(ValueError, match="sum to more than 1"):
        R.special_ids(ids, 0.6, 0.3, 0.2)


# --------------------------------------------------------------------------
# The previews


def test_mp3_is_44k_stereo_30s_and_short_ones_shorter(fetched, picks):
    out, _, _ = fetched
    full = sf.info(str(out / f"{picks['club'][0]}.mp3"))
    short = sf.info(str(out / f"{picks['short'][0]}.mp3"))
    assert (full.samplerate, full.channels, full.format) == (44100, 2, "MP3")
    assert abs(full.duration - 30.0) < 0.1
    assert (short.samplerate, short.channels) == (44100, 2) and abs(short.duration - R.SHORT_SECONDS) < 0.1
    # 128 kbit/s CBR, like Deezer's previews (~0.48 MB per 30 s)
    assert abs((out / f"{picks['club'][0]}.mp3").stat().st_size * 8 / full.duration / 1000 - 128) < 2
    y, _ = sf.read(str(out / f"{picks['club'][0]}.mp3"), dtype="float32")
    assert np.sqrt(np.mean(y**2)) > 1e-3 and not np.allclose(y[:, 0], y[:, 1])  # panned stereo, not silence


def test_previews_deterministic_per_id_and_seed(labels, artists, tmp_path, picks):
    tid = picks["short"][0]
    kw = dict(short=[tid], short_seconds=10.5, labels=labels, artists=artists)
    a = R.RehearsalPreviews(tmp_path / "a", seed=0, **kw)
    b = R.RehearsalPreviews(tmp_path / "b", seed=0, **kw)
    c = R.RehearsalPreviews(tmp_path / "c", seed=1, **kw)
    pa = a.mp3(tid)
    assert a.mp3(tid) == pa and a.rendered == 1  # the second call reads the cache
    assert pa.read_bytes() == b.mp3(tid).read_bytes()
    assert pa.read_bytes() != c.mp3(tid).read_bytes()
    assert not list((tmp_path / "a").rglob("*.tmp*"))  # atomic writes leave no temporary file


@pytest.fixture(scope="module")
def fetched(labels, artists, cache, picks, tmp_path_factory):
    """The real client fetching club / not-club / misbehaving ids from a quota-limited server."""
    unknown = int(labels.index.max()) + 7
    ids = picks["club"] + picks["other"] + picks["no_data"] + picks["no_preview"] + picks["short"] + [unknown]
    out = tmp_path_factory.mktemp("previews")
    with make_server(labels, artists, cache, picks, quota=(10, 1.0)) as srv:
        srv.prerender(ids, workers=2)
        client = D.DeezerClient(srv.url, max_calls=1000, period=1.0, timeout=10, max_retries=10,
                                backoff=0.1, max_backoff=1.0)
        manifest = D.fetch_previews(ids, out, client=client, workers=4, progress=False)
        stats = srv.stats()
    return out, manifest.set_index("id"), stats | {"unknown": unknown}


def test_client_end_to_end_statuses_and_files(fetched, picks):
    out, m, stats = fetched
    status = m["status"].to_dict()
    assert stats["quota"] > 0  # the client met the quota and recovered from it
    ok = picks["club"] + picks["other"] + picks["short"]
    assert {i: status[i] for i in ok} == {i: "ok" for i in ok}
    assert status[picks["no_data"][0]] == "no_data" and status[stats["unknown"]] == "no_data"
    assert status[picks["no_preview"][0]] == "no_preview"
    for i in ok:
        f = out / f"{i}.mp3"
        assert f.stat().st_size == m.loc[i, "bytes"] > 100_000
    assert not (out / f"{picks['no_data'][0]}.mp3").exists()
    assert not (out / f"{picks['no_preview'][0]}.mp3").exists()


def test_previews_carry_their_released_labels(fetched, picks, labels):
    """A descriptor of the fetched MP3s separates tracks with and without a context."""
    out, _, _ = fetched
    ids = picks["club"] + picks["other"]
    feats = pd.DataFrame([{"logmel_mean": float(A.logmel(out / f"{i}.mp3").mean())} for i in ids], index=ids)
    auc = descriptor_auc(feats, labels.loc[ids])["logmel_mean"]
    assert auc["club"] > 0.75  # club pushes energy and percussion up
    assert auc["sleep"] < 0.35  # sleep pushes them down


# --------------------------------------------------------------------------
# Bounds, life cycle, bad input, command line


def test_stops_by_itself_after_max_requests(labels, artists, cache, picks):
    tid = picks["other"][0]
    with make_server(labels, artists, cache, picks, max_requests=3) as srv, requests.Session() as s:
        answered = [track(srv, tid, s) for _ in range(3)]
        assert srv.wait(5.0) and not srv.running
        with pytest.raises(requests.ConnectionError):  # the kept-alive connection too is closed
            s.get(f"{srv.url}/track/{tid}", timeout=5)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{srv.url}/track/{tid}", timeout=5)
    assert all(js["id"] == tid for js in answered) and srv.stats()["requests"] == 3


def test_stops_by_itself_after_max_seconds(labels, artists, cache, picks):
    t0 = time.monotonic()
    with make_server(labels, artists, cache, picks, max_seconds=0.5) as srv:
        assert srv.wait(10.0)
        elapsed = time.monotonic() - t0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{srv.url}/track/1", timeout=5)
    assert 0.5 <= elapsed < 5.0


def test_render_failure_is_a_named_500_and_the_server_keeps_serving(labels, artists, tmp_path, picks, capsys):
    not_a_dir = tmp_path / "cache-is-a-file"
    not_a_dir.write_text("x")
    tid = picks["short"][0]
    with make_server(labels, artists, not_a_dir, picks, quota=None) as srv:
        r = requests.get(track(srv, tid)["preview"], timeout=30)
        again = track(srv, tid)
    assert r.status_code == 500 and "cache-is-a-file" in r.text
    assert again["id"] == tid and srv.stats()["server_error"] == 1
    assert "rehearsal server error" in capsys.readouterr().err


def test_port_in_use_named(labels, artists, cache, picks):
    with make_server(labels, artists, cache, picks) as srv:
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{srv.port}"):
            make_server(labels, artists, cache, picks, port=srv.port).start()


@pytest.mark.parametrize("kw, match", [
    ({"host": "0.0.0.0"}, "binds 127.0.0.1 only"),
    ({"port": 70000}, "port"),
    ({"quota": (0, 5.0)}, "quota"),
    ({"quota": (50, 0)}, "quota"),
    ({"max_requests": 0}, "max_requests"),
    ({"max_seconds": -1}, "max_seconds"),
    ({"seed": -1}, "seed"),
    ({"short_seconds": 31}, "short_seconds"),
    ({"shares": {"nodata": 0.1}}, "unknown shares"),
])
def test_bad_parameters_named(kw, match, labels, artists, cache):
    with pytest.raises(ValueError, match=match):
        R.RehearsalServer(**{"cache_dir": cache, "labels": labels, "artists": artists, **kw})


def test_cli_quota_and_share_errors(capsys):
    assert R.parse_quota("50/5") == (50, 5.0) and R.parse_quota("none") is None
    for argv in (["--quota", "50"], ["--quota", "0/5"], ["--no-data-share", "2"]):
        with pytest.raises(SystemExit) as e:
            R.main(argv)
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--quota must look like CALLS/SECONDS" in err and "share must be a number in [0, 1]" in err


def test_cli_serves_until_max_requests(tmp_path, cache, picks, capsys):
    ids = tmp_path / "ids.txt"
    ids.write_text(f"# one id\n{picks['short'][0]}\n", encoding="utf-8")
    url_file = tmp_path / "url"
    rc = []
    argv = ["--port", "0", "--cache", str(cache), "--max-requests", "2", "--max-seconds", "60",
            "--url-file", str(url_file), "--prerender", str(ids), "--seed", "0"]
    t = threading.Thread(target=lambda: rc.append(R.main(argv)), daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while not url_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    url = url_file.read_text().strip()
    js = requests.get(f"{url}/track/{picks['club'][0]}", timeout=10).json()
    assert requests.get(js["preview"], timeout=30).status_code == 200
    t.join(30)
    assert rc == [0]
    out = capsys.readouterr().out
    assert f"Deezer rehearsal server on {url}" in out and "served 2 requests: track 1, preview 1" in out


def test_read_id_list_names_bad_line(tmp_path):
    p = tmp_path / "ids.txt"
    p.write_text("12\n\n# c\nx3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"ids.txt, line 4: 'x3' is not a song id"):
        R.read_id_list(p)
