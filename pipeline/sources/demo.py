"""The embedded default: a deterministic, structured synthetic multimodal catalogue.

Items have latent attributes (category, colour, pattern, price band). Each is rendered into a
real PNG image (category -> shape, colour -> fill, pattern -> overlay, price band -> frame) and
into a title and a multi-sentence description, so both modalities carry the attributes.
Users have a taste over the attributes; each next item is either a content-similar neighbour of
the previous one (same category and same colour or pattern) or a draw from the user's taste
weighted by item popularity. A share of items is made rare (the cold tail).

The files are written as RecBole atomic files plus an `images/` folder, i.e. the same raw layout a
real RecBole source uses, so nothing downstream special-cases the demo.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.params import Checked, Positive, PositiveFloat, Unit
from pipeline.progress import progress

log = logging.getLogger(__name__)

CATEGORIES = {  # category -> (shape, material, use sentence)
    "mug": ("circle", "glazed stoneware", "Keeps coffee hot through a long morning."),
    "lamp": ("triangle", "brushed aluminium", "Gives a warm light for reading at night."),
    "backpack": ("square", "waxed canvas", "Fits a laptop and a change of clothes."),
    "sneaker": ("ellipse", "knitted mesh", "Light enough for a daily run."),
    "watch": ("hexagon", "stainless steel", "Water resistant to fifty metres."),
    "chair": ("cross", "oak veneer", "Stacks neatly when guests have gone."),
    "hat": ("diamond", "felted wool", "Folds into a pocket without losing its shape."),
    "vase": ("star", "hand-blown glass", "Holds a generous bunch of flowers."),
}
COLOURS = {
    "red": (200, 30, 40), "orange": (240, 130, 20), "yellow": (235, 200, 30), "green": (40, 150, 60),
    "teal": (20, 140, 140), "blue": (40, 70, 200), "purple": (120, 50, 160), "pink": (235, 120, 170),
    "brown": (120, 75, 40), "black": (25, 25, 25),
}
PATTERNS = ["solid", "striped", "dotted", "checked"]
PRICES = ["budget", "mid-range", "premium", "luxury"]
NAMES = ["Nova", "Atlas", "Echo", "Orbit", "Pioneer", "Harbor", "Summit", "Willow", "Ember", "Aurora", "Drift", "Quartz"]


@dataclass
class DemoConfig(Checked):
    n_items: Positive = 2000
    n_users: Positive = 1000
    seed: int = 7
    image_size: Positive = 64
    mean_length: PositiveFloat = 20.0  # mean interactions per user (lognormal, at least min_length)
    min_length: Positive = 5
    p_similar: Unit = 0.55  # chance the next item is a content neighbour of the previous one
    cold_share: Unit = 0.15  # share of items made rare
    tie_share: Unit = 0.03  # share of events logged at the same second as the previous one


def make_items(cfg: DemoConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = cfg.n_items
    attrs = {
        "category": rng.integers(0, len(CATEGORIES), n),
        "colour": rng.integers(0, len(COLOURS), n),
        "pattern": rng.integers(0, len(PATTERNS), n),
        "price": rng.integers(0, len(PRICES), n),
        "name": rng.integers(0, len(NAMES), n),
    }
    pop = (1.0 + rng.permutation(n)) ** -0.7  # Zipf-like base popularity
    cold = rng.random(n) < cfg.cold_share
    pop[cold] *= 0.02
    attrs["popularity"] = pop / pop.sum()
    attrs["cold"] = cold
    return attrs


def describe(i: int, a: dict[str, np.ndarray], rng: np.random.Generator) -> tuple[str, str, str]:
    cat = list(CATEGORIES)[a["category"][i]]
    shape, material, use = CATEGORIES[cat]
    colour, pattern, price = list(COLOURS)[a["colour"][i]], PATTERNS[a["pattern"][i]], PRICES[a["price"][i]]
    title = f"{NAMES[a['name'][i]]} {colour} {pattern} {cat}"
    sentences = [
        f"A {price} {cat} in {colour} with a {pattern} finish.",
        f"Made from {material}.",
        use,
        rng.choice([f"The {colour} tone pairs well with neutral rooms.", "Ships in recycled packaging.",
                    f"A {pattern} look that suits most styles.", "Backed by a two-year guarantee."]),
    ]
    return title, cat, " ".join(sentences)


def render(i: int, a: dict[str, np.ndarray], size: int) -> Image.Image:
    shape = CATEGORIES[list(CATEGORIES)[a["category"][i]]][0]
    colour = list(COLOURS.values())[a["colour"][i]]
    pattern, price = a["pattern"][i], a["price"][i]
    img = Image.new("RGB", (size, size), (245, 243, 238))
    d = ImageDraw.Draw(img)
    m, s = size // 8, size - size // 8
    c = size / 2
    if shape == "circle":
        d.ellipse([m, m, s, s], fill=colour)
    elif shape == "square":
        d.rectangle([m, m, s, s], fill=colour)
    elif shape == "ellipse":
        d.ellipse([m, size // 3, s, size - size // 3], fill=colour)
    elif shape == "cross":
        w = size // 6
        d.rectangle([c - w, m, c + w, s], fill=colour)
        d.rectangle([m, c - w, s, c + w], fill=colour)
    else:
        sides = {"triangle": 3, "diamond": 4, "hexagon": 6, "star": 5}[shape]
        d.regular_polygon((c, c, c - m), sides, rotation=0 if shape != "diamond" else 45, fill=colour)
        if shape == "star":
            d.regular_polygon((c, c, (c - m) / 2), 5, rotation=36, fill=colour)
    step = max(size // 8, 4)
    if PATTERNS[pattern] == "striped":
        for x in range(0, size, step):
            d.line([x, 0, x + size // 2, size], fill=(255, 255, 255), width=1)
    elif PATTERNS[pattern] == "dotted":
        for x in range(step // 2, size, step):
            for y in range(step // 2, size, step):
                d.ellipse([x - 1, y - 1, x + 1, y + 1], fill=(255, 255, 255))
    elif PATTERNS[pattern] == "checked":
        for x in range(0, size, step):
            d.line([x, 0, x, size], fill=(255, 255, 255))
            d.line([0, x, size, x], fill=(255, 255, 255))
    d.rectangle([0, 0, size - 1, size - 1], outline=(60, 60, 60), width=1 + int(price))
    return img


def make_sequences(cfg: DemoConfig, a: dict[str, np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    n, users = cfg.n_items, cfg.n_users
    onehot = lambda x, k: np.eye(k)[x]  # noqa: E731
    cat, col, pat = a["category"], a["colour"], a["pattern"]
    # Neighbour weights: same category and (same colour or same pattern).
    same = (cat[:, None] == cat[None, :]) & ((col[:, None] == col[None, :]) | (pat[:, None] == pat[None, :]))
    np.fill_diagonal(same, False)
    neighbour = same * a["popularity"][None, :] + 1e-12
    taste_cat = rng.dirichlet(np.full(len(CATEGORIES), 0.3), users)
    taste_col = rng.dirichlet(np.full(len(COLOURS), 0.5), users)
    taste_price = rng.dirichlet(np.full(len(PRICES), 1.0), users)
    taste = (taste_cat @ onehot(cat, len(CATEGORIES)).T) * (taste_col @ onehot(col, len(COLOURS)).T) \
        * (taste_price @ onehot(a["price"], len(PRICES)).T) * a["popularity"][None, :]
    lengths = np.maximum(cfg.min_length, rng.lognormal(np.log(cfg.mean_length) - 0.3, 0.75, users).astype(int))
    lengths = np.minimum(lengths, n // 2)
    seqs = []
    for u in range(users):
        seen = np.zeros(n, bool)
        seq = np.empty(lengths[u], np.int64)
        for t in range(lengths[u]):
            w = neighbour[seq[t - 1]] if t and rng.random() < cfg.p_similar else taste[u]
            w = np.where(seen, 0.0, w)
            if w.sum() <= 0:
                w = np.where(seen, 0.0, taste[u] + 1e-12)
            seq[t] = rng.choice(n, p=w / w.sum())
            seen[seq[t]] = True
        seqs.append(seq)
    return seqs


def fetch(cfg: DemoConfig, out: Path) -> dict:
    """Generate the demo catalogue into `out` as demo.inter, demo.item and images/<item_id>.png."""
    rng = np.random.default_rng(cfg.seed)
    a = make_items(cfg, rng)
    seqs = make_sequences(cfg, a, rng)
    (out / "images").mkdir(parents=True, exist_ok=True)
    item_ids = [f"P{i:05d}" for i in range(cfg.n_items)]
    with open(out / "demo.item", "w") as f:
        f.write("item_id:token\ttitle:token_seq\tcategories:token_seq\tdescription:token_seq\n")
        for i in progress(range(cfg.n_items), desc="demo items", unit="item"):
            title, cat, desc = describe(i, a, rng)
            f.write(f"{item_ids[i]}\t{title}\t{cat}\t{desc}\n")
            render(i, a, cfg.image_size).save(out / "images" / f"{item_ids[i]}.png", optimize=False)
    start = 1_600_000_000
    with open(out / "demo.inter", "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for u, seq in enumerate(seqs):
            gaps = rng.exponential(86_400.0, len(seq)).astype(np.int64) + 1
            gaps[rng.random(len(seq)) < cfg.tie_share] = 0
            ts = start + rng.integers(0, 30 * 86_400) + np.cumsum(gaps)
            ratings = rng.integers(3, 6, len(seq))
            for i, t, r in zip(seq, ts, ratings):
                f.write(f"U{u:05d}\t{item_ids[i]}\t{r}\t{t}\n")
    log.info("demo: %d items (%d cold), %d users, %d interactions", cfg.n_items, int(a["cold"].sum()), cfg.n_users,
             sum(map(len, seqs)))
    return {"format": "recbole", "name": "demo", "images": "images", "encoding": "utf-8",
            "files": ["demo.inter", "demo.item"], "origin": f"generated (seed {cfg.seed})"}
