"""Real MovieLens data sets (GroupLens): find, download, verify and parse them into a Dataset.

Five releases are supported, in three file formats:

===================  =========================================================================
``ml-100k``          943 users, 1,682 movies, 100,000 ratings 1-5 (1997-98). Tab-separated
                     ``u.data``; pipe-separated, Latin-1 ``u.item`` with 19 genre flags;
                     ``u.user`` with age, gender, occupation and zip code.
``ml-1m``            6,040 users, 3,883 movies (3,706 rated), 1,000,209 ratings 1-5 (2000).
                     ``::``-separated ``ratings.dat``, ``movies.dat`` (Latin-1), ``users.dat``.
``ml-latest-small``  610 users, 9,742 movies (9,724 rated), 100,836 ratings 0.5-5 (1996-2018).
                     CSV ``ratings.csv``, ``movies.csv`` (UTF-8), ``links.csv`` (IMDb/TMDB ids).
``ml-20m``           138,493 users, 27,278 movies (26,744 rated), 20,000,263 ratings 0.5-5
                     (1995-2015). The same CSV files as ml-latest-small (tags and the tag
                     genome are in the zip too; they are not read).
``ml-25m``           162,541 users, 62,423 movies (59,047 rated), 25,000,095 ratings 0.5-5
                     (1995-2019). The same CSV files (a 262 MB zip, 261,978,986 bytes).
===================  =========================================================================

The two large releases are parsed lean: ``ratings.csv`` is streamed straight from the zip into
pandas' C parser with 32-bit ids and ratings (about 20 bytes a rating in the table: some 500 MB
for ml-25m, never the whole text in memory). Measured on a synthetic ``ratings.csv`` of ml-25m's
size (25,000,095 lines, 688 MB, in an extracted folder; ``benchmarks/movielens_parse.py``):
21 CPU seconds and a peak of 2.2 GB for the whole process; a laptop with 8 GB holds it, though not every model (see notebook 13).

Where the files come from, first match wins:

1. ``data_dir`` (or ``PERSO_KIT_DATA_DIR``): a folder holding the extracted folder
   (``ml-100k/u.data`` ...) or the zip (``ml-100k.zip``); the folder may also be the extracted
   folder itself.
2. The cache, ``<cache_dir>/movielens/``: a zip downloaded earlier (or put there by hand).
3. A download of ``https://files.grouplens.org/datasets/movielens/<name>.zip`` into the cache,
   once. The file is written under a temporary name and renamed only after its MD5 matches the
   one GroupLens publishes, so an interrupted or corrupt download never leaves a file that a
   later run would trust. When GroupLens cannot be reached or fails, the same file is asked of
   an independent mirror, :data:`MIRROR_URL` (the Internet Archive's copy of GroupLens's files),
   and accepted only with the same MD5: a mirror can be down or wrong, never trusted.
   ``PERSO_KIT_MOVIELENS_URLS`` replaces both with your own list of folders (a course server, a
   USB stick served over HTTP), tried in order, each checked against the same MD5.

A zip whose MD5 differs from GroupLens's is never deleted: one that reads (a copy put there by
hand, say) is used with a warning; one that cannot be read is renamed
``<name>.zip.not-grouplens-<md5>`` (kept, and reported) and the release downloaded again, or,
with no download, reported where it lies.

Zips are read directly, without extracting them.

**Bad files.** A malformed line, a truncated or corrupt zip and a file that is not text in the
expected encoding raise :class:`DataFileError`: one message naming the file, the line (where there
is one) and the fix. Encodings are detected: ml-100k and ml-1m are published in Latin-1, but
UTF-8 copies circulate, so a file that is valid UTF-8 with non-ASCII characters is read as UTF-8
(Latin-1 text with accents is practically never valid UTF-8); the CSV releases are UTF-8 only.

Choices the loaders make, the same for every release:

* ``items`` is the whole catalog, rated or not (ml-1m and ml-latest-small list movies nobody
  rated).
* ``year`` is the film's year, taken from the title (``"Toy Story (1995)"``; for a series
  ``"(2006–2007)"`` the first year); ml-100k's ``release_date`` is often a later US or video
  release (*Taxi Driver (1976)* has 1996), so it is used only when the title has no year.
  Titles are kept as published, without surrounding spaces.
* ``genres`` is a tuple of the source's genre names (ml-100k and ml-1m say ``"Children's"``,
  ml-latest-small ``"Children"``). A movie without a genre has ``()``: ml-100k's genre
  ``"unknown"`` and ml-latest-small's ``"(no genres listed)"`` are dropped.
* ``description`` is ``""``: MovieLens has no plot text.
* ``users``: ml-100k has ``age`` (years), ``gender``, ``occupation``, ``zip`` (a string: zip codes
  keep leading zeros and some are Canadian); ml-1m has ``gender``, ``age`` (the lower bound of an
  age group: 1 means under 18, 56 means 56 and over), ``occupation`` (named from the README's
  codes) and ``zip``; the CSV releases have no user table, so ``users`` are the users who
  rated.
* ml-20m and ml-25m keep ``user_id`` and ``item_id`` as 32-bit integers (the others: 64-bit).

MovieLens may be used for research and teaching but not redistributed; cite F. Maxwell Harper
and Joseph A. Konstan, "The MovieLens Datasets: History and Context", ACM TiiS 5(4), 2015.

Example
-------
>>> from perso_kit.data.movielens import load_movielens
>>> ds = load_movielens("ml-100k")                          # doctest: +SKIP
>>> ds.n_users, ds.n_items, ds.n_interactions              # doctest: +SKIP
(943, 1682, 100000)
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import IO

import httpx
import numpy as np
import pandas as pd
from filelock import FileLock
from tqdm.auto import tqdm

from .. import config
from .dataset import Dataset, make_dataset

BASE_URL = "https://files.grouplens.org/datasets/movielens/"
#: The second, independent source: the Internet Archive's Wayback Machine, which archived
#: GroupLens's zips. ``2024id_`` asks for the capture nearest to 2024 in its raw form (the
#: original bytes, no archive banner). Whatever it serves is accepted only if its MD5 is the one
#: in :data:`RELEASES`, so a changed or damaged copy is refused like any other bad download.
MIRROR_URL = ("https://web.archive.org/web/2024id_/"
              "https://files.grouplens.org/datasets/movielens/")
#: The folders tried after :data:`BASE_URL`, in order.
MIRRORS: tuple[str, ...] = (MIRROR_URL,)

#: name -> (MD5 of the zip GroupLens publishes, files that must be present)
RELEASES = {
    "ml-100k": ("0e33842e24a9c977be4e0107933c0723", ("u.data", "u.item", "u.user")),
    "ml-1m": ("c4d9eecfca2ab87c1945afe126590906", ("ratings.dat", "movies.dat", "users.dat")),
    "ml-latest-small": ("31a303aabbc519bd33d025e44d6c2570", ("ratings.csv", "movies.csv")),
    "ml-20m": ("cd245b17a1ae2cc31bb14903e1204af3", ("ratings.csv", "movies.csv")),
    "ml-25m": ("6b51fb2759a8657d3bfcbfc42b592ada", ("ratings.csv", "movies.csv")),
}
#: the releases whose ratings are streamed into 32-bit columns (see the module docstring)
LARGE = ("ml-20m", "ml-25m")
#: the releases rated in half stars
HALF_STARS = ("ml-latest-small", "ml-20m", "ml-25m")

ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western"]

ML1M_OCCUPATIONS = ["other", "academic/educator", "artist", "clerical/admin",
                    "college/grad student", "customer service", "doctor/health care",
                    "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
                    "programmer", "retired", "sales/marketing", "scientist", "self-employed",
                    "technician/engineer", "tradesman/craftsman", "unemployed", "writer"]

DESCRIPTIONS = {
    "ml-100k": "MovieLens 100K (GroupLens Research): ratings 1-5 that 943 users gave 1,682 "
               "movies on movielens.org in 1997-98, with the users' age, gender and occupation.",
    "ml-1m": "MovieLens 1M (GroupLens Research): about one million ratings 1-5 that 6,040 users "
             "gave movies on movielens.org in 2000, with the users' age group and occupation.",
    "ml-latest-small": "MovieLens latest-small (GroupLens Research): ratings 0.5-5 that 610 users "
                       "gave 9,742 movies on movielens.org between 1996 and 2018.",
    "ml-20m": "MovieLens 20M (GroupLens Research): 20,000,263 ratings 0.5-5 that 138,493 users "
              "gave 26,744 movies on movielens.org between 1995 and 2015.",
    "ml-25m": "MovieLens 25M (GroupLens Research): 25,000,095 ratings 0.5-5 that 162,541 users "
              "gave 59,047 movies on movielens.org between 1995 and 2019.",
}

_YEAR = r".*\((\d{4})(?:\s*[-–]\s*\d{0,4})?\)"  # the last "(1995)" or "(2006–2007)" in a title
_INTERACTION_DTYPES = {"user_id": np.int64, "item_id": np.int64, "rating": np.float32,
                       "timestamp": np.int64}


class DownloadError(RuntimeError):
    """A MovieLens download failed; the message says why and how to place the file by hand."""


class DataFileError(ValueError):
    """A MovieLens file that cannot be read; the message names the file, the line and the fix."""


# ------------------------------------------------------------------------------ public API
def load_movielens(name: str, data_dir=None, cache_dir=None, download: bool = True) -> Dataset:
    """Load a MovieLens release as a :class:`~perso_kit.data.dataset.Dataset`.

    Parameters
    ----------
    name : {"ml-100k", "ml-1m", "ml-latest-small", "ml-20m", "ml-25m"}
        Which release (the last two are large: see the module docstring).
    data_dir : str or Path, optional
        A folder holding the extracted folder or the zip; defaults to ``PERSO_KIT_DATA_DIR``.
    cache_dir : str or Path, optional
        The kit's cache folder (the zip goes to its ``movielens/`` subfolder); defaults to
        :func:`perso_kit.config.cache_dir`.
    download : bool
        Download the zip from GroupLens when no copy is found (the default). With ``False`` a
        missing copy raises ``FileNotFoundError``.

    Returns
    -------
    Dataset
        ``interactions`` (user_id, item_id, rating, timestamp), ``items`` (the whole catalog) and
        ``users``; ``meta`` holds the source path, the URL and the rating scale.

    Example
    -------
    >>> ds = load_movielens("ml-latest-small")                    # doctest: +SKIP
    >>> ds.items.loc[0, ["title", "year", "genres"]].tolist()     # doctest: +SKIP
    ['Toy Story (1995)', 1995, ('Adventure', 'Animation', 'Children', 'Comedy', 'Fantasy')]
    """
    _check_name(name)
    source = _Source(find_movielens(name, data_dir, cache_dir, download), name)
    with source:
        if name == "ml-100k":
            interactions, items, users = _parse_100k(source)
        elif name == "ml-1m":
            interactions, items, users = _parse_1m(source)
        else:
            interactions, items, users = _parse_latest(source, lean=name in LARGE)
    scale = (0.5, 5.0) if name in HALF_STARS else (1.0, 5.0)
    meta = {"source": str(source.path), "url": f"{BASE_URL}{name}.zip", "rating_scale": scale}
    return make_dataset(name, interactions, items, users, description=DESCRIPTIONS[name],
                        meta=meta)


def find_movielens(name: str, data_dir=None, cache_dir=None, download: bool = True) -> Path:
    """Path of a folder or zip holding ``name``'s files, downloading the zip if needed.

    Looks in ``data_dir`` (or ``PERSO_KIT_DATA_DIR``), then in the cache; see the module
    docstring for the order and for what happens to a corrupt cached zip.

    >>> find_movielens("ml-100k", download=False)                 # doctest: +SKIP
    PosixPath('/home/me/data/ml-100k')
    """
    _check_name(name)
    md5, required = RELEASES[name]
    looked = []
    folder = Path(data_dir).expanduser() if data_dir is not None else config.data_dir()
    if folder is not None:
        for candidate in (folder / name, folder):
            looked.append(candidate / required[0])
            if all((candidate / f).is_file() for f in required):
                return candidate
        zip_path = folder / f"{name}.zip"
        looked.append(zip_path)
        if zip_path.is_file():
            if _md5(zip_path) != md5:
                warnings.warn(f"{zip_path} is not the file GroupLens publishes (MD5 differs from "
                              f"{md5}); reading it anyway, numbers may differ from the kit's.",
                              stacklevel=2)
            return zip_path

    cached = _cache_folder(cache_dir) / f"{name}.zip"
    looked.append(cached)
    if cached.is_file():
        found = _md5(cached)
        if found == md5:
            return cached
        problem = _zip_problem(cached, required)
        if problem is None:   # a copy put there by hand, which reads: kept and used
            warnings.warn(f"{cached} is not the file GroupLens publishes (MD5 {found}, expected "
                          f"{md5}); reading it anyway, numbers may differ from the kit's.",
                          stacklevel=2)
            return cached
        if not download:
            raise DataFileError(f"{cached} cannot be read ({problem}; MD5 {found}, expected "
                                f"{md5}); it was left where it is.\n{_by_hand(name, cached.parent)}")
        aside = _set_aside(cached, found)
        warnings.warn(f"{cached} was corrupt or incomplete ({problem}; MD5 {found}, expected "
                      f"{md5}); kept it as {aside.name} and downloading it again.", stacklevel=2)
    if download:
        try:
            return download_movielens(name, cache_dir)
        except DownloadError as e:
            if folder is not None:
                raise DownloadError(f"{folder} (PERSO_KIT_DATA_DIR or data_dir) holds no {name} "
                                    f"files ({', '.join(required)} or {name}.zip), and {e}") \
                    from None
            raise
    raise FileNotFoundError(f"no copy of {name} found (looked for {', '.join(map(str, looked))})"
                            f" and download=False.\n{_by_hand(name, cached.parent)}")


def _zip_problem(path: Path, required) -> str | None:
    """Why ``path`` is not a readable zip of a release (None when it is one)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = {m.rsplit("/", 1)[-1] for m in z.namelist()}
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        return f"not a complete zip file: {e}"
    if bad is not None:
        return f"{bad} is damaged inside the zip"
    missing = [f for f in required if f not in names]
    return f"it holds no {', '.join(missing)}" if missing else None


