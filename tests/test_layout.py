"""The layout is the architecture: the conversation core (``chatbot/core``) imports no face (``chatbot/web``,
``chatbot/http``) and neither framework; the faces import the core, never each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "chatbot"
FRAMEWORKS = ("gradio", "gradio_client", "fastapi", "starlette", "uvicorn")


def imports_of(path: Path) -> set[str]:
    """Every module a file imports (absolute names; the package uses no relative imports)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import (write chatbot.<package>.<module>)"
            found.add(node.module or "")
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def forbidden(names: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


def test_the_core_imports_no_face_and_no_web_framework() -> None:
    bad = {
        path.name: forbidden(imports_of(path), ("chatbot.web", "chatbot.http", *FRAMEWORKS))
        for path in sorted((PACKAGE / "core").glob("*.py"))
    }
    assert {name: found for name, found in bad.items() if found} == {}


def test_each_face_imports_the_core_but_not_the_other_face() -> None:
    for face, other in (("web", "chatbot.http"), ("http", "chatbot.web")):
        bad = {path.name: forbidden(imports_of(path), (other,)) for path in sorted((PACKAGE / face).glob("*.py"))}
        assert {name: found for name, found in bad.items() if found} == {}, face


def test_importing_the_whole_core_loads_no_web_framework() -> None:
    """The same contract at run time (an import inside a function, or one made by a dependency, counts)."""
    modules = sorted(f"chatbot.core.{p.stem}" for p in (PACKAGE / "core").glob("*.py") if p.stem != "__init__")
    code = (
        f"import sys\nfor m in {modules!r}: __import__(m)\n"
        f"print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r} "
        "or m.startswith(('chatbot.web', 'chatbot.http')))))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == []
