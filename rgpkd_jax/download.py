"""The one verified downloader: teacher weights and dataset archives both come through here.

A download streams to a unique temporary name beside the target (`files.atomic_write`), with a
socket timeout, while its digest is computed; only a file whose digest matches is renamed into
place. So an interrupted, concurrent or corrupt download never looks finished, and a valid cached
copy is reused.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request

from absl import logging

from rgpkd_jax.files import CHUNK, atomic_write, file_digest

TIMEOUT_S = 60  # per socket operation, not for the whole file


class DownloadError(RuntimeError):
    """A file could not be fetched, or it is not the file its digest promises."""


def fetch(url: str, target: str | os.PathLike, *, algorithm: str, expected: str,
          prefix_only: bool = False, offline_hint: str = "") -> str:
    """Downloads ``url`` to ``target`` unless a copy with the expected digest is there.

    Args:
      algorithm: a :mod:`hashlib` name (``sha256``, ``md5``).
      expected: the hex digest, or its prefix when ``prefix_only`` (torchvision file names carry
        the first hex digits of their sha256).
      offline_hint: appended to the error when the download fails (how to get the file by hand).
    Returns:
      ``target`` as a string.
    Raises:
      DownloadError: the download failed, or its digest does not match (nothing is kept).
    """
    target = os.fspath(target)

    def matches(digest: str) -> bool:
        return digest.startswith(expected) if prefix_only else digest == expected

    if os.path.isfile(target):
        if matches(file_digest(target, algorithm)):
            logging.info("Using the cached %s", target)
            return target
        logging.warning("The cached %s fails its %s check; downloading it again.", target, algorithm)
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    digest = hashlib.new(algorithm)
    logging.info("Downloading %s to %s", url, target)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, atomic_write(target, "wb") as out:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                logging.log_every_n_seconds(logging.INFO, "%s: %d MB so far", 10, url, out.tell() >> 20)
            if not matches(digest.hexdigest()):  # raised inside the block: nothing is renamed into place
                raise DownloadError(
                    f"{url}: {algorithm} {digest.hexdigest()} "
                    f"{'does not start with' if prefix_only else 'is not'} the expected {expected}: the file "
                    "is corrupt, or not the official one. Nothing was saved; try again.")
    except OSError as e:  # urllib's URLError and socket timeouts included
        raise DownloadError(f"cannot download {url}: {e}. {offline_hint}".strip()) from e
    return target