def _set_aside(path: Path, md5: str) -> Path:
    """Rename a zip that is not GroupLens's out of the way (kept, never deleted)."""
    aside = path.with_name(f"{path.name}.not-grouplens-{md5[:12]}")
    os.replace(path, aside)
    return aside


def download_urls(name: str) -> list[str]:
    """The URLs ``<name>.zip`` is downloaded from, tried in order: GroupLens, then its mirror;
    or the folders listed in ``PERSO_KIT_MOVIELENS_URLS`` (separated by spaces or commas).

    >>> download_urls("ml-100k")[0]
    'https://files.grouplens.org/datasets/movielens/ml-100k.zip'
    >>> len(download_urls("ml-100k"))
    2
    """
    _check_name(name)
    listed = os.environ.get("PERSO_KIT_MOVIELENS_URLS", "").replace(",", " ").split()
    folders = listed or [BASE_URL, *MIRRORS]
    return [f"{f if f.endswith('/') else f + '/'}{name}.zip" for f in folders]


def download_movielens(name: str, cache_dir=None) -> Path:
    """Download ``<name>.zip`` into the cache, verify its MD5 and return its path.

    Each URL of :func:`download_urls` is tried in turn (GroupLens first, then its mirror) until
    one serves a file with GroupLens's MD5. The bytes go to a hidden temporary file beside the
    target and are renamed only when the MD5 matches; a wrong or broken file is discarded and the
    next source tried. When no source gives the right file, nothing is left behind and
    :class:`DownloadError` names every URL tried, what each did, and what to do.
    A zip already in the cache with the right MD5 is returned without downloading.

    >>> download_movielens("ml-100k")                             # doctest: +SKIP
    PosixPath('.../data/cache/movielens/ml-100k.zip')
    """
    _check_name(name)
    md5 = RELEASES[name][0]
    folder = _cache_folder(cache_dir)
    target = folder / f"{name}.zip"
    urls = download_urls(name)
    with FileLock(str(folder / f".{name}.zip.lock")):      # one download at a time per file
        if target.is_file():
            found = _md5(target)
            if found == md5:
                return target
            aside = _set_aside(target, found)   # someone's file: kept
            warnings.warn(f"{target} is not the file GroupLens publishes (MD5 {found}); kept it "
                          f"as {aside.name}", stacklevel=2)
        for stale in folder.glob(f".{name}.zip.*.part"):    # left by a killed process
            stale.unlink(missing_ok=True)
        failures: list[tuple[str, str, str]] = []           # (url, kind, what happened)
        for url in urls:
            problem = _download_one(url, md5, folder, name, target)
            if problem is None:
                if failures:
                    warnings.warn(f"{failures[0][0]} failed ({failures[0][2]}); {name}.zip came "
                                  f"from {url} instead, with GroupLens's MD5 {md5}.",
                                  stacklevel=2)
                return target
            failures.append((url, *problem))
    raise DownloadError(_failure_message(name, md5, failures, folder))


