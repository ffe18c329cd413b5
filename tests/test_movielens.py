"""MovieLens loaders: the three file formats, where files are found, and the download path.

Format tests read small hand-written files in tests/fixtures/movielens/ (same formats and
encodings as GroupLens ships). Download tests serve zips from a local HTTP server on 127.0.0.1
and inject faults (truncated body, wrong bytes, no server, 404). Tests marked ``movielens`` read
the real files and run only when PERSO_KIT_DATA_DIR holds them.
"""
from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import tempfile
import socket
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perso_kit.data import load_dataset
from perso_kit.data import movielens as ml

def _materialize_fixtures() -> Path:
    """Copy the hand-written fixtures (stored as ``<name>.txt`` so that no file in the project
    carries a MovieLens file name) to a temporary folder under their real names."""
    src = Path(__file__).parent / "fixtures" / "movielens"
    dst = Path(tempfile.mkdtemp(prefix="movielens-fixtures-"))
    for f in src.rglob("*.txt"):
        target = dst / f.relative_to(src).with_suffix("")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
    return dst


FIXTURES = _materialize_fixtures()
REAL_DIR = os.environ.get("PERSO_KIT_DATA_DIR")


@pytest.fixture(autouse=True)
def no_env_data_dir(monkeypatch, request):
    """Fixture tests must not see the real files through PERSO_KIT_DATA_DIR, nor reach the real
    mirror: downloads go to local servers only (tests that need a mirror set one)."""
    if "movielens" not in request.keywords:
        monkeypatch.delenv("PERSO_KIT_DATA_DIR", raising=False)
    monkeypatch.delenv("PERSO_KIT_MOVIELENS_URLS", raising=False)
    monkeypatch.setattr(ml, "MIRRORS", ())


def make_zip(name: str, folder: Path) -> Path:
    """Zip the fixture folder of ``name`` the way GroupLens does (files under ``name/``)."""
    path = folder / f"{name}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{name}/", "")
        for f in sorted((FIXTURES / name).iterdir()):
            z.write(f, f"{name}/{f.name}")
    return path


