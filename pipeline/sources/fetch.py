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

from pipeline.progress import progress
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
                with open(part, "ab" if have else "wb") as f, progress(
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


# Limits on what an archive may expand to (a zip bomb: 2 MB that inflate to GBs). Override with
# MMREC_MAX_EXTRACT_BYTES / MMREC_MAX_EXTRACT_RATIO or the arguments of `safe_extract`.
MAX_EXTRACT_BYTES = int(os.environ.get("MMREC_MAX_EXTRACT_BYTES", 8 * 2**30))
MAX_EXTRACT_RATIO = float(os.environ.get("MMREC_MAX_EXTRACT_RATIO", 200))


def safe_extract(archive: Path, out: Path, members: list[str] | None = None, max_bytes: int | None = None,
                 max_ratio: float | None = None) -> list[str]:
    """Extract zip members (flattened) into `out`. The whole archive is refused, before anything is
    written, if a member path is absolute or climbs out with `..`, if two extracted members share a
    file name (flattening would overwrite one with the other), or if the declared sizes exceed
    `max_bytes` in total or `max_ratio` times the compressed size; while extracting, the bytes are
    counted as they stream (declared sizes can lie) and the same limits stop it."""
    max_bytes = MAX_EXTRACT_BYTES if max_bytes is None else max_bytes
    max_ratio = MAX_EXTRACT_RATIO if max_ratio is None else max_ratio
    out = out.resolve()
    done = []
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            name = info.filename
            if name.startswith("/") or ".." in Path(name).parts or not str((out / name).resolve()).startswith(str(out)):
                raise SourceError(f"{archive}: member {name!r} would extract outside {out}; refusing the archive")
        wanted = [i for i in infos if not i.is_dir() and (members is None or Path(i.filename).name in members)]
        names = [Path(i.filename).name for i in wanted]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            where = [i.filename for i in wanted if Path(i.filename).name in dup][:4]
            raise SourceError(f"{archive}: members {where} share a file name and would overwrite each other when "
                              "extracted flat; refusing the archive")
        packed = sum(i.compress_size for i in wanted)
        budget = min(max_bytes, int(max_ratio * max(packed, 1)))

        def refuse(size: int) -> SourceError:
            return SourceError(f"{archive}: expands to {size:,} bytes or more from {packed:,} compressed (limits: "
                               f"{max_bytes:,} bytes, {max_ratio:g}x); refusing it as a possible zip bomb — raise "
                               "MMREC_MAX_EXTRACT_BYTES / MMREC_MAX_EXTRACT_RATIO if the archive is genuine")

        declared = sum(i.file_size for i in wanted)
        if declared > budget:
            raise refuse(declared)
        out.mkdir(parents=True, exist_ok=True)
        total = 0
        for info in wanted:
            target = out / Path(info.filename).name
            with zf.open(info) as src, open(target, "wb") as dst:
                for block in iter(lambda: src.read(1 << 20), b""):
                    total += len(block)
                    if total > budget:
                        dst.close()
                        target.unlink()
                        raise refuse(total)
                    dst.write(block)
            done.append(target.name)
    return done
