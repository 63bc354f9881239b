"""Network fetching for real users: checksummed, resumable downloads and safe archive extraction.

Nothing here runs in the offline tests except through an injected `opener`; the default graph
reads local `source` folders.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from pipeline.sources.common import SourceError

log = logging.getLogger(__name__)

CACHE = Path(os.environ.get("MMREC_CACHE", Path.home() / ".cache" / "mmrec"))


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, md5: str | None = None, retries: int = 3,
             opener: Callable = urllib.request.urlopen) -> Path:
    """Download `url` to `dest` (resuming a partial `.part` file), verify `md5`, return `dest`."""
    if not url.startswith("https://"):
        raise SourceError(f"{url}: only https downloads are allowed")
    if dest.exists() and (md5 is None or md5sum(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    for attempt in range(1, retries + 1):
        try:
            have = part.stat().st_size if part.exists() else 0
            req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
            with opener(req, timeout=60) as resp:
                if have and getattr(resp, "status", 206) != 206:
                    have = 0  # server ignored the range: start over
                total = int(resp.headers.get("Content-Length", 0)) + have
                with open(part, "ab" if have else "wb") as f, tqdm(
                    total=total or None, initial=have, unit="B", unit_scale=True, desc=dest.name
                ) as bar:
                    for block in iter(lambda: resp.read(1 << 16), b""):
                        f.write(block)
                        bar.update(len(block))
            break
        except OSError as e:
            if attempt == retries:
                raise SourceError(f"{url}: download failed after {retries} tries ({e}); "
                                  "check the network or point the dataset's `source` at a local copy") from e
            log.warning("download of %s failed (%s), retry %d/%d", url, e, attempt, retries)
            time.sleep(2**attempt)
    if md5 and md5sum(part) != md5:
        part.unlink()
        raise SourceError(f"{url}: checksum mismatch (expected md5 {md5}); the file was deleted, try again")
    os.replace(part, dest)
    return dest


def safe_extract(archive: Path, out: Path, members: list[str] | None = None) -> list[str]:
    """Extract zip members (flattened) into `out`; refuse the whole archive if any member path is
    absolute or climbs out with `..` — checked before anything is written."""
    out = out.resolve()
    done = []
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            name = info.filename
            if name.startswith("/") or ".." in Path(name).parts or not str((out / name).resolve()).startswith(str(out)):
                raise SourceError(f"{archive}: member {name!r} would extract outside {out}; refusing the archive")
        out.mkdir(parents=True, exist_ok=True)
        for info in infos:
            if info.is_dir() or (members is not None and Path(info.filename).name not in members):
                continue
            with zf.open(info) as src, open(out / Path(info.filename).name, "wb") as dst:
                dst.write(src.read())
            done.append(Path(info.filename).name)
    return done
