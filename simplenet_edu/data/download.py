"""The real MVTec AD (CC BY-NC-SA 4.0), for those with internet: download, check, unpack."""

from __future__ import annotations

import hashlib
import http.client
import lzma
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from ..utils.atomic import check_writable, make_folder, replace_folder, temp_name, write_reason
from ..utils.errors import InputError, WriteError

MVTEC_CATEGORIES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)  # fmt: skip
MVTEC_PAGE = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
# The whole archive (4.9 GB) and its checksum, as anomalib uses them. MVTec also serves one archive
# per category, but publishes no checksums for those, so we fetch the whole and unpack what is wanted.
MVTEC_URL = (
    "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/"
    "download/420938113-1629952094/mvtec_anomaly_detection.tar.xz"
)
MVTEC_SHA256 = "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d"
_TIMEOUT_S = 15


def _fetch(url: str, destination: Path, sha256: str | None, progress: bool) -> None:
    """Stream `url` into the file `destination`, then check its SHA-256 (when one is given)."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, destination.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            bytes_bar = dict(unit="B", unit_scale=True, unit_divisor=1024)
            with tqdm(total=total, desc="MVTec AD", disable=not progress, **bytes_bar) as bar:
                while chunk := response.read(1 << 20):
                    try:
                        out.write(chunk)
                    except OSError as error:   # a full disk, not the network
                        raise WriteError(destination.parent, "cannot write the download: "
                                                             f"{write_reason(error, destination)}") from error
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        advice = f"no internet? Download it by hand from {MVTEC_PAGE} and pass --data"
        raise InputError(url, f"cannot download MVTec AD ({reason}): {advice}") from error
    if sha256 is not None and digest.hexdigest() != sha256.lower():
        got = digest.hexdigest()
        raise InputError(url, f"checksum mismatch (corrupt or changed download): SHA-256 {got}, not {sha256}")


def _extract(archive: Path, destination: Path, categories: list[str], source: str) -> None:
    """Unpack only the top-level folders named in `categories`, in one pass over the stream."""
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if member.name.startswith("/") or ".." in parts:
                    raise InputError(source, f"unsafe path {member.name!r} in the archive; nothing was kept")
                parts = [part for part in parts if part != "."]
                if parts and parts[0] in categories:
                    tar.extract(member, destination, filter="data")  # "data" also refuses links out
    except (tarfile.TarError, lzma.LZMAError, EOFError) as error:
        raise InputError(source, f"cannot unpack the archive ({error})") from error
    except OSError as error:   # reading the archive is local: a failure here is the disk's
        if error.errno is None:
            raise
        raise WriteError(destination.parent, f"cannot unpack the archive: {write_reason(error, destination)}") from error
    for category in categories:
        if not (destination / category / "train" / "good").is_dir():
            raise InputError(source, f"the archive has no {category}/train/good/ folder")


def download_mvtec(
    root: str | Path = "data/mvtec",
    category: str = "hazelnut",
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Download MVTec AD into `root` and return ``<root>/<category>`` (or `root` for ``"all"``).

    The whole archive is streamed to a temporary file, its SHA-256 checked, and only the wanted
    categories unpacked; each appears under its real name only once complete. Categories already
    present are not downloaded again. `url` and `sha256` override the official archive (with a custom
    `url` and no `sha256`, nothing is checked).
    """
    if category != "all" and category not in MVTEC_CATEGORIES:
        problem = f"must be 'all' or one of {', '.join(MVTEC_CATEGORIES)}, got {category!r}"
        raise InputError("category", problem)
    root = Path(root)
    wanted = list(MVTEC_CATEGORIES) if category == "all" else [category]
    result = root if category == "all" else root / category
    missing = [name for name in wanted if not (root / name / "train" / "good").is_dir()]
    if not missing:
        return result
    for name in missing:
        if (root / name).exists():
            raise InputError(root / name, "exists but has no train/good/ folder; remove it and try again")
    if url is None:
        url, sha256 = MVTEC_URL, sha256 or MVTEC_SHA256

    make_folder(root)
    check_writable(root, folder=True)
    archive = temp_name(root, "mvtec-archive")
    unpacked = temp_name(root, "mvtec-extract")
    try:
        _fetch(url, archive, sha256, progress)
        unpacked.mkdir()
        _extract(archive, unpacked, missing, url)
        for name in missing:
            replace_folder(unpacked / name, root / name)
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(unpacked, ignore_errors=True)
    return result
