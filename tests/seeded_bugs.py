"""Seeded bugs: does the test suite fail for the defects a user would meet?

    python tests/seeded_bugs.py            # every bug, one at a time (about 15-25 min on 2 cores)
    python tests/seeded_bugs.py --only 4 11 [--list]

For each bug of the table below, the working tree (tracked and untracked files that git does not ignore)
is copied into a temporary folder, the bug is applied there as an exact text replacement, and the tests
that should catch it run against the copy. A replacement whose text is no longer in the code is an error
of the table, not a pass: the table cannot silently go stale. The report lists, per bug, whether the suite
caught it and which tests failed; the exit status is 1 when any bug went unnoticed.

A developer's tool first (CI runs it only when HYPERSD_SEEDED_BUGS=1, see .ci/run): it runs the relevant
test files, not the whole suite, and needs the same environment as the tests (ComfyUI at $COMFYUI_PATH).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bug:
    number: int
    what: str
    path: str  # file of the pack, relative to the repository root
    old: str  # exact text, must occur exactly once
    new: str
    tests: tuple  # test files (or node ids) that must fail


TCD_TESTS = ("tests/test_tcd_math.py", "tests/test_host_sampling.py")
LORA_TESTS = ("tests/test_lora_loader.py", "tests/test_flow_lora.py")

BUGS = (
    Bug(1, "x̂0 returned at the last TCD step", "samplers/tcd.py",
        "            x = x * (1.0 / math.sqrt(1.0 + sigma_s ** 2))", "            x = denoised",
        TCD_TESTS + ("tests/test_server_sampling.py",)),
    Bug(2, "round instead of floor for s", "samplers/tcd.py",
        "    s = torch.floor(torch.tensor(1.0 - eta", "    s = torch.round(torch.tensor(1.0 - eta", TCD_TESTS),
    Bug(3, "no unit-variance start at t=800", "samplers/tcd.py",
        "    return x * (math.sqrt(1.0 + sigma0 ** 2) / sigma0)", "    return x", TCD_TESTS),
    Bug(4, "the flow time scale off by 1000", "nodes/sampling.py",
        "        timesteps = [u * time.scale for u in _flow_times(", "        timesteps = [u * 1000.0 for u in _flow_times(",
        ("tests/test_flow_schedules.py",)),
    Bug(5, "the trailing formula off by one", "samplers/schedules.py",
        "    timesteps = np.round(np.arange(span, 0, -step_ratio)).astype(np.int64) - 1",
        "    timesteps = np.floor(np.arange(span, 0, -step_ratio)).astype(np.int64) - 1",
        ("tests/test_tcd_math.py", "tests/test_flow_schedules.py")),
    Bug(6, "img2img keeping the first instead of the last timesteps", "samplers/schedules.py",
        "    return list(timesteps[len(timesteps) - keep:])", "    return list(timesteps[:keep])",
        ("tests/test_tcd_math.py", "tests/test_flow_schedules.py", "tests/test_host_sampling.py")),
    Bug(7, "PEFT respelling disabled", "core/lora_keys.py",
        "                renames[key] = name + suffix", "                pass", LORA_TESTS),
    Bug(8, "the fit check disabled", "nodes/lora.py",
        "    if missing:\n        raise LoraMismatchError(", "    if False:\n        raise LoraMismatchError(",
        LORA_TESTS),
    Bug(9, "strength ignored", "nodes/lora.py",
        "load_lora_for_models(model, clip, lora_sd, strength, strength)",
        "load_lora_for_models(model, clip, lora_sd, 1.0, 1.0)", LORA_TESTS),
    Bug(10, "a failed download deletes its partial (no resume)", "core/download.py",
        "    except BaseException:\n        _keep(job, partial)\n        raise",
        "    except BaseException:\n        _remove(partial)\n        raise", ("tests/test_download.py",)),
    Bug(11, "the converter dropping reroutes", "workflows/runner/convert.py",
        "        if kind == \"virtual\":\n            if slot < len(node.get(\"inputs\", []) or []):",
        "        if kind == \"virtual\":\n            if False:", ("tests/test_conversion.py",)),
    Bug(12, "recipe outputs swapped (steps <-> cfg)", "nodes/lora.py",
        "clip_out if clip is not None else None, entry.steps, entry.cfg, entry.eta)",
        "clip_out if clip is not None else None, entry.cfg, entry.steps, entry.eta)",
        ("tests/test_lora_loader.py",)),
    Bug(13, "image names from the server saved unchecked", "workflows/runner/client.py",
        "    for part in parts:\n        if part in", "    for part in []:\n        if part in",
        ("tests/test_runner_saving.py",)),
    Bug(14, "a download that failed its sha256 check kept for resuming", "core/download.py",
        "    except ChecksumError:\n        _remove(partial)\n        raise", "    except ChecksumError:\n        raise",
        ("tests/test_download.py",)),
)


def copy_tree(dest):
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    node_modules = REPO / "tests" / "browser" / "node_modules"
    if node_modules.is_dir():
        (dest / "tests" / "browser" / "node_modules").symlink_to(node_modules)


def apply(bug, root):
    path = root / bug.path
    text = path.read_text()
    count = text.count(bug.old)
    if count != 1:
        raise SystemExit(f"bug {bug.number} ({bug.what}): the text to replace occurs {count} times in "
                         f"{bug.path}; update the table in tests/seeded_bugs.py")
    path.write_text(text.replace(bug.old, bug.new))


def run_tests(bug, root):
    cmd = [sys.executable, "-m", "pytest", "-c", "tests/pytest.ini", "-q", "-rf", "--no-header", *bug.tests]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    failed = sorted(set(re.findall(r"^FAILED (\S+)", proc.stdout, re.M)))
    return proc.returncode, failed, proc.stdout[-3000:] + proc.stderr[-2000:]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", type=int, nargs="*", help="bug numbers to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the bugs and exit")
    ap.add_argument("--verbose", action="store_true", help="print pytest's output for missed bugs")
    args = ap.parse_args(argv)
    bugs = [b for b in BUGS if not args.only or b.number in args.only]
    if args.list:
        for b in bugs:
            print(f"{b.number:2d}. {b.what}  [{b.path}]  -> {' '.join(b.tests)}")
        return 0
    rows, missed = [], 0
    for bug in bugs:
        with tempfile.TemporaryDirectory(prefix=f"hypersd-bug{bug.number}-") as tmp:
            root = Path(tmp)
            copy_tree(root)
            apply(bug, root)
            t0 = time.time()
            rc, failed, tail = run_tests(bug, root)
        caught = rc == 1 and bool(failed)
        missed += not caught
        rows.append((bug, caught, failed, time.time() - t0))
        print(f"bug {bug.number:2d} {'CAUGHT' if caught else 'MISSED'} ({time.time() - t0:.0f} s): {bug.what}",
              flush=True)
        if not caught and (args.verbose or rc not in (0, 1)):
            print(tail)
    print("\n| # | seeded bug | caught | failing tests |\n|---|---|---|---|")
    for bug, caught, failed, _ in rows:
        shown = ", ".join(f.split("::", 1)[-1] for f in failed[:6]) + (f" … ({len(failed)})" if len(failed) > 6 else "")
        print(f"| {bug.number} | {bug.what} | {'yes' if caught else '**no**'} | {shown} |")
    print(f"\n{len(rows) - missed} of {len(rows)} seeded bugs caught")
    return 1 if missed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
