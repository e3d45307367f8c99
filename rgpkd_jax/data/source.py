"""Finding a dataset's source files: the manual dir, or a checksummed download of a public archive.

TFDS's own download manager insists on its `checksums.tsv` (url, size, sha256); the archives we may
fetch are published with an md5 or sha256 only, so they come through the package's verified
downloader (`rgpkd_jax.download`) instead. Extraction goes to a temporary folder renamed when
complete (`rgpkd_jax.files.staged_dir`), so an interrupted download or extraction never looks finished.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import tarfile
import zipfile
from typing import Iterable

from rgpkd_jax import download, files
from rgpkd_jax.data.errors import DatasetError


def _has_entries(path: str) -> bool:
    return os.path.isdir(path) and any(not name.startswith(".") for name in os.listdir(path))


def locate_source(builder_cls, manual_dir: str | None, download_dir: str | os.PathLike, *,
                  allow_download: bool = False) -> str:
    """The root of the dataset's own layout: `manual_dir` if given, else a verified download."""
    name = builder_cls.name
    if manual_dir:
        if not os.path.isdir(manual_dir):
            raise DatasetError(f"{name}: manual dir {manual_dir} does not exist. Pass the folder that holds "
                               f"the extracted dataset.\n{builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        if not _has_entries(manual_dir):
            raise DatasetError(f"{name}: manual dir {manual_dir} is empty. Extract the dataset there."
                               f"\n{builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        return manual_dir
    if builder_cls.DOWNLOAD is None or not allow_download:
        how = ("or let `python -m rgpkd_jax.data.prepare --dataset " + name + " --download` fetch it"
               if builder_cls.DOWNLOAD else "(it cannot be downloaded automatically)")
        raise DatasetError(f"{name} is not prepared and no manual dir was given: download it by hand and "
                           f"pass --manual_dir (config: dataset.manual_dir) {how}."
                           f"\n{builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    url, algorithm, digest = builder_cls.DOWNLOAD
    archive = fetch(url, algorithm, digest, os.fspath(download_dir))
    return extract(archive, os.path.join(os.fspath(download_dir), "extracted", name))


def fetch(url: str, algorithm: str, expected: str, download_dir: str) -> str:
    """Downloads `url` into `download_dir` (once; a copy with the right digest is reused)."""
    target = os.path.join(download_dir, url.rstrip("/").rsplit("/", 1)[-1])
    try:
        return download.fetch(url, target, algorithm=algorithm, expected=expected)
    except download.DownloadError as error:
        raise DatasetError(f"{error} Download it by hand, extract it and pass --manual_dir.") from error


def _safe_members(archive: zipfile.ZipFile, destination: str | os.PathLike) -> None:
    root = os.path.realpath(destination)
    for member in archive.namelist():
        if not os.path.realpath(os.path.join(root, member)).startswith(root + os.sep):
            raise DatasetError(f"Archive member {member!r} would be written outside {destination}; refusing.")


def extract(archive: str, destination: str) -> str:
    """Extracts a .tar[.gz|.xz]/.zip once into `destination` (`files.staged_dir`: whole or not at
    all; of two processes extracting at once, the first to finish wins); returns `destination`."""
    if not os.path.isdir(destination):
        with files.staged_dir(destination) as staging:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zipped:
                    _safe_members(zipped, staging)
                    zipped.extractall(staging)
            elif tarfile.is_tarfile(archive):
                with tarfile.open(archive) as tarred:
                    tarred.extractall(staging, filter="data")
            else:
                raise DatasetError(f"{archive} is neither a zip nor a tar archive; delete it and retry.")
    return destination


def fingerprint(root: str, paths: Iterable[str | os.PathLike]) -> dict:
    """What a prepared copy is built from: the files' number, total size, newest modification
    time, and a sha256 of each file's (path relative to `root`, size, mtime); a moved `root` with
    untouched files keeps its fingerprint, an added, removed, resized or rewritten file changes it."""
    digest, total, newest, count = hashlib.sha256(), 0, 0, 0
    for path in sorted({os.fspath(p) for p in paths}):
        stat = os.stat(path)
        digest.update(f"{os.path.relpath(path, root)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        total, newest, count = total + stat.st_size, max(newest, stat.st_mtime_ns), count + 1
    newest_time = datetime.datetime.fromtimestamp(newest / 1e9, datetime.timezone.utc)
    return {"num_files": count, "total_bytes": total,
            "newest_mtime": newest_time.isoformat(timespec="seconds"), "sha256": digest.hexdigest()}
