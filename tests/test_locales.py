"""The pack's translations: ``locales/<lang>/main.json`` (node names, input and output names, tooltips, descriptions,
which ComfyUI's ``/i18n`` serves and the frontend merges under ``nodeDefs``) and the help pages
``web/docs/<node>/<lang>.md`` (the frontend's node help asks for ``docs/<node>/<locale>.md`` first).

* ``locales/en/main.json`` is what the node classes say (checked against them in-process; ``HYPERSD_UPDATE_DOCS=1``
  rewrites it), the source every translation follows.
* Every shipped language has every English key, non-empty; no translation lost or changed a number, an option
  value ('recipe', 'if missing', ...), a recipe label, a file name, a node or class name; no text holds a character
  the frontend's message compiler reads as syntax.
* The languages: every locale the newest frontend offers (read from its bundle when .cache-frontend has it), and
  German, which it does not offer yet.
* Each help page exists in every language with the English page's sections, input and output names, code spans,
  numbers and the catalog's recipe table, and says that it was machine-drafted.

The stand-ins for other packs' nodes (HyperSDXL1StepUnetScheduler, TCDModelSamplingDiscrete) get translated help
pages (served from this pack only while its stand-in is the one registered) but no ``nodeDefs``: the frontend keys
those by node id for every pack, so they would replace the original pack's own texts when it is installed.
"""
import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from hypersd_pack.core import catalog

REPO = Path(__file__).resolve().parents[1]
LOCALES = REPO / "locales"
DOCS = REPO / "web" / "docs"
LANGUAGES = ("zh", "zh-TW", "ja", "ko", "fr", "es", "ru", "de", "it", "pt-BR", "tr", "ar", "fa", "he")
TRANSLATED_NODES = ("HyperSDLoraLoader", "HyperSDScheduler", "HyperSDTCDSampler", "HyperSDUNetLoader")
HELP_PAGES = tuple(sorted(p.stem for p in DOCS.glob("*.md")))
MACHINE_DRAFTED = "<!-- machine-drafted translation -->"
# ASCII classes on purpose: in CJK text a number sits next to letters (4步) that \w would count as a word
NUMBER = re.compile(r"(?<![A-Za-z0-9_.])[0-9]+(?:\.[0-9]+)?(?![A-Za-z0-9_.]*[A-Za-z0-9_])")
QUOTED = re.compile(r"(?<![A-Za-z])'([A-Za-z0-9_ .-]{1,20})'(?![A-Za-z])")  # option values: 'recipe', 'if missing'
CODE = re.compile(r"`([^`]+)`")
ITEM_NAME = re.compile(r"^- \*\*(\w+)\*\*", re.M)  # "- **strength**: ..." in Inputs / Outputs
IDENTIFIER = re.compile(r"\b(?:[A-Z][a-z0-9]+){2,}[A-Za-z0-9]*\b|\b[\w.-]+\.safetensors\b")
MESSAGE_SYNTAX = set("{}@|$")  # vue-i18n: placeholders, linked messages, plurals
TABLE_BEGIN = "<!-- recipe-table"
TABLE_END = "<!-- /recipe-table -->"


def load(lang):
    return json.loads((LOCALES / lang / "main.json").read_text(encoding="utf-8"))