def _download_one(url: str, md5: str, folder: Path, name: str, target: Path
                  ) -> tuple[str, str] | None:
    """Download ``url`` to ``target`` if its MD5 is ``md5``: None, else ``(kind, what
    happened)``; on failure nothing is left in ``folder``."""
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{name}.zip.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest, size = _fetch(url, out)
            out.flush()
            os.fsync(out.fileno())
        if digest != md5:
            return "checksum", (f"the file downloaded from {url} ({size:,} bytes) has MD5 "
                                f"{digest}, expected {md5}; it was discarded")
        os.replace(tmp, target)
        return None
    except httpx.HTTPStatusError as e:
        return "http", f"{url} answered {e.response.status_code}"
    except (httpx.ConnectError, httpx.ConnectTimeout) as e:
        return "connect", f"could not reach {url} (no network?): {e}"
    except (httpx.HTTPError, _Incomplete) as e:
        return "interrupted", f"the download of {url} was interrupted ({e})"
    finally:
        tmp.unlink(missing_ok=True)


def _failure_message(name: str, md5: str, failures, folder: Path) -> str:
    """One message for a download that no source could give: every URL and what it did."""
    kinds = {kind for _, kind, _ in failures}
    if len(failures) == 1:
        head = failures[0][2]
    elif kinds == {"connect"}:
        urls = [u for u, _, _ in failures]
        head = (f"could not reach {' nor '.join(urls)} (no network?):\n"   # "- <url>: <error>"
                + "\n".join(f"  - {u}:{what.split('(no network?):', 1)[-1]}"
                             for u, _, what in failures))
    else:
        head = (f"no source gave {name}.zip as GroupLens publishes it (MD5 {md5}):\n"
                + "\n".join(f"  - {what}" for _, _, what in failures))
    tail = "run again" if kinds <= {"interrupted", "connect"} and "interrupted" in kinds else ""
    return (f"{head}\nNothing was saved{'; ' + tail if tail else ''}.\n"
            f"{_by_hand(name, folder)}")


