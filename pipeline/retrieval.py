"""Exact top-k inner-product retrieval with FAISS, with per-user exclusion lists.

FAISS has no per-query mask, so each chunk of users searches k + (the largest exclusion list in the
chunk) results and the excluded ones are removed afterwards; the answer is still the exact top-k of
the non-excluded items. Users are processed in chunks sorted by exclusion size, each chunk at most
`chunk` users and at most `max_results` (users × results per user) entries, so memory stays
bounded however many users there are and however long one user's history is.
"""

from __future__ import annotations

import faiss
import numpy as np

GPU_MAX_K = 2048  # FAISS GPU flat search limit


def _index(items: np.ndarray, use_gpu: bool):
    index = faiss.IndexFlatIP(items.shape[1])
    index.add(items)
    if use_gpu and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        res = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(res, 0, index), True
    return index, False


def exact_topk(queries: np.ndarray, items: np.ndarray, k: int,
               exclude: tuple[np.ndarray, np.ndarray] | None = None, chunk: int = 4096,
               use_gpu: bool = True, max_results: int = 1 << 23) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product.

    Args:
        queries: (U, D) float32 user vectors.
        items: (N, D) float32 item vectors; results are row indices into this array.
        k: results per user (capped at N; missing slots are id -1 with score -inf).
        exclude: optional CSR (indptr (U+1,), row indices) of items never to return per user.
        chunk: users per FAISS call (at most).
        max_results: users x results per FAISS call (at most; a single user is always searched).
        use_gpu: use a GPU index when faiss-gpu and a GPU are present.

    Returns:
        (scores (U, k) float32 descending, ids (U, k) int64). Among equal scores the order is FAISS's.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    items = np.ascontiguousarray(items, dtype=np.float32)
    n_users, n_items = queries.shape[0], items.shape[0]
    index, on_gpu = _index(items, use_gpu)
    if exclude is None:
        exclude = (np.zeros(n_users + 1, np.int64), np.zeros(0, np.int64))
    indptr, excl = exclude
    counts = np.diff(indptr)
    order = np.argsort(counts, kind="stable")
    out_s = np.full((n_users, k), -np.inf, np.float32)
    out_i = np.full((n_users, k), -1, np.int64)
    start = 0
    while start < n_users:
        # counts ascend along `order`, so a chunk's widest search is its last user's
        width = np.minimum(n_items, k + counts[order[start:start + chunk]])
        fits = np.flatnonzero(np.arange(1, len(width) + 1) * width <= max_results)
        users = order[start:start + max(1, int(fits[-1]) + 1 if len(fits) else 1)]
        start += len(users)
        ks = int(min(n_items, k + counts[users].max(initial=0)))
        if on_gpu and ks > GPU_MAX_K:  # beyond the GPU kernel's k: exact search on the CPU copy
            cpu = faiss.index_gpu_to_cpu(index)
            scores, ids = cpu.search(queries[users], ks)
        else:
            scores, ids = index.search(queries[users], ks)
        c = counts[users]
        if c.any():
            sel = np.arange(c.sum()) + np.repeat(indptr[users] - (np.cumsum(c) - c), c)  # CSR rows of `users`
            row = np.repeat(np.arange(users.size), c)
            blocked = np.isin(np.arange(users.size)[:, None] * n_items + ids, row * n_items + excl[sel])
            scores = np.where(blocked | (ids < 0), -np.inf, scores)
        else:
            scores = np.where(ids < 0, -np.inf, scores)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        s, i = np.take_along_axis(scores, top, 1), np.take_along_axis(ids, top, 1)
        i = np.where(np.isfinite(s), i, -1)
        out_s[users, : s.shape[1]], out_i[users, : i.shape[1]] = s, i
    return out_s, out_i
