"""The ComfyUI frontends the browser tests run on, as a pytest parameter.

- ``pinned``: the comfyui-frontend-package the host's requirements pin (ComfyUI 0.3.64: 1.27.10; 0.33.0:
  1.48.7), served by the host itself.
- ``newest``: the newest package, which .ci/run installs into ``.cache-frontend/<version>``
  (``$HYPERSD_FRONTEND_ROOT`` overrides it), served with ``--front-end-root``.
- one more per folder in ``$HYPERSD_EXTRA_FRONTENDS`` (``os.pathsep``-separated ``.../comfyui_frontend_package/
  static`` folders, e.g. 1.27.10 next to the 0.33.0 host), labelled by their version.

``$HYPERSD_FRONTENDS`` (comma-separated ids, e.g. ``pinned``) keeps only those: .ci/run's second host runs its
pinned frontend only (the newest already ran on the main host).

Tests never branch on the label: the browser scripts report the page's own frontend version and what it shows.
"""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _version_key(folder):
    return [int(x) for x in folder.name.split(".") if x.isdigit()]


def newest_frontend_root():
    env = os.environ.get("HYPERSD_FRONTEND_ROOT")
    if env:
        return Path(env)
    found = sorted((REPO / ".cache-frontend").glob("*/comfyui_frontend_package/static"),
                   key=lambda p: _version_key(p.parents[1]))
    return found[-1] if found else None


def root_version(root):
    """The package version of a ``.../comfyui_frontend_package/static`` folder (from its dist-info), or its path."""
    infos = sorted(Path(root).parents[1].glob("comfyui_frontend_package-*.dist-info"))
    return infos[-1].name[len("comfyui_frontend_package-"):-len(".dist-info")] if infos else str(root)


def extra_roots():
    return [Path(p) for p in os.environ.get("HYPERSD_EXTRA_FRONTENDS", "").split(os.pathsep) if p.strip()]


def frontend_ids():
    ids = ["pinned", "newest"] + [f"v{root_version(r)}" for r in extra_roots()]
    keep = [x.strip() for x in os.environ.get("HYPERSD_FRONTENDS", "").split(",") if x.strip()]
    unknown = sorted(set(keep) - set(ids))
    if unknown:
        raise ValueError(f"HYPERSD_FRONTENDS names {', '.join(unknown)}; the frontends are {', '.join(ids)}")
    return [x for x in ids if x in keep] if keep else ids


def resolve(param):
    """(label, --front-end-root or None) for a ``frontend_ids()`` entry; skips with a message when absent."""
    if param == "pinned":
        return "pinned", None
    if param == "newest":
        root = newest_frontend_root()
        if root is None or not (root / "index.html").is_file():
            pytest.skip("needs the newest comfyui-frontend-package in .cache-frontend/<version> or "
                        "HYPERSD_FRONTEND_ROOT (.ci/run installs it: pip install --target .cache-frontend/<version> "
                        "comfyui-frontend-package==<version>)")
        return "newest", root
    for root in extra_roots():
        if f"v{root_version(root)}" == param:
            if not (root / "index.html").is_file():
                pytest.skip(f"HYPERSD_EXTRA_FRONTENDS names {root}, which holds no index.html")
            return param, root
    raise KeyError(param)


def version_tuple(text):
    """'1.48.7' -> (1, 48, 7); None or an unparsable text -> None."""
    try:
        return tuple(int(x) for x in str(text).split(".")[:3])
    except ValueError:
        return None