def flatten(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def english_node_defs(pack):
    """nodeDefs as the frontend keys them, from the node classes: display_name, description, inputs by name
    (name, tooltip), outputs by index (name, tooltip)."""
    defs = {}
    for node_id in TRANSLATED_NODES:
        cls = pack.NODE_CLASS_MAPPINGS[node_id]
        spec = cls.INPUT_TYPES()
        inputs = {}
        for section in ("required", "optional"):
            for name, (_, *options) in spec.get(section, {}).items():
                entry = {"name": name}
                tooltip = (options[0] if options else {}).get("tooltip")
                if tooltip:
                    entry["tooltip"] = tooltip
                inputs[name] = entry
        names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
        outputs = {str(i): {"name": name, "tooltip": tip} for i, (name, tip) in
                   enumerate(zip(names, cls.OUTPUT_TOOLTIPS))}
        defs[node_id] = {"display_name": pack.NODE_DISPLAY_NAME_MAPPINGS[node_id], "description": cls.DESCRIPTION,
                         "inputs": inputs, "outputs": outputs}
    return {"nodeDefs": defs}


def test_english_is_what_the_nodes_say(comfy_host):
    expected = english_node_defs(comfy_host)
    path = LOCALES / "en" / "main.json"
    if os.environ.get("HYPERSD_UPDATE_DOCS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(expected, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert load("en") == expected, "locales/en/main.json differs from the node classes: run with HYPERSD_UPDATE_DOCS=1"


def frontend_locales():
    """The locales the newest frontend in .cache-frontend offers (its localeConfig), or None without it."""
    import frontends
    root = frontends.newest_frontend_root()
    if root is None:
        return None
    for path in sorted((root / "assets").glob("i18n-*.js")):
        text = path.read_text(encoding="utf-8", errors="replace")
        found = re.findall(r"""(?:^|[{,])\s*(?:"([\w-]+)"|'([\w-]+)'|([\w]+))\s*:\s*\{\s*text\s*:""", text)
        if found:
            return {a or b or c for a, b, c in found}
    return None


def test_the_languages_are_the_frontends_and_german():
    shipped = {p.name for p in LOCALES.iterdir() if p.is_dir()}
    assert shipped == {"en", *LANGUAGES}
    offered = frontend_locales()
    if offered is None:
        pytest.skip("no newest frontend in .cache-frontend to read its locales from")
    assert "zh" in offered and "en" in offered, offered
    assert offered - {"en"} <= set(LANGUAGES), f"the frontend offers {sorted(offered - set(LANGUAGES) - {'en'})} too"


def protected(text):
    """What a translation must keep as it is: numbers (as a multiset), quoted option values, recipe labels, file
    names and class names."""
    labels = {f.label for f in catalog.CATALOG if f.label in text}
    return (Counter(NUMBER.findall(_without(text, labels))), set(QUOTED.findall(text)) | labels,
            set(IDENTIFIER.findall(text)))


def number_problem(english, translated):
    """A number of the English text missing from the translation, or one the translation added; a small whole
    number may be added where English spells it out ('one-step' -> '1 ステップ')."""
    missing = english - translated
    extra = Counter({n: c for n, c in (translated - english).items() if not re.fullmatch(r"[0-9]", n)})
    if missing or extra:
        return f"numbers: missing {sorted(missing.elements())}, added {sorted(extra.elements())}"
    return None


def _without(text, labels):
    for label in labels:  # a label's own digits are checked with the label
        text = text.replace(label, " ")
    return text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_english_key_is_translated(lang):
    english, other = flatten(load("en")), flatten(load(lang))
    assert sorted(other) == sorted(english), (f"{lang}: missing {sorted(set(english) - set(other))}, "
                                             f"extra {sorted(set(other) - set(english))}")
    empty = [k for k, v in other.items() if not isinstance(v, str) or not v.strip()]
    assert not empty, f"{lang}: empty {empty}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_translation_lost_a_number_or_a_value(lang):
    english, other = flatten(load("en")), flatten(load(lang))
    problems = []
    for key, text in english.items():
        numbers, kept, names = protected(text)
        got = other.get(key, "")
        got_numbers, _, _ = protected(got)
        wrong = number_problem(numbers, got_numbers)
        if wrong:
            problems.append(f"{key}: {wrong}")
        lost = sorted(v for v in kept | names if v not in got)
        if lost:
            problems.append(f"{key}: lost {lost}")
    assert not problems, f"{lang}:\n" + "\n".join(problems)


@pytest.mark.parametrize("lang", ("en",) + LANGUAGES)
def test_no_text_is_read_as_message_syntax(lang):
    bad = {k: v for k, v in flatten(load(lang)).items() if MESSAGE_SYNTAX & set(v)}
    assert not bad, bad


# ------------------------------------------------------------------------------------------ help pages

def sections(text):
    return [line for line in text.splitlines() if line.startswith("## ")]


def split_table(text):
    """(page without its recipe table, table rows as cell lists)."""
    start, end = text.index(TABLE_BEGIN), text.index(TABLE_END)
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text[start:end].splitlines()[1:]
            if line.startswith("|")]
    return text[:start] + text[end + len(TABLE_END):], rows


def page(node, lang=None):
    path = DOCS / f"{node}.md" if lang is None else DOCS / node / f"{lang}.md"
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("node", HELP_PAGES)
def test_help_page_is_translated_whole(node, lang):
    assert (DOCS / node / f"{lang}.md").is_file(), f"no web/docs/{node}/{lang}.md"
    english, translated = page(node), page(node, lang)
    assert MACHINE_DRAFTED in translated, f"{node}/{lang}.md does not say it was machine-drafted"
    assert translated.startswith("# ") and len(sections(translated)) == len(sections(english))
    prose_en, rows_en = split_table(english)
    prose, rows = split_table(translated)
    assert len(rows) == len(rows_en) and len(rows[0]) == len(rows_en[0]) == 8
    for en_row, row in zip(rows_en[2:], rows[2:]):  # file, label, base, steps, cfg, strength, eta: as in English
        assert [row[i] for i in (0, 1, 2, 3, 4, 5, 7)] == [en_row[i] for i in (0, 1, 2, 3, 4, 5, 7)], row
    by_sampler = {}
    for entry, row in zip(catalog.CATALOG, rows[2:]):
        assert by_sampler.setdefault(entry.sampler, row[6]) == row[6], f"{node}/{lang}: one sampler, two texts"
    problems = []
    numbers, _, names = protected(prose_en.replace(MACHINE_DRAFTED, ""))
    got_numbers, _, _ = protected(prose.replace(MACHINE_DRAFTED, ""))
    wrong = number_problem(numbers, got_numbers)
    if wrong:
        problems.append(wrong)
    io_en = "".join(part.split("\n## ", 1)[0] for part in prose_en.split("\n## Inputs")[1:] +
                    prose_en.split("\n## Outputs")[1:])
    for what, found in (("code span", CODE.findall(prose_en)), ("input/output name", ITEM_NAME.findall(io_en)),
                        ("identifier", names)):
        lost = sorted({v for v in found if v not in prose})
        if lost:
            problems.append(f"{what}s lost: {lost}")
    assert not problems, f"{node}/{lang}.md:\n" + "\n".join(problems)