# ------------------------------------------------------------------------------ files
class _Incomplete(Exception):
    pass


def _fetch(url: str, out: IO[bytes]) -> tuple[str, int]:
    """Stream ``url`` into ``out`` with a progress bar; return (MD5 hex digest, bytes written)."""
    md5, size = hashlib.md5(), 0
    # identity: the MD5 is of the file itself, not of a compressed transfer of it
    with httpx.stream("GET", url, follow_redirects=True, timeout=30.0,
                      headers={"Accept-Encoding": "identity"}) as response:
        response.raise_for_status()
        total = int(response.headers.get("content-length", 0)) or None
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=f"downloading {url.rsplit('/', 1)[-1]}") as bar:
            for chunk in response.iter_bytes(1 << 16):
                out.write(chunk)
                md5.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
    if total is not None and size != total:
        raise _Incomplete(f"got {size:,} of {total:,} bytes")
    return md5.hexdigest(), size


def _by_hand(name: str, cache_folder: Path) -> str:
    return (f"To install it by hand, download {BASE_URL}{name}.zip (MD5 {RELEASES[name][0]}) "
            f"where you have network access, then either put the zip in {cache_folder}/ or put "
            f"the zip or its extracted folder in a folder of your choice and set "
            f"PERSO_KIT_DATA_DIR to that folder.")


