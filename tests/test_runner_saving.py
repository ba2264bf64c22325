"""Saved images stay inside --out: a server (a stand-in that misbehaves on purpose, tests/fakecomfy.py) that
names an image ``../x.png``, ``/etc/x.png``, a subfolder with ``..`` ... gets one line of refusal, exit status 2,
and nothing is written anywhere -- neither outside --out nor, since every name is checked first, inside."""
import json
import os
from pathlib import Path

import pytest

from fakecomfy import PNG, FakeComfy
from hypersd_pack.workflows.runner import cli

REPO = Path(__file__).resolve().parents[1]
INFO = json.loads((REPO / "tests" / "data" / "object_info.json").read_text())
WORKFLOW = REPO / "workflows" / "hyper-sd15-1step-unified-tcd.json"
GOOD = {"filename": "good.png", "subfolder": "", "type": "output"}


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def run(tmp_path, images, capsys):
    """The command against a server that answers with ``images``; (exit status, stderr, out folder, views)."""
    out = tmp_path / "work" / "out"
    with FakeComfy(object_info=INFO, images=images) as server:
        code = cli.main([str(WORKFLOW), "--server", server.url, "--out", str(out)])
    return code, capsys.readouterr().err.strip(), out, server.views


@pytest.mark.parametrize("image", [
    {"filename": "../x.png", "subfolder": ""},
    {"filename": "../../x.png", "subfolder": "a"},
    {"filename": "/tmp/x.png", "subfolder": ""},
    {"filename": "x.png", "subfolder": "/tmp"},
    {"filename": "x.png", "subfolder": "../.."},
    {"filename": "x.png", "subfolder": "a/../../.."},
    {"filename": "a/../../x.png", "subfolder": ""},
    {"filename": "..\\x.png", "subfolder": ""},
    {"filename": "x.png", "subfolder": "..\\.."},
    {"filename": "C:x.png", "subfolder": ""},
    {"filename": "x\x00.png", "subfolder": ""},
    {"filename": "..", "subfolder": ""},
    {"filename": "", "subfolder": ""},
    {"filename": None, "subfolder": ""},
])
def test_names_that_leave_out_are_refused_and_nothing_is_written(tmp_path, capsys, image):
    code, err, out, views = run(tmp_path, [GOOD, dict(image, type="output")], capsys)
    assert code == 2
    assert err.startswith("error: the server at http://127.0.0.1:") and "\n" not in err, err
    assert repr(image["filename"]) in err and "nothing was saved" in err
    assert files_under(tmp_path) == [] and views == []  # every name checked before the first byte


def test_subfolders_inside_out_are_kept(tmp_path, capsys):
    images = [GOOD, {"filename": "b.png", "subfolder": "batch/one", "type": "output"},
              {"filename": "c.png", "subfolder": "./x", "type": "temp"}]
    code, err, out, views = run(tmp_path, images, capsys)
    assert code == 0, err
    assert files_under(out) == ["batch/one/b.png", "good.png", "x/c.png"]
    assert (out / "batch" / "one" / "b.png").read_bytes() == PNG
    assert [v["subfolder"] for v in views] == ["", "batch/one", "./x"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_a_symlinked_folder_inside_out_does_not_lead_outside(tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out = tmp_path / "work" / "out"
    out.mkdir(parents=True)
    (out / "link").symlink_to(outside)
    code, err, _, _ = run(tmp_path, [{"filename": "x.png", "subfolder": "link", "type": "output"}], capsys)
    assert code == 2 and "symbolic link" in err and "\n" not in err
    assert list(outside.iterdir()) == []
