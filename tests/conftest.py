"""Test set-up shared by every test module.

The pack is a ComfyUI custom-node folder imported under its folder name with relative imports, so the
tests import it the same way: as a package (``hypersd_pack``) whose ``__path__`` is the repository root.
The package's own ``__init__`` (which needs ComfyUI) is not executed for the pure modules
(``hypersd_pack.samplers``, ``hypersd_pack.core.catalog``, ...); tests that need ComfyUI use the
``comfy_host`` fixture from ``tests/host.py``.
"""
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACK = "hypersd_pack"

if PACK not in sys.modules:
    _pkg = types.ModuleType(PACK)
    _pkg.__path__ = [str(REPO)]
    _pkg.__file__ = str(REPO / "__init__.py")
    _pkg.__package__ = PACK
    sys.modules[PACK] = _pkg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from host import comfy_host, comfy_server  # noqa: E402,F401  (fixtures)


import gc  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_comfy_models():
    """After each module, drop models an in-process ComfyUI still holds (this machine has 24 GB)."""
    yield
    mm = sys.modules.get("comfy.model_management")
    if mm is not None:
        mm.unload_all_models()
        mm.soft_empty_cache()
    gc.collect()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` run only with HYPERSD_SLOW=1; otherwise they are deselected (not skipped), so a
    default run reports what it ran."""
    import os
    if os.environ.get("HYPERSD_SLOW") == "1":
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