def _check_name(name: str) -> None:
    if name not in RELEASES:
        raise ValueError(f"unknown MovieLens release {name!r}; choose one of {sorted(RELEASES)}")


def _cache_folder(cache_dir) -> Path:
    folder = (Path(cache_dir).expanduser() if cache_dir is not None else config.cache_dir())
    folder = folder / "movielens"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Source:
    """Opens a release's files by name, from an extracted folder or straight from the zip, and
    turns what can go wrong into a :class:`DataFileError` naming the file and the fix."""

    def __init__(self, path: Path, name: str = ""):
        self.path = path
        self.name = name or path.name.removesuffix(".zip")
        self.zip = None
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise DataFileError(f"{path} is not a complete zip file ({e}). "
                                    f"{self.fix()}") from None
            self.members = {m.rsplit("/", 1)[-1]: m for m in self.zip.namelist()
                            if not m.endswith("/") and "__MACOSX" not in m}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.zip is not None:
            self.zip.close()

    def fix(self) -> str:
        """What to do about a bad file of this release."""
        if self.name in RELEASES:
            return (f"Fix: replace it with the file GroupLens publishes: {BASE_URL}{self.name}"
                    f".zip (MD5 {RELEASES[self.name][0]}), as a zip or extracted.")
        return "Fix: replace it with the file GroupLens publishes."

    def where(self, file: str) -> str:
        """The file as a reader would find it: ``<zip>:<member>`` or its path."""
        return f"{self.path}:{self.members.get(file, file)}" if self.zip is not None \
            else str(self.path / file)

    def has(self, file: str) -> bool:
        return file in self.members if self.zip is not None else (self.path / file).is_file()

    def read_bytes(self, file: str) -> bytes:
        if self.zip is None:
            try:
                return (self.path / file).read_bytes()
            except FileNotFoundError:
                raise DataFileError(f"{self.path} has no {file}. {self.fix()}") from None
        if file not in self.members:
            raise DataFileError(f"{self.path} has no {file}; is it the right MovieLens zip? "
                                f"{self.fix()}")
        try:
            return self.zip.read(self.members[file])
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
            raise DataFileError(f"{self.where(file)} is damaged inside the zip ({e}). "
                                f"{self.fix()}") from None

    def text(self, file: str, encoding: str = "latin-1") -> str:
        """The file as text. ``encoding`` is the one GroupLens publishes; a Latin-1 file that is
        valid UTF-8 with non-ASCII characters is a UTF-8 copy, read as such."""
        data = self.read_bytes(file)
        try:
            text = data.decode("utf-8")
            if encoding == "utf-8" or not text.isascii():
                return text
        except UnicodeDecodeError as e:
            if encoding == "utf-8":
                line = data[:e.start].count(b"\n") + 1
                raise DataFileError(f"{self.where(file)}, line {line}: not UTF-8 text (byte "
                                    f"0x{data[e.start]:02x}); this release is UTF-8. Fix: save "
                                    f"the file as UTF-8, or {self.fix()[5:]}") from None
        return data.decode(encoding)

    def stream(self, file: str) -> IO[bytes]:
        """The file's bytes as a stream (from the zip, decompressed as it is read)."""
        if self.zip is None:
            try:
                return open(self.path / file, "rb")
            except FileNotFoundError:
                raise DataFileError(f"{self.path} has no {file}. {self.fix()}") from None
        if file not in self.members:
            raise DataFileError(f"{self.path} has no {file}; is it the right MovieLens zip? "
                                f"{self.fix()}")
        return self.zip.open(self.members[file])

    def lines(self, file: str):
        """The file's lines, streamed as UTF-8 text (undecodable bytes replaced)."""
        with self.stream(file) as raw:
            yield from io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")

    def open(self, file: str, encoding: str = "latin-1") -> io.StringIO:
        return io.StringIO(self.text(file, encoding))

    def table(self, file: str, names, dtype, sep="|", encoding="latin-1", usecols=None,
              header=None, **kwargs) -> pd.DataFrame:
        """Parse a separated file; a line that does not parse is named in the error."""
        text = self.text(file, encoding)
        if not text.strip():
            raise DataFileError(f"{self.where(file)} is empty. {self.fix()}")
        try:
            return pd.read_csv(io.StringIO(text), sep=sep, header=header, names=names,
                               dtype=dtype, usecols=usecols, quoting=csv.QUOTE_NONE,
                               keep_default_na=False, **kwargs)
        except pd.errors.EmptyDataError:
            raise DataFileError(f"{self.where(file)} is empty. {self.fix()}") from None
        except (ValueError, TypeError, OverflowError) as e:  # ParserError is a ValueError
            raise self.bad_line(file, text, sep, names, dtype, header, e) from None

    def bad_line(self, file: str, text, sep: str, names, dtype, header, error
                 ) -> DataFileError:
        """The error naming the first line of ``text`` (a string or its lines) that does not
        fit ``names``/``dtype``."""
        found = _first_bad_line(text, sep, names, dtype, skip=0 if header is None else 1)
        if found is None:
            return DataFileError(f"{self.where(file)} cannot be read ({error}). {self.fix()}")
        number, line, what = found
        return DataFileError(f"{self.where(file)}, line {number}: {what}: {line[:100]!r}. "
                             f"{self.fix()} (Or correct that line.)")


