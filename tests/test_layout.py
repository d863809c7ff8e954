"""The layout is the architecture: the conversation core (``chatbot/core``) imports no face (``chatbot/web``,
``chatbot/http``) and neither framework; the faces import the core, never each other. And it stays readable:
no module of the app or the benchmark over ~400 lines, no function over ~60."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "chatbot"
FRAMEWORKS = ("gradio", "gradio_client", "fastapi", "starlette", "uvicorn")
MODULE_LINES = 400  # the most lines a module may have
FUNCTION_LINES = 60  # the most lines a function may have, from its ``def`` to its last line
#: Modules (paths from the repository's root) that may pass the limits: only a generated table (literal rows,
#: no logic) belongs here, each with why. None today.
ALLOWED: dict[str, str] = {}


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


def sized_modules() -> list[Path]:
    """Every module of the app (chatbot/, app.py) and of the benchmark (bench/), but the allowed tables."""
    paths = [*PACKAGE.rglob("*.py"), *(ROOT / "bench").rglob("*.py"), ROOT / "app.py"]
    return sorted(p for p in paths if p.relative_to(ROOT).as_posix() not in ALLOWED)


def test_no_module_is_over_400_lines() -> None:
    long = {p.relative_to(ROOT).as_posix(): n for p in sized_modules()
            if (n := len(p.read_text().splitlines())) > MODULE_LINES}
    assert long == {}, "split these into modules named after nouns"


def test_no_function_is_over_60_lines() -> None:
    long = {}
    for path in sized_modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT).as_posix()}:{node.lineno} {node.name}"] = length
    assert long == {}, "split these into smaller functions"
