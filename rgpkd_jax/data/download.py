"""Finding a dataset's source files: the manual dir, or a checksummed download of a public archive.

TFDS's own download manager insists on its `checksums.tsv` (url, size, sha256); the archives we may
fetch are published with an md5 or sha256 only, so downloads are verified here instead. Every file
is written under a temporary name and renamed when complete and verified, so an interrupted or
corrupt download never looks finished.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import urllib.request
import zipfile

from rgpkd_jax.data.errors import DatasetError

_CHUNK = 1 << 20


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


def file_digest(path: str, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, algorithm: str, expected: str, download_dir: str) -> str:
    """Downloads `url` into `download_dir` (once) and checks its digest."""
    os.makedirs(download_dir, exist_ok=True)
    target = os.path.join(download_dir, url.rstrip("/").rsplit("/", 1)[-1])
    if not os.path.exists(target):
        partial = target + ".partial"
        logging.info("Downloading %s to %s", url, target)
        try:
            with urllib.request.urlopen(url) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out, _CHUNK)
        except OSError as error:
            raise DatasetError(f"Download of {url} failed ({error}). Download it by hand, extract it and "
                               "pass --manual_dir.") from error
        actual = file_digest(partial, algorithm)
        if actual != expected:
            os.remove(partial)
            raise DatasetError(f"Download of {url} has {algorithm} {actual}, expected {expected}: the file "
                               "changed on the server or was corrupted in transit. Retry, or download it "
                               "by hand and pass --manual_dir.")
        os.replace(partial, target)
    return target


def _safe_members(archive: zipfile.ZipFile, destination: str) -> None:
    root = os.path.realpath(destination)
    for member in archive.namelist():
        if not os.path.realpath(os.path.join(root, member)).startswith(root + os.sep):
            raise DatasetError(f"Archive member {member!r} would be written outside {destination}; refusing.")


def extract(archive: str, destination: str) -> str:
    """Extracts a .tar[.gz|.xz]/.zip once into `destination`; returns `destination`."""
    if not os.path.isdir(destination):
        partial = destination + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                _safe_members(zipped, partial)
                zipped.extractall(partial)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tarred:
                tarred.extractall(partial, filter="data")
        else:
            raise DatasetError(f"{archive} is neither a zip nor a tar archive; delete it and retry.")
        os.replace(partial, destination)
    return destination