def _first_bad_line(text, sep: str, names, dtype, skip: int = 0
                    ) -> tuple[int, str, str] | None:
    r"""``(line number, line, what is wrong)`` of the first line with the wrong number of fields
    or a non-number where a number belongs; None when every line looks right. ``text`` is the
    file's text or an iterable of its lines (a stream, for files too large to hold as text).

    >>> _first_bad_line("1\t2\n3\tx\n", "\t", ["a", "b"], {"a": int, "b": int})
    (2, '3\tx', "field 2 ('x') is not a number")
    """
    numeric = [] if not isinstance(dtype, dict) else [
        names.index(k) if k in names else k for k, t in dtype.items()
        if t is not str and (not isinstance(t, str) or t != "str")]
    lines = text.splitlines() if isinstance(text, str) else text
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if number <= skip or not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) != len(names):
            return number, line, f"{len(fields)} fields where {len(names)} belong"
        for pos in numeric:
            if isinstance(pos, int) and pos < len(fields):
                try:
                    float(fields[pos])
                except ValueError:
                    return number, line, f"field {pos + 1} ({fields[pos]!r}) is not a number"
    return None


# ------------------------------------------------------------------------------ parsers
def _read(source: _Source, file: str, names, dtype, sep="|", encoding="latin-1",
          usecols=None, **kwargs) -> pd.DataFrame:
    return source.table(file, names, dtype, sep=sep, encoding=encoding, usecols=usecols,
                        **kwargs)


