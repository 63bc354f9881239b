"""H&M (Kaggle layout) fixture in its exact layout."""

import polars as pl
import pytest
from PIL import Image

from pipeline.sources import SourceError
from tests.test_sources_sequences import fetch_read

ARTICLES = ("article_id,product_code,prod_name,product_type_no,product_type_name,product_group_name,"
            "graphical_appearance_no,graphical_appearance_name,colour_group_code,colour_group_name,detail_desc\n"
            "108775015,108775,Strap top,253,Vest top,Garment Upper body,1010016,Solid,9,Black,"
            "\"Jersey top with narrow shoulder straps.\"\n"
            "108775044,108775,Strap top,253,Vest top,Garment Upper body,1010016,Solid,10,White,\n"
            "110065001,110065,OP T-shirt (Idro),306,Bra,Underwear,1010016,Solid,9,Black,\"Microfibre T-shirt bra.\"\n")


def hm_folder(root, tx_rows):
    root.mkdir(parents=True)
    (root / "articles.csv").write_text(ARTICLES)
    (root / "customers.csv").write_text("customer_id,age\nc1,30\n")
    (root / "transactions_train.csv").write_text(
        "t_dat,customer_id,article_id,price,sales_channel_id\n" + "".join(r + "\n" for r in tx_rows))
    (root / "images" / "010").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(root / "images" / "010" / "0108775015.jpg")
    return root


GOOD = ["2018-09-20,c1,0108775015,0.05,2", "2018-09-20,c1,0110065001,0.03,2", "2018-09-21,c2,108775044,0.02,1"]


def test_hm_layout_text_images_and_same_day_order(tmp_path):
    src = hm_folder(tmp_path / "hm", GOOD * 4 + ["not-a-date,c3,0108775015,0.1,1"])
    raw = fetch_read(tmp_path / "out", "hm", {"source": str(src)})
    assert raw.interactions.height == 12 and raw.report["transactions_bad_rows"] == 1
    assert set(raw.interactions["item"]) == {"0108775015", "0110065001", "0108775044"}  # zero-padded
    top = raw.items.filter(pl.col("item") == "0108775015").row(0, named=True)
    assert top["title"] == "Strap top" and top["categories"] == ["Vest top", "Garment Upper body", "Solid", "Black"]
    assert top["description"] == "Jersey top with narrow shoulder straps."
    assert top["image_paths"] == ["images/010/0108775015.jpg"] and raw.report["articles_without_image"] == 2
    assert "file order" in raw.report["note_same_day_order"]


def test_hm_missing_column_is_clear(tmp_path):
    src = hm_folder(tmp_path / "hm", GOOD)
    (src / "articles.csv").write_text("article_id,name\n1,x\n")
    with pytest.raises(SourceError, match=r"articles.csv: missing column\(s\) \['prod_name'"):
        fetch_read(tmp_path / "out", "hm", {"source": str(src)})


def test_hm_auto_text_tells_colour_variants_apart(tmp_path):
    """`features.text.fields: auto` describes H&M articles by name, type, group, pattern, colour and
    department too: two colour variants of one product (same name, one without a description) get
    different texts."""
    from pipeline.config import TextConfig
    from pipeline.features.text import item_texts

    src = hm_folder(tmp_path / "hm", GOOD)
    text = ARTICLES.splitlines()
    header = text[0] + ",department_name"
    (src / "articles.csv").write_text("\n".join([header] + [r + ",Jersey Basic" for r in text[1:]]) + "\n")
    raw = fetch_read(tmp_path / "out", "hm", {"source": str(src)})
    fields = TextConfig().resolved("hm")
    assert fields == ["title", "categories", "description"]
    items = raw.items.with_row_index("item_id", offset=1)
    texts = dict(zip(items["item"], item_texts(items, fields)["text"]))
    assert texts["0108775015"] != texts["0108775044"] and "White" in texts["0108775044"]
    assert "Jersey Basic" in texts["0108775044"]
    assert TextConfig().resolved("recbole") == ["title", "description"]  # other sources: unchanged
