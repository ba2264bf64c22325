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


BUGS = ()  # filled below


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