def _year_from_title(titles: pd.Series) -> pd.Series:
    return pd.to_numeric(titles.str.extract(_YEAR, expand=False), errors="coerce").astype("Int64")


def _genre_tuples(flags: np.ndarray, names: list[str]) -> list[tuple[str, ...]]:
    names = np.asarray(names, dtype=object)
    return [tuple(names[row]) for row in flags.astype(bool)]


def _parse_100k(source: _Source):
    inter = _read(source, "u.data", list(_INTERACTION_DTYPES), _INTERACTION_DTYPES, sep="\t")
    genres = ML100K_GENRES
    if source.has("u.genre"):
        table = _read(source, "u.genre", ["genre", "index"], {"genre": str, "index": str})
        table = table[table["genre"] != ""]
        genres = table.sort_values("index", key=lambda s: s.astype(int))["genre"].tolist()
    columns = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *genres]
    items = _read(source, "u.item", columns, {**{c: str for c in columns[1:5]},
                                               "item_id": np.int64, **{g: np.int8 for g in genres}})
    flags = items[genres].to_numpy()
    flags[:, [g == "unknown" for g in genres]] = 0            # "unknown" means no genre: ()
    items["title"] = items["title"].str.strip()
    items["release_date"] = pd.to_datetime(items["release_date"], format="%d-%b-%Y",
                                           errors="coerce")
    items["year"] = _year_from_title(items["title"]).fillna(
        items["release_date"].dt.year.astype("Int64"))
    items["genres"] = _genre_tuples(flags, genres)
    items = items[["item_id", "title", "year", "genres", "release_date", "imdb_url"]]
    users = _read(source, "u.user", ["user_id", "age", "gender", "occupation", "zip"],
                  {"user_id": np.int64, "age": np.int64, "gender": str, "occupation": str,
                   "zip": str})
    return inter, items, users


def _parse_1m(source: _Source):
    # "::" as a separator needs pandas' slow python engine; splitting on ":" with the C engine
    # gives empty columns between the fields, which usecols skips. Titles contain ":", so
    # movies.dat is split by hand (3,883 lines).
    inter = _read(source, "ratings.dat", list(range(7)), {0: np.int64, 2: np.int64,
                                                          4: np.float32, 6: np.int64},
                  sep=":", usecols=[0, 2, 4, 6])
    inter.columns = list(_INTERACTION_DTYPES)
    text = source.text("movies.dat")
    parts = pd.Series(text.splitlines()).loc[lambda s: s.str.strip() != ""]
    items = parts.str.split("::", n=2, expand=True, regex=False)
    if items.shape[1] != 3 or items.isna().any().any() \
            or not items[0].str.strip().str.isdigit().all():
        bad = (items.isna().any(axis=1) if items.shape[1] == 3 else parts.notna()) \
            | ~items[0].str.strip().str.isdigit()
        number = int(bad.idxmax()) + 1
        raise DataFileError(f"{source.where('movies.dat')}, line {number}: not "
                            f"'id::title::genres': {parts[number - 1][:100]!r}. "
                            f"{source.fix()} (Or correct that line.)")
    items.columns = ["item_id", "title", "genres"]
    items["item_id"] = items["item_id"].astype(np.int64)
    items["title"] = items["title"].str.strip()
    items["year"] = _year_from_title(items["title"])
    items["genres"] = [tuple(g.split("|")) if g else () for g in items["genres"].str.strip()]
    users = _read(source, "users.dat", list(range(9)), {0: np.int64, 2: str, 4: np.int64,
                                                        6: np.int64, 8: str},
                  sep=":", usecols=[0, 2, 4, 6, 8])
    users.columns = ["user_id", "gender", "age", "occupation", "zip"]
    users["occupation"] = np.asarray(ML1M_OCCUPATIONS, dtype=object)[users["occupation"]]
    return inter, items.reset_index(drop=True), users


