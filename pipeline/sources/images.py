"""Image download for sources that give URLs (Amazon metadata, H&M mirrors, ...).

`download_images({item: [url, ...]}, folder)` fetches at most `workers` at a time, retries each
URL with exponential backoff, keeps files already fetched by an earlier run (each is re-verified
by decoding its header, so a half-written file is fetched again), checks the size and the
content type before writing, writes every file atomically and records every failure with its
reason in `folder/manifest.json` ({"ok": n, "kept": n, "failed": {item: [url, reason]}}). Items
whose images all failed simply have none: the feature stages mask them and count them.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from PIL import Image

from pipeline.progress import progress

log = logging.getLogger(__name__)

EXT = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif"}
MAX_BYTES = 20 << 20


def _valid(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except Exception:  # noqa: BLE001 - any decoder error means "fetch again"
        return False


def _existing(folder: Path, item: str) -> Path | None:
    for ext in EXT.values():
        p = folder / f"{item}{ext}"
        if p.is_file():
            return p
    return None


def fetch_one(item: str, urls: list[str], folder: Path, retries: int, max_bytes: int,
              opener: Callable, sleep: Callable) -> tuple[str, str, str | None]:
    """-> (item, status "ok" | "kept" | "failed", reason)."""
    have = _existing(folder, item)
    if have is not None:
        if _valid(have):
            return item, "kept", None
        have.unlink()
    reason = "no image URL"
    for url in urls:
        if not url.startswith("https://"):
            reason = f"{url}: not https"
            continue
        for attempt in range(retries):
            try:
                with opener(urllib.request.Request(url, headers={"User-Agent": "mmrec"}), timeout=30) as r:
                    ctype = (r.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                    size = int(r.headers.get("Content-Length") or 0)
                    if ctype not in EXT:
                        reason = f"{url}: content type {ctype or 'missing'!r} is not an image"
                        break
                    if size > max_bytes:
                        reason = f"{url}: {size} bytes > {max_bytes}"
                        break
                    data = r.read(max_bytes + 1)
                if len(data) > max_bytes:
                    reason = f"{url}: more than {max_bytes} bytes"
                    break
                dest = folder / f"{item}{EXT[ctype]}"
                tmp = dest.with_suffix(dest.suffix + ".part")
                tmp.write_bytes(data)
                if not _valid(tmp):
                    tmp.unlink()
                    reason = f"{url}: the bytes do not decode as an image"
                    break
                os.replace(tmp, dest)
                return item, "ok", None
            except OSError as e:
                reason = f"{url}: {e}"
                if attempt + 1 < retries:
                    sleep(2 ** attempt)
    return item, "failed", reason


def download_images(urls: dict[str, list[str]], folder: Path, workers: int = 8, retries: int = 3,
                    max_bytes: int = MAX_BYTES, opener: Callable = urllib.request.urlopen,
                    sleep: Callable = time.sleep) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    result: dict = {"ok": 0, "kept": 0, "failed": {}}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        jobs = [pool.submit(fetch_one, item, list(u or []), folder, retries, max_bytes, opener, sleep)
                for item, u in urls.items()]
        for job in progress(jobs, desc="images", unit="item", disable=None):
            item, status, reason = job.result()
            if status == "failed":
                result["failed"][item] = reason
            else:
                result[status] += 1
    tmp = folder / "manifest.json.part"
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, folder / "manifest.json")
    log.info("images: %d fetched, %d kept from an earlier run, %d failed (reasons in %s)", result["ok"],
             result["kept"], len(result["failed"]), folder / "manifest.json")
    return {"ok": result["ok"], "kept": result["kept"], "failed": len(result["failed"])}
