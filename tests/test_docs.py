"""The repository explains itself: Markdown links stay inside it and resolve; the import rules
docs/architecture.md states hold."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_PATH = re.compile(r"`(\.\./[^`\s]+)`")


def _markdown_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"], cwd=REPO,
                             capture_output=True, text=True, check=True)
        return [REPO / p for p in out.stdout.split()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        return [p for p in REPO.rglob("*.md") if ".venv" not in p.parts and ".git" not in p.parts]


def link_problems(files: list[Path], root: Path) -> list[str]:
    problems = []
    for md in files:
        text = md.read_text(encoding="utf-8")
        targets = [(m.group(1), "link") for m in LINK.finditer(text)]
        targets += [(m.group(1), "path") for m in CODE_PATH.finditer(text)]
        for target, kind in targets:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same page
            path = (md.parent / target.split("#", 1)[0]).resolve()
            where = f"{md.relative_to(root)}: {kind} {target!r}"
            if not path.is_relative_to(root):
                problems.append(f"{where} points outside the repository")
            elif kind == "link" and not path.exists():
                problems.append(f"{where} points at a file that does not exist")
    return problems


def test_markdown_links_stay_in_the_repository_and_resolve():
    files = _markdown_files()
    assert {"README.md", "CONTRIBUTING.md", "docs/architecture.md"} <= {str(f.relative_to(REPO)) for f in files}
    assert link_problems(files, REPO) == []


def test_the_link_check_catches_outside_and_missing_targets(tmp_path):
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text("See [design](../../shared/ARCHITECTURE.md), [gone](missing.md), [ok](page.md), "
                    "[web](https://example.org/x.md) and `../../outside.md`.\n")
    problems = link_problems([page], tmp_path)
    assert len(problems) == 3, problems
    assert "link '../../shared/ARCHITECTURE.md' points outside" in problems[0]
    assert "'missing.md' points at a file that does not exist" in problems[1]
    assert "path '../../outside.md' points outside" in problems[2]


def test_backend_processes_import_neither_ray_nor_a_gpu_sdk():
    code = ("import sys; import raygen.actors._child, raygen.actors.bullet.worker, raygen.actors.isaac.worker, "
            "raygen.actors.droid.worker, raygen.actors.droid.backend, raygen.actors.zed.worker, "
            "raygen.actors.zed.backend, raygen.datasets.episode; "
            "print(sorted(m for m in ('ray', 'pyzed', 'isaacsim', 'omni') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