_CSV_RATINGS = {"userId": np.int32, "movieId": np.int32, "rating": np.float32,
                "timestamp": np.int64}


def _lean_ratings(source: _Source, file: str = "ratings.csv") -> pd.DataFrame:
    """``ratings.csv`` of a large release, streamed into 32-bit columns by pandas' C parser.

    The header must be GroupLens's (``userId,movieId,rating,timestamp``). A line with the wrong
    number of fields or a non-number is found by a second, streaming pass and named in the error.
    """
    names = list(_INTERACTION_DTYPES)
    try:
        with source.stream(file) as raw, warnings.catch_warnings():
            # a first data line with an extra field would otherwise be read as an index
            warnings.simplefilter("error", pd.errors.ParserWarning)
            inter = pd.read_csv(raw, header=0, dtype=_CSV_RATINGS, na_filter=False,
                                index_col=False, engine="c", encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise DataFileError(f"{source.where(file)} is empty. {source.fix()}") from None
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise DataFileError(f"{source.where(file)} is damaged inside the zip ({e}). "
                            f"{source.fix()}") from None
    except (ValueError, TypeError, OverflowError, pd.errors.ParserWarning) as e:
        raise source.bad_line(file, source.lines(file), ",", names, _INTERACTION_DTYPES, 0,
                              e) from None
    if list(inter.columns) != list(_CSV_RATINGS):
        raise DataFileError(f"{source.where(file)}, line 1: the header is "
                            f"{','.join(map(str, inter.columns))[:100]!r}, expected "
                            f"'{','.join(_CSV_RATINGS)}'. {source.fix()}")
    inter.columns = names
    return inter


def _parse_latest(source: _Source, lean: bool = False):
    if lean:
        inter = _lean_ratings(source)
    else:
        inter = source.table("ratings.csv", list(_INTERACTION_DTYPES), _INTERACTION_DTYPES,
                             sep=",", encoding="utf-8", header=0)
    text = source.text("movies.csv", "utf-8")
    try:  # titles are quoted when they hold commas: the csv module's quoting rules
        items = pd.read_csv(io.StringIO(text), keep_default_na=False,
                            dtype={"movieId": np.int64, "title": str, "genres": str})
    except (ValueError, TypeError) as e:
        raise source.bad_line("movies.csv", text, ",", ["movieId", "title", "genres"],
                              {"movieId": np.int64}, 0, e) from None
    items = items.rename(columns={"movieId": "item_id"})
    items["title"] = items["title"].str.strip()
    items["year"] = _year_from_title(items["title"])
    items["genres"] = [() if g in ("", "(no genres listed)") else tuple(g.split("|"))
                       for g in items["genres"]]
    if source.has("links.csv"):
        links = pd.read_csv(source.open("links.csv", "utf-8"),
                            dtype={"movieId": np.int64, "imdbId": str, "tmdbId": "Int64"})
        links = links.rename(columns={"movieId": "item_id", "tmdbId": "tmdb_id"})
        links["imdb_url"] = "https://www.imdb.com/title/tt" + links["imdbId"] + "/"
        items = items.merge(links[["item_id", "imdb_url", "tmdb_id"]], on="item_id", how="left")
    users = pd.DataFrame({"user_id": np.sort(inter["user_id"].unique())})
    return inter, items, users


__all__ = ["load_movielens", "find_movielens", "download_movielens", "download_urls",
           "DownloadError",
           "DataFileError",
           "RELEASES", "LARGE", "BASE_URL", "MIRROR_URL"]
