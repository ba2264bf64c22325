"""The nodes' help pages (web/docs/<node id>.md, served at /extensions/<pack folder>/docs/<node id>.md, the
frontend's node-help convention): one per node the pack registers, each naming every input and output,
explaining eta, and holding the recipe table exactly as core/catalog.py gives it.

The table is generated here from the catalog; ``HYPERSD_UPDATE_DOCS=1`` rewrites it in every page (between
the ``recipe-table`` markers) instead of failing. The node checks need ComfyUI in-process (COMFYUI_PATH);
the table checks do not.
"""
import os
import re
from pathlib import Path

import pytest

from hypersd_pack.core import catalog

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "web" / "docs"
BEGIN = ("<!-- recipe-table: generated from core/catalog.py by tests/test_node_docs.py "
         "(HYPERSD_UPDATE_DOCS=1 rewrites it) -->")
END = "<!-- /recipe-table -->"
SAMPLING = {  # the catalog's sampler keys, in words
    "tcd": "TCD sampler, eta as given (unified: works for 1–8 steps)",
    "trailing": "DDIM trailing = TCD sampler at eta 0 on the Hyper-SD Scheduler",
    "flow_euler": "flow Euler = TCD sampler at eta 0 on the Hyper-SD Scheduler",
    "lcm_800": "one step from t={start}: the UNet loader's SAMPLER + SIGMAS",
}
PAGES = sorted(DOCS.glob("*.md"))


def num(x):
    """1 -> '1.0', 0.125 -> '0.125' (the way the README writes recipe values)."""
    text = f"{x:g}"
    return text if "." in text else text + ".0"


def recipe_table():
    """The recipe table in markdown, one row per official file of the catalog, in catalog order."""
    rows = ["| file | label in the loader | base | steps | cfg | LoRA strength | sampling | eta |",
            "|---|---|---|---|---|---|---|---|"]
    for f in catalog.CATALOG:
        lora = f.folder == "loras"
        rows.append(f"| {f.filename} | {f.label} | {f.family} | {f.steps} | {num(f.cfg)} | "
                    f"{num(f.strength) if lora else '–'} | {SAMPLING[f.sampler].format(start=f.start)} | "
                    f"{num(f.eta) if lora else '–'} |")
    return "\n".join(rows)


def table_block(text):
    match = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text, re.S)
    return match


def test_every_page_holds_the_catalogs_recipe_table():
    assert PAGES, f"no help pages in {DOCS}"
    expected = recipe_table()
    stale = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        match = table_block(text)
        assert match, f"{page.name}: no recipe table between the markers\n{BEGIN}\n...\n{END}"
        if match.group(1) != expected:
            if os.environ.get("HYPERSD_UPDATE_DOCS") == "1":
                page.write_text(text[:match.start(1)] + expected + text[match.end(1):], encoding="utf-8")
            else:
                stale.append(page.name)
    assert not stale, (f"recipe table out of date in {stale}: run with HYPERSD_UPDATE_DOCS=1, or paste:\n"
                       f"{expected}")


def test_table_rows_are_the_catalogs_values():
    """Read back: each row's numbers are the catalog entry's (so the generator itself is checked)."""
    rows = [r.strip("|").split("|") for r in recipe_table().splitlines()[2:]]
    assert [r[0].strip() for r in rows] == [f.filename for f in catalog.CATALOG]
    for r, f in zip(rows, catalog.CATALOG):
        cells = [c.strip() for c in r]
        assert (cells[1], cells[2], int(cells[3]), float(cells[4])) == (f.label, f.family, f.steps, f.cfg)
        if f.folder == "loras":
            assert (float(cells[5]), float(cells[7])) == (f.strength, f.eta)


def test_every_page_says_what_eta_means():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert "## What eta means" in text, page.name
        for phrase in ("eta 0", "eta 1", "gamma", "s = floor((1 − eta) · t')", "1 step"):
            assert phrase in text, (page.name, phrase)


@pytest.fixture(scope="module")
def pack(comfy_host):
    return comfy_host


def test_one_page_per_node_naming_every_input_and_output(pack):
    names = set(pack.NODE_CLASS_MAPPINGS)
    assert {p.stem for p in PAGES} == names, "pages and registered nodes differ"
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        text = (DOCS / f"{node_id}.md").read_text(encoding="utf-8")
        assert text.startswith("# ") and pack.NODE_DISPLAY_NAME_MAPPINGS[node_id] in text.splitlines()[0]
        inputs_part = text.split("## Inputs", 1)[-1].split("\n## ", 1)[0]
        outputs_part = text.split("## Outputs", 1)[-1].split("\n## ", 1)[0]
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name in spec.get(section, {}):
                assert f"**{name}**" in inputs_part, f"{node_id}.md does not explain input {name!r}"
        for name in getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES:
            assert f"**{name}**" in outputs_part, f"{node_id}.md does not explain output {name!r}"


def test_pack_serves_its_web_directory(pack):
    """web/ holds the help pages and one frontend extension (web/js/hypersd.js, which every frontend loads):
    nothing else that a frontend would run."""
    assert pack.WEB_DIRECTORY == "./web"
    assert (REPO / pack.WEB_DIRECTORY / "docs").is_dir()
    scripts = sorted(p.relative_to(REPO / "web").as_posix() for p in (REPO / "web").rglob("*.js"))
    assert scripts == ["js/hypersd.js"], scripts
    text = (REPO / "web" / "js" / "hypersd.js").read_text(encoding="utf-8")
    imports = re.findall(r"^import .* from '([^']+)'", text, re.M)
    assert imports == ["../../../scripts/app.js"], imports  # the frontend's app only (served at /scripts/app.js)