def interactions(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return df.astype({"user_id": np.int64, "item_id": np.int64, "rating": np.float32,
                      "timestamp": np.int64})


def load_fixture(name, tmp_path, **kw):
    return ml.load_movielens(name, data_dir=FIXTURES, cache_dir=tmp_path / "cache",
                             download=False, **kw)


# ------------------------------------------------------------------------------ formats
def test_ml100k_fixture_exact_values(tmp_path):
    ds = load_fixture("ml-100k", tmp_path)
    pd.testing.assert_frame_equal(ds.interactions, interactions([
        (1, 10, 4, 881250949), (1, 20, 5, 881251000), (2, 10, 3, 891717742),
        (3, 30, 1, 878887116), (2, 40, 2, 880000000)]))
    it = ds.items.set_index("item_id")
    assert it.index.tolist() == [10, 20, 30, 40, 50, 60]
    assert it["title"].tolist() == [
        "Quiet Harbour, The (1994)", "Café Lumière, Le (Lumière du café) (1996)", "unknown",
        "Night Train to Nowhere (1995)", "Hollow Road", 'Brothers "Bingo" and Sons (1981) (V)']
    # the title's year wins over a later release date (item 20); the release date fills in
    # only where the title has none (item 50); "unknown" has neither
    assert it["year"].tolist() == [1994, 1996, pd.NA, 1995, 1993, 1981]
    assert str(it["year"].dtype) == "Int64"
    assert it["genres"].tolist() == [("Comedy", "Romance"), ("Drama",), (),
                                     ("Film-Noir", "Thriller"), ("Western",), ()]
    assert it.loc[20, "release_date"] == pd.Timestamp("1997-02-14")
    assert pd.isna(it.loc[40, "release_date"]) and pd.isna(it.loc[30, "release_date"])
    assert it.loc[20, "imdb_url"] == "http://us.imdb.com/Title?Caf%E9"
    assert it.loc[50, "imdb_url"] == ""
    assert (it["description"] == "").all()
    assert ds.users.to_dict("list") == {
        "user_id": [1, 2, 3, 4], "age": [24, 53, 23, 33], "gender": ["M", "F", "M", "F"],
        "occupation": ["technician", "other", "writer", "educator"],
        "zip": ["85711", "04043", "T8H1N", "55105"]}    # leading zero and letters kept
    assert ds.meta["rating_scale"] == (1.0, 5.0)
    assert ds.meta["url"] == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"


def test_ml100k_without_u_genre_uses_the_fixed_genre_list(tmp_path):
    folder = tmp_path / "data" / "ml-100k"
    shutil.copytree(FIXTURES / "ml-100k", folder)
    (folder / "u.genre").unlink()
    ds = ml.load_movielens("ml-100k", data_dir=folder.parent, download=False,
                           cache_dir=tmp_path / "cache")
    assert ds.items["genres"].tolist() == [("Comedy", "Romance"), ("Drama",), (),
                                           ("Film-Noir", "Thriller"), ("Western",), ()]


def test_ml1m_fixture_exact_values(tmp_path):
    ds = load_fixture("ml-1m", tmp_path)
    pd.testing.assert_frame_equal(ds.interactions, interactions([
        (1, 11, 5, 978300760), (1, 12, 3, 978302109), (2, 11, 4, 978298413),
        (2, 13, 1, 956703932)]))
    it = ds.items.set_index("item_id")
    assert it.index.tolist() == [11, 12, 13, 14]             # 14 is unrated but in the catalog
    assert it["title"].tolist() == ["Harbour Lights (1995)", "Rêve, Le (The Dream) (1998)",
                                    "Time: Ten Years Later (1999)",
                                    'Zorro Returns, or "The Masked Rider" (1966)']
    assert it["year"].tolist() == [1995, 1998, 1999, 1966]
    assert it["genres"].tolist() == [("Drama", "Romance"), ("Comedy",), ("Sci-Fi",),
                                     ("Action", "Western")]
    assert ds.users.to_dict("list") == {
        "user_id": [1, 2, 3], "gender": ["F", "M", "M"], "age": [1, 56, 25],
        "occupation": ["K-12 student", "self-employed", "scientist"],
        "zip": ["48067", "70072", "02138"]}


def test_ml_latest_small_fixture_exact_values(tmp_path):
    ds = load_fixture("ml-latest-small", tmp_path)
    pd.testing.assert_frame_equal(ds.interactions, interactions([
        (1, 1, 4.0, 964982703), (1, 3, 4.5, 964981247), (2, 1, 0.5, 1445714835),
        (3, 4, 3.0, 1306463578), (3, 7, 5.0, 1537799250)]))
    it = ds.items.set_index("item_id")
    assert it.index.tolist() == [1, 3, 4, 5, 6, 7]
    assert it["title"].tolist() == [
        "Paper Kites (1995)", "Lighthouse, The (Phare, Le) (2001)",
        'Man Who Said "No", The (1999)', "Untitled Garden Project",
        "Moonrise Saga: Nôto (2006–2007)", "Spaceport Nine (2011)"]
    assert it["year"].tolist() == [1995, 2001, 1999, pd.NA, 2006, 2011]
    assert it["genres"].tolist() == [("Adventure", "Animation", "Children"), ("Drama",),
                                     ("Comedy", "Drama"), (), (), ("Sci-Fi",)]
    assert it.loc[1, "imdb_url"] == "https://www.imdb.com/title/tt0114709/"
    assert it.loc[1, "tmdb_id"] == 862 and pd.isna(it.loc[3, "tmdb_id"])
    assert ds.users["user_id"].tolist() == [1, 2, 3]          # no user table: those who rated
    assert ds.meta["rating_scale"] == (0.5, 5.0)
    assert ds.n_items == 6 and ds.interactions["item_id"].nunique() == 4


def test_year_regex_on_tricky_titles():
    titles = pd.Series(["Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)", "Babylon 5",
                        "(500) Days of Summer (2009)", "1492: Conquest of Paradise (1992)",
                        "Land Before Time III (1995) (V)", "Death Note (2006–2007)",
                        "Series (2016- )", "Fahrenheit 9/11 (2004)"], dtype=str)
    assert ml._year_from_title(titles).tolist() == [1995, pd.NA, 2009, 1992, 1995, 2006, 2016,
                                                   2004]


# ------------------------------------------------------------------------- where files come from
@pytest.mark.parametrize("name", ["ml-100k", "ml-1m", "ml-latest-small"])
def test_zip_in_data_dir_reads_the_same_as_the_folder(name, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    zip_path = make_zip(name, data)
    with pytest.warns(UserWarning, match="MD5 differs"):     # not GroupLens's file
        from_zip = ml.load_movielens(name, data_dir=data, cache_dir=tmp_path / "c",
                                     download=False)
    assert from_zip.meta["source"] == str(zip_path)
    from_folder = load_fixture(name, tmp_path)
    assert from_folder.meta["source"] == str(FIXTURES / name)
    for table in ("interactions", "items", "users"):
        pd.testing.assert_frame_equal(getattr(from_zip, table), getattr(from_folder, table))


def test_data_dir_may_be_the_extracted_folder_itself_and_comes_from_the_env(tmp_path,
                                                                              monkeypatch):
    ds = ml.load_movielens("ml-1m", data_dir=FIXTURES / "ml-1m", cache_dir=tmp_path,
                           download=False)
    assert ds.n_interactions == 4
    monkeypatch.setenv("PERSO_KIT_DATA_DIR", str(FIXTURES))
    monkeypatch.setenv("PERSO_KIT_CACHE_DIR", str(tmp_path))
    ds = load_dataset("ml-latest-small", download=False)
    assert ds.name == "ml-latest-small" and ds.n_items == 6


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"ml-10m.*ml-100k.*ml-1m.*ml-latest-small"):
        ml.load_movielens("ml-10m")


def test_missing_files_without_download_say_how_to_place_them(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        ml.load_movielens("ml-1m", data_dir=tmp_path / "empty", cache_dir=tmp_path,
                          download=False)
    msg = str(err.value)
    assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in msg
    assert "c4d9eecfca2ab87c1945afe126590906" in msg and "PERSO_KIT_DATA_DIR" in msg
    assert str(tmp_path / "movielens") in msg


# ------------------------------------------------------------------------------ downloads
class Server:
    """A local HTTP server: ``files[path] = (bytes, mode)``; mode "good", "truncated" or 404."""

    def __init__(self):
        self.files: dict[str, tuple[bytes, str]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body, mode = server.files.get(self.path.lstrip("/"), (b"", "404"))
                if mode == "404":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body if mode == "good" else body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch, tmp_path):
    """Serve the ml-100k fixture zip as GroupLens would, with its MD5 as the expected one."""
    srv = Server()
    body = make_zip("ml-100k", tmp_path).read_bytes()
    srv.body = body
    srv.files["ml-100k.zip"] = (body, "good")
    monkeypatch.setattr(ml, "BASE_URL", srv.url)
    monkeypatch.setitem(ml.RELEASES, "ml-100k",
                        (hashlib.md5(body).hexdigest(), ml.RELEASES["ml-100k"][1]))
    yield srv
    srv.close()


def cache_files(cache: Path) -> list[str]:
    folder = cache / "movielens"
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) \
        if folder.exists() else []


def test_good_download_is_stored_then_reused_without_fetching(server, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    ds = ml.load_movielens("ml-100k", cache_dir=cache)
    assert server.requests == ["/ml-100k.zip"]
    assert cache_files(cache) == ["ml-100k.zip"]
    assert (cache / "movielens" / "ml-100k.zip").read_bytes() == server.body
    assert ds.n_interactions == 5 and ds.meta["source"] == str(cache / "movielens/ml-100k.zip")

    def no_fetch(*args, **kwargs):
        raise AssertionError("fetched again")
    monkeypatch.setattr(ml, "_fetch", no_fetch)
    again = ml.load_movielens("ml-100k", cache_dir=cache)
    assert server.requests == ["/ml-100k.zip"]
    pd.testing.assert_frame_equal(again.items, ds.items)


def test_truncated_download_leaves_nothing(server, tmp_path):
    server.files["ml-100k.zip"] = (server.body, "truncated")
    cache = tmp_path / "cache"
    with pytest.raises(ml.DownloadError, match="interrupted") as err:
        ml.load_movielens("ml-100k", cache_dir=cache)
    assert f"{server.url}ml-100k.zip" in str(err.value)
    assert cache_files(cache) == []


def test_wrong_md5_download_leaves_nothing(server, tmp_path):
    server.files["ml-100k.zip"] = (server.body[:-1] + b"x", "good")
    cache = tmp_path / "cache"
    with pytest.raises(ml.DownloadError) as err:
        ml.load_movielens("ml-100k", cache_dir=cache)
    msg = str(err.value)
    assert hashlib.md5(server.body[:-1] + b"x").hexdigest() in msg      # what came
    assert hashlib.md5(server.body).hexdigest() in msg                  # what was expected
    assert "discarded" in msg and cache_files(cache) == []


def test_http_error_leaves_nothing(server, tmp_path):
    del server.files["ml-100k.zip"]
    with pytest.raises(ml.DownloadError, match="answered 404"):
        ml.load_movielens("ml-100k", cache_dir=tmp_path)
    assert cache_files(tmp_path) == []


def test_corrupt_cached_zip_is_kept_aside_and_downloaded_again(server, tmp_path):
    folder = tmp_path / "movielens"
    folder.mkdir()
    (folder / "ml-100k.zip").write_bytes(server.body[:100])            # an old partial copy
    (folder / ".ml-100k.zip.abc.part").write_bytes(b"left by a killed process")
    with pytest.warns(UserWarning, match="corrupt or incomplete.*kept it as .*downloading it "
                                         "again"):
        ds = ml.load_movielens("ml-100k", cache_dir=tmp_path)
    assert ds.n_items == 6 and len(server.requests) == 1
    aside = f"ml-100k.zip.not-grouplens-{hashlib.md5(server.body[:100]).hexdigest()[:12]}"
    assert cache_files(tmp_path) == ["ml-100k.zip", aside]
    assert (folder / aside).read_bytes() == server.body[:100]            # never deleted


def test_corrupt_cached_zip_without_download_is_kept_and_reported(server, tmp_path):
    folder = tmp_path / "movielens"
    folder.mkdir()
    (folder / "ml-100k.zip").write_bytes(b"not a zip")
    with pytest.raises(ml.DataFileError, match="cannot be read.*not a complete zip.*left where "
                                               "it is"):
        ml.load_movielens("ml-100k", cache_dir=tmp_path, download=False)
    assert cache_files(tmp_path) == ["ml-100k.zip"] and server.requests == []


def test_hand_placed_zip_with_another_checksum_is_kept_and_used(server, tmp_path):
    folder = tmp_path / "movielens"
    folder.mkdir()
    with zipfile.ZipFile(folder / "ml-100k.zip", "w") as z:  # the same files, stored: other MD5
        for f in sorted((FIXTURES / "ml-100k").iterdir()):
            z.write(f, f"ml-100k/{f.name}")
    for download in (False, True):
        with pytest.warns(UserWarning, match="not the file GroupLens publishes.*reading it "
                                             "anyway"):
            ds = ml.load_movielens("ml-100k", cache_dir=tmp_path, download=download)
        assert ds.n_items == 6
    assert cache_files(tmp_path) == ["ml-100k.zip"] and server.requests == []


def test_no_network_error_names_url_md5_and_what_to_do(tmp_path, monkeypatch):
    with socket.socket() as s:                     # a port on which nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(ml, "BASE_URL", f"http://127.0.0.1:{port}/")
    with pytest.raises(ml.DownloadError) as err:
        ml.load_movielens("ml-latest-small", cache_dir=tmp_path)
    msg = str(err.value)
    assert f"http://127.0.0.1:{port}/ml-latest-small.zip" in msg and "no network" in msg
    assert "31a303aabbc519bd33d025e44d6c2570" in msg and "PERSO_KIT_DATA_DIR" in msg
    assert str(tmp_path / "movielens") in msg
    assert cache_files(tmp_path) == []


def closed_port_url() -> str:
    """The URL of a port on 127.0.0.1 on which nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def test_the_sources_are_grouplens_then_an_independent_mirror(monkeypatch):
    monkeypatch.setattr(ml, "MIRRORS", (ml.MIRROR_URL,))
    assert ml.download_urls("ml-1m") == [
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "https://web.archive.org/web/2024id_/https://files.grouplens.org/datasets/movielens/"
        "ml-1m.zip"]
    monkeypatch.setenv("PERSO_KIT_MOVIELENS_URLS", "http://a.test/ml, http://b.test/x/")
    assert ml.download_urls("ml-1m") == ["http://a.test/ml/ml-1m.zip",
                                         "http://b.test/x/ml-1m.zip"]


@pytest.mark.parametrize("primary_fault", ["404", "closed port", "wrong bytes", "truncated"])
def test_when_grouplens_fails_the_mirror_is_tried_and_its_file_accepted(server, tmp_path,
                                                                        monkeypatch,
                                                                        primary_fault):
    mirror = Server()
    try:
        mirror.files["ml-100k.zip"] = (server.body, "good")
        if primary_fault == "404":
            del server.files["ml-100k.zip"]
        elif primary_fault == "closed port":
            monkeypatch.setattr(ml, "BASE_URL", closed_port_url())
        elif primary_fault == "wrong bytes":
            server.files["ml-100k.zip"] = (server.body[:-1] + b"x", "good")
        else:
            server.files["ml-100k.zip"] = (server.body, "truncated")
        monkeypatch.setattr(ml, "MIRRORS", (mirror.url,))
        cache = tmp_path / "cache"
        with pytest.warns(UserWarning, match=rf"failed .*came from {mirror.url}ml-100k\.zip "
                                             r"instead, with GroupLens's MD5"):
            ds = ml.load_movielens("ml-100k", cache_dir=cache)
        assert mirror.requests == ["/ml-100k.zip"]
        assert cache_files(cache) == ["ml-100k.zip"]
        assert (cache / "movielens" / "ml-100k.zip").read_bytes() == server.body
        assert ds.n_interactions == 5 and ds.n_items == 6
    finally:
        mirror.close()


def test_a_mirror_with_other_bytes_is_refused_nothing_is_written_both_urls_named(server,
                                                                                 tmp_path,
                                                                                 monkeypatch):
    mirror = Server()
    try:
        del server.files["ml-100k.zip"]                          # GroupLens: 404
        changed = server.body[:-1] + b"x"
        mirror.files["ml-100k.zip"] = (changed, "good")          # the mirror: a changed file
        monkeypatch.setattr(ml, "MIRRORS", (mirror.url,))
        cache = tmp_path / "cache"
        with pytest.raises(ml.DownloadError) as err:
            ml.load_movielens("ml-100k", cache_dir=cache)
        msg = str(err.value)
        assert f"{server.url}ml-100k.zip answered 404" in msg
        assert f"the file downloaded from {mirror.url}ml-100k.zip" in msg
        assert hashlib.md5(changed).hexdigest() in msg and "discarded" in msg
        assert f"no source gave ml-100k.zip as GroupLens publishes it (MD5 " \
               f"{hashlib.md5(server.body).hexdigest()})" in msg
        assert "Nothing was saved" in msg and "PERSO_KIT_DATA_DIR" in msg
        assert cache_files(cache) == [] and mirror.requests == ["/ml-100k.zip"]
    finally:
        mirror.close()


def test_no_network_at_all_names_both_sources(tmp_path, monkeypatch):
    first, second = closed_port_url(), closed_port_url()
    monkeypatch.setenv("PERSO_KIT_MOVIELENS_URLS", f"{first} {second}")
    with pytest.raises(ml.DownloadError) as err:
        ml.load_movielens("ml-latest-small", cache_dir=tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"could not reach {first}ml-latest-small.zip nor "
                          f"{second}ml-latest-small.zip (no network?)")
    assert "31a303aabbc519bd33d025e44d6c2570" in msg and cache_files(tmp_path) == []


def test_the_sources_variable_replaces_grouplens_and_is_checked_the_same(server, tmp_path,
                                                                        monkeypatch):
    course = Server()
    try:
        course.files["ml-100k.zip"] = (server.body, "good")
        monkeypatch.setenv("PERSO_KIT_MOVIELENS_URLS", course.url)
        ds = ml.load_movielens("ml-100k", cache_dir=tmp_path)
        assert ds.n_items == 6 and server.requests == [] and course.requests == ["/ml-100k.zip"]
        course.files["ml-100k.zip"] = (server.body[:50], "good")
        with pytest.raises(ml.DownloadError, match="discarded"):
            ml.download_movielens("ml-100k", cache_dir=tmp_path / "other")
        assert cache_files(tmp_path / "other") == []
    finally:
        course.close()


# ------------------------------------------------------------------------------ real files
def real(name: str):
    if not REAL_DIR or not Path(REAL_DIR).is_dir():
        pytest.skip("set PERSO_KIT_DATA_DIR to a folder with the real MovieLens files")
    root = Path(REAL_DIR)
    if not ((root / name).is_dir() or (root / f"{name}.zip").is_file()):
        pytest.skip(f"no {name} in {root}")
    return ml.load_movielens(name, download=False)


@pytest.mark.movielens
def test_real_ml100k():
    ds = real("ml-100k")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100_000)
    it = ds.items.set_index("item_id")
    assert it.loc[1, "title"] == "Toy Story (1995)" and it.loc[1, "year"] == 1995
    assert it.loc[543, "title"] == "Misérables, Les (1995)"               # Latin-1
    assert it.loc[267, "genres"] == () and pd.isna(it.loc[267, "year"])   # the "unknown" movie
    assert ds.interactions["rating"].between(1, 5).all()
    assert ds.users["occupation"].nunique() == 21


@pytest.mark.movielens
def test_real_ml_latest_small():
    ds = real("ml-latest-small")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (610, 9742, 100_836)
    assert ds.interactions["item_id"].nunique() == 9724
    it = ds.items.set_index("item_id")
    assert it.loc[29, "title"] == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
    assert it.loc[171749, "year"] == 2006 and it.loc[171749, "genres"] == ()
    assert it["year"].isna().sum() == 12
    assert sorted(set(ds.interactions["rating"].unique())) == [0.5 * k for k in range(1, 11)]


# ------------------------------------------------------------------------------ bad files
def copy_release(name: str, tmp_path: Path) -> Path:
    """A writable copy of a fixture release, in ``<tmp>/data/<name>/``; returns ``<tmp>/data``."""
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / name, data / name)
    return data


def load_bad(name, data):
    return ml.load_movielens(name, data_dir=data, cache_dir=data.parent / "cache",
                             download=False)


@pytest.mark.parametrize("name, file, change, expected", [
    ("ml-100k", "u.data", lambda t: t.replace("\n", "\n1\t2\t3\n", 1),
     r"u\.data, line 2: 3 fields where 4 belong: '1\\t2\\t3'"),
    ("ml-100k", "u.data", lambda t: "196\t242\tfive\t881250949\n" + t,
     r"u\.data, line 1: field 3 \('five'\) is not a number"),
    ("ml-100k", "u.user", lambda t: t + "x|y\n", r"u\.user, line \d+: 2 fields where 5 belong"),
    ("ml-1m", "movies.dat", lambda t: t + "a title without an id\n",
     r"movies\.dat, line \d+: not 'id::title::genres'"),
    ("ml-1m", "ratings.dat", lambda t: "1::2::3\n" + t,
     r"ratings\.dat, line 1: 5 fields where 7 belong"),
    ("ml-latest-small", "ratings.csv", lambda t: t + "1,2,not-a-rating,5\n",
     r"ratings\.csv, line \d+: field 3 \('not-a-rating'\) is not a number"),
    ("ml-100k", "u.data", lambda t: "", r"u\.data is empty"),
])
def test_a_malformed_file_names_the_file_the_line_and_the_fix(name, file, change, expected,
                                                               tmp_path):
    data = copy_release(name, tmp_path)
    path = data / name / file
    text = path.read_text(encoding="latin-1")
    path.write_text(change(text), encoding="latin-1")
    with pytest.raises(ml.DataFileError, match=expected) as err:
        load_bad(name, data)
    assert str(path) in str(err.value) and f"{name}.zip (MD5 " in str(err.value)
    assert path.exists()  # the user's file is never touched


def test_a_utf8_u_item_is_detected_as_well_as_the_published_latin1(tmp_path):
    latin = load_bad("ml-100k", copy_release("ml-100k", tmp_path / "latin"))
    data = copy_release("ml-100k", tmp_path / "utf8")
    item = data / "ml-100k" / "u.item"
    item.write_text(item.read_text(encoding="latin-1"), encoding="utf-8")
    assert item.read_bytes() != (FIXTURES / "ml-100k" / "u.item").read_bytes()
    utf8 = load_bad("ml-100k", data)
    title = latin.items.set_index("item_id").loc[20, "title"]
    assert title == "Café Lumière, Le (Lumière du café) (1996)"
    assert utf8.items.set_index("item_id").loc[20, "title"] == title   # no "CafÃ©"
    pd.testing.assert_frame_equal(utf8.items, latin.items)


def test_a_latin1_file_in_a_utf8_release_names_the_line(tmp_path):
    data = copy_release("ml-latest-small", tmp_path)
    movies = data / "ml-latest-small" / "movies.csv"
    text = movies.read_text(encoding="utf-8")
    assert not text.isascii()
    latin = text.encode("latin-1", errors="replace")
    movies.write_bytes(latin)
    bad_line = next(n for n, line in enumerate(latin.splitlines(), 1) if not line.isascii())
    with pytest.raises(ml.DataFileError, match=rf"movies\.csv, line {bad_line}: not UTF-8 text "
                                               r"\(byte 0x..\).*save the file as UTF-8"):
        load_bad("ml-latest-small", data)


def test_truncated_and_corrupt_zips_name_the_file_and_are_kept(tmp_path):
    zipped = make_zip("ml-100k", tmp_path)
    body = zipped.read_bytes()
    data = tmp_path / "data"
    data.mkdir()
    (data / "ml-100k.zip").write_bytes(body[: len(body) // 2])                # truncated
    with pytest.warns(UserWarning, match="MD5 differs"), \
            pytest.raises(ml.DataFileError, match=r"ml-100k\.zip is not a complete zip file"):
        load_bad("ml-100k", data)
    # a flipped byte inside a compressed member: the zip opens, the member does not
    with zipfile.ZipFile(zipped) as z:
        info = z.getinfo("ml-100k/u.data")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 5
    (data / "ml-100k.zip").write_bytes(body[:start] + bytes([body[start] ^ 0xFF])
                                       + body[start + 1:])
    with pytest.warns(UserWarning, match="MD5 differs"), \
            pytest.raises(ml.DataFileError, match=r"ml-100k\.zip:ml-100k/u\.data is damaged "
                                                  r"inside the zip.*Fix: replace it"):
        load_bad("ml-100k", data)
    assert (data / "ml-100k.zip").stat().st_size == len(body)   # kept


def test_an_empty_data_folder_and_no_network_say_both(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(ml, "BASE_URL", f"http://127.0.0.1:{port}/")
    monkeypatch.setenv("PERSO_KIT_DATA_DIR", str(empty))
    with pytest.raises(ml.DownloadError, match=rf"{empty} \(PERSO_KIT_DATA_DIR or data_dir\) "
                                               r"holds no ml-100k files.*no network"):
        ml.load_movielens("ml-100k", cache_dir=tmp_path / "cache")


def test_fetch_offline_prints_one_clean_message(tmp_path, monkeypatch, capsys):
    from perso_kit.__main__ import main
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(ml, "BASE_URL", f"http://127.0.0.1:{port}/")
    monkeypatch.setenv("PERSO_KIT_CACHE_DIR", str(tmp_path))
    assert main(["fetch", "ml-100k"]) == 2
    out = capsys.readouterr()
    assert out.err.startswith("error: could not reach") and "Traceback" not in out.err + out.out
    assert "PERSO_KIT_DATA_DIR" in out.err and out.out == ""


# ------------------------------------------------------------------------------ ml-20m, ml-25m
LARGE_RATINGS = ("userId,movieId,rating,timestamp\n"
                 "1,296,5.0,1147880044\n1,306,3.5,1147868817\n2,296,0.5,789652009\n"
                 "162541,209171,3.0,1574327703\n")
LARGE_MOVIES = ("movieId,title,genres\n"
                "296,Pulp Fiction (1994),Comedy|Crime|Drama|Thriller\n"
                '306,"Three Colors: Red (Trois couleurs: Rouge) (1994)",Drama\n'
                "209171,Women of Devil's Island (1962),Action|Adventure|Drama\n"
                "209169,A Girl Thing (2001),(no genres listed)\n")
LARGE_LINKS = "movieId,imdbId,tmdbId\n296,0110912,680\n306,0111495,110\n"


def large_release(name: str, folder: Path, ratings: str = LARGE_RATINGS,
                  as_zip: bool = True) -> Path:
    """A tiny ml-20m/ml-25m with GroupLens's layout (``<name>/ratings.csv`` ...), zipped or
    extracted in ``folder``; the extra files of the real zips (tags, genome) are there too."""
    files = {"ratings.csv": ratings, "movies.csv": LARGE_MOVIES, "links.csv": LARGE_LINKS,
             "tags.csv": "userId,movieId,tag,timestamp\n1,296,cult,1147880044\n",
             "genome-scores.csv": "movieId,tagId,relevance\n296,1,0.25\n",
             "genome-tags.csv": "tagId,tag\n1,007\n", "README.txt": "Summary\n"}
    folder.mkdir(parents=True, exist_ok=True)
    if not as_zip:
        for file, text in files.items():
            (folder / name).mkdir(exist_ok=True)
            (folder / name / file).write_text(text, encoding="utf-8")
        return folder / name
    path = folder / f"{name}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{name}/", "")
        for file, text in files.items():
            z.writestr(f"{name}/{file}", text)
    return path


def test_the_large_releases_have_grouplens_md5s_and_both_sources(monkeypatch):
    assert ml.RELEASES["ml-20m"][0] == "cd245b17a1ae2cc31bb14903e1204af3"
    assert ml.RELEASES["ml-25m"][0] == "6b51fb2759a8657d3bfcbfc42b592ada"
    monkeypatch.setattr(ml, "MIRRORS", (ml.MIRROR_URL,))     # as shipped (off in other tests)
    for name in ("ml-20m", "ml-25m"):
        assert ml.download_urls(name) == [
            f"https://files.grouplens.org/datasets/movielens/{name}.zip",
            f"https://web.archive.org/web/2024id_/https://files.grouplens.org/datasets/"
            f"movielens/{name}.zip"]
    assert "ml-25m" in __import__("perso_kit.data", fromlist=["DATASETS"]).DATASETS


@pytest.mark.parametrize("name", ["ml-20m", "ml-25m"])
@pytest.mark.parametrize("as_zip", [True, False])
def test_a_large_release_loads_by_name_with_lean_columns(name, as_zip, tmp_path):
    large_release(name, tmp_path / "data", as_zip=as_zip)
    with pytest.warns(UserWarning, match="MD5 differs") if as_zip else _no_warning():
        ds = load_dataset(name, data_dir=tmp_path / "data", cache_dir=tmp_path / "c",
                          download=False)
    inter = ds.interactions
    assert inter.values.tolist() == [[1, 296, 5.0, 1147880044], [1, 306, 3.5, 1147868817],
                                     [2, 296, 0.5, 789652009], [162541, 209171, 3.0, 1574327703]]
    assert [str(t) for t in inter.dtypes] == ["int32", "int32", "float32", "int64"]
    it = ds.items.set_index("item_id")
    assert it.index.tolist() == [296, 306, 209171, 209169]
    assert it.loc[306, "title"] == "Three Colors: Red (Trois couleurs: Rouge) (1994)"
    assert it.loc[306, "year"] == 1994 and it.loc[209169, "genres"] == ()
    assert it.loc[296, "imdb_url"] == "https://www.imdb.com/title/tt0110912/"
    assert ds.users["user_id"].tolist() == [1, 2, 162541]
    assert ds.meta["rating_scale"] == (0.5, 5.0) and ds.name == name
    assert ds.meta["url"] == f"https://files.grouplens.org/datasets/movielens/{name}.zip"


class _no_warning:
    def __enter__(self):
        self.w = warnings.catch_warnings()
        self.w.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        self.w.__exit__(*exc)


@pytest.mark.parametrize("change, expected", [
    (lambda t: t + "3,4,not-a-rating,5\n",
     r"ratings\.csv, line 6: field 3 \('not-a-rating'\) is not a number"),
    (lambda t: t + "3,4,4.0\n", r"ratings\.csv, line 6: 3 fields where 4 belong"),
    (lambda t: t.replace("\n", "\n7,8,4.0,5,extra\n", 1),
     r"ratings\.csv, line 2: 5 fields where 4 belong: '7,8,4.0,5,extra'"),
    (lambda t: t + "3,4,,5\n", r"ratings\.csv, line 6: field 3 \(''\) is not a number"),
    (lambda t: t.replace("userId", "user"), r"ratings\.csv, line 1: the header is "
                                            r"'user,movieId,rating,timestamp'"),
    (lambda t: "", r"ratings\.csv is empty"),
])
@pytest.mark.parametrize("as_zip", [True, False])
def test_a_malformed_large_ratings_file_names_file_and_line(change, expected, as_zip, tmp_path):
    where = large_release("ml-25m", tmp_path / "data", ratings=change(LARGE_RATINGS),
                          as_zip=as_zip)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)            # the zip's MD5 differs
        with pytest.raises(ml.DataFileError, match=expected) as err:
            ml.load_movielens("ml-25m", data_dir=tmp_path / "data", cache_dir=tmp_path / "c",
                              download=False)
    msg = str(err.value)
    assert (f"{where}:ml-25m/ratings.csv" if as_zip else str(where / "ratings.csv")) in msg
    assert "ml-25m.zip (MD5 6b51fb2759a8657d3bfcbfc42b592ada)" in msg


def test_a_damaged_member_of_a_large_zip_is_named(tmp_path):
    path = large_release("ml-20m", tmp_path / "data", ratings=LARGE_RATINGS * 400)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("ml-20m/ratings.csv")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for k in range(start + 20, start + 60):                     # inside the compressed bytes
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ml.DataFileError,
                           match=r"ml-20m\.zip:ml-20m/ratings\.csv is damaged inside") as err:
            ml.load_movielens("ml-20m", data_dir=tmp_path / "data", cache_dir=tmp_path / "c",
                              download=False)
    assert "cd245b17a1ae2cc31bb14903e1204af3" in str(err.value)


def test_a_large_release_downloads_checked_like_the_others(tmp_path, monkeypatch):
    """The download path is the same: a good file is kept, a wrong MD5 leaves nothing."""
    srv = Server()
    try:
        body = large_release("ml-25m", tmp_path / "src").read_bytes()
        srv.files["ml-25m.zip"] = (body, "good")
        monkeypatch.setattr(ml, "BASE_URL", srv.url)
        monkeypatch.setitem(ml.RELEASES, "ml-25m", (hashlib.md5(body).hexdigest(),
                                                    ml.RELEASES["ml-25m"][1]))
        ds = ml.load_movielens("ml-25m", cache_dir=tmp_path / "good")
        assert ds.n_interactions == 4 and srv.requests == ["/ml-25m.zip"]
        assert cache_files(tmp_path / "good") == ["ml-25m.zip"]
        monkeypatch.setitem(ml.RELEASES, "ml-25m", ("6b51fb2759a8657d3bfcbfc42b592ada",
                                                    ml.RELEASES["ml-25m"][1]))
        with pytest.raises(ml.DownloadError, match="expected 6b51fb2759a8657d3bfcbfc42b592ada"):
            ml.load_movielens("ml-25m", cache_dir=tmp_path / "bad")
        assert cache_files(tmp_path / "bad") == []
    finally:
        srv.close()


@pytest.mark.movielens
@pytest.mark.parametrize("name, shape", [("ml-20m", (138_493, 27_278, 20_000_263)),
                                         ("ml-25m", (162_541, 62_423, 25_000_095))])
def test_real_large_release(name, shape):
    ds = real(name)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == shape
    assert ds.interactions["rating"].between(0.5, 5).all()
