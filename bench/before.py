"""The "before" checkout for a before/after run (``python -m bench --before REV_OR_DIR``).

The old app runs from a whole other checkout, with that checkout's own ``chatbot`` package (its directory is
the process's cwd and ``PYTHONPATH``; see ``procs.AppProcess.root``), on the same fake upstream, with the same
settings and the same benchmark clients as the current tree. Anything the benchmark does inside an app's
own code (writing a stored conversation, timing the history core) runs in a subprocess of that app's tree.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .procs import MODEL_ID, ROOT


@dataclass
class Checkout:
    """A tree to run Switchboard from: ``root`` holds its ``app.py`` and ``chatbot/``."""

    spec: str  # what was asked for: a directory or a git revision
    root: Path
    commit: str  # the commit it was made from ("" when unknown), with "+dirty" for a modified worktree
    temporary: bool = False  # extracted by us (git archive): removed at the end of the run

    def remove(self) -> None:
        if self.temporary:
            import shutil

            shutil.rmtree(self.root, ignore_errors=True)

    def describe(self) -> dict[str, str]:
        return {"spec": self.spec, "root": str(self.root), "commit": self.commit}


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def commit_of(root: Path) -> str:
    """The commit a checkout is at, "+dirty" when its tracked files differ from it; "" outside git."""
    try:
        head = _git("rev-parse", "--short", "HEAD", cwd=root)
        dirty = _git("status", "--porcelain", "--untracked-files=no", cwd=root)
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+dirty" if dirty else "")


def resolve(spec: str) -> Checkout:
    """A directory holding ``app.py`` is used as it is; anything else is a git revision of this repository,
    extracted with ``git archive`` into a temporary directory (no worktree, no change to the repository)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "app.py").is_file():
            raise SystemExit(f"--before {spec}: no app.py in that directory")
        return Checkout(spec, path.resolve(), commit_of(path))
    try:
        commit = _git("rev-parse", "--verify", "--short", f"{spec}^{{commit}}")
        archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True,
                                 check=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SystemExit(f"--before {spec}: neither a directory with app.py nor a git revision ({exc})") from exc
    root = Path(tempfile.mkdtemp(prefix=f"switchboard-before-{commit}-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    return Checkout(spec, root, commit, temporary=True)


def tree_env(root: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with ``root`` first on ``PYTHONPATH`` and this tree's path removed,
    so ``import chatbot`` finds that tree's package."""
    env = dict(os.environ if env is None else env)
    keep = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != ROOT]
    env["PYTHONPATH"] = os.pathsep.join([str(root), *keep])
    return env


STORE_WRITER = """
import asyncio, json, sys
try:
    from chatbot.core.sqlite_store import SQLiteStore
except ImportError:  # a tree from before the store's split, or before the chatbot/core layout
    try:
        from chatbot.core.store import SQLiteStore
    except ImportError:
        from chatbot.store import SQLiteStore

async def write(path, model, history):
    store = SQLiteStore(path)
    cid = None
    for i in range(0, len(history), 2):
        turn = await store.begin_turn(cid, "", history[i]["content"], model, 0)
        assert turn is not None
        cid = turn.conversation_id
        await store.finish_turn(turn, history[i + 1]["content"], "complete", finish_reason="stop")
    await store.close()
    return cid

spec = json.loads(sys.stdin.read())
print(asyncio.run(write(spec["db"], spec["model"], spec["history"])))
"""


def write_conversation(root: Path, db: Path, history: list[dict]) -> str:
    """Store ``history`` (user/assistant pairs) as one finished conversation in the SQLite file ``db`` with the
    store of the tree at ``root`` (the tree of the app that reads it), owned as an API caller without a token
    is; returns its id."""
    proc = subprocess.run([sys.executable, "-c", STORE_WRITER], cwd=root, env=tree_env(root), text=True,
                          input=json.dumps({"db": str(db), "model": MODEL_ID, "history": history}),
                          capture_output=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"storing a conversation in {root} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip().splitlines()[-1]
