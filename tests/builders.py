"""Test builders shared by every tier: one place instead of one copy per test file."""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from schemas.envelope import derived_event_id
from schemas.events import PolicyUpdated
from schemas.policy import Policy, Thresholds


def policy_update(at: datetime, version: int = 2, **thresholds: Any) -> PolicyUpdated:
    """A `policy.updated` at `at`: the default policy with these thresholds changed; its id
    comes from what it says, so the same change built twice is the same event."""
    changed = Thresholds().model_copy(update=thresholds)
    return PolicyUpdated.create(
        event_id=derived_event_id("test-policy", at, version, sorted(thresholds.items())),
        ts=at,
        producer="test",
        **{**Policy().model_dump(), "version": version, "thresholds": changed.model_dump()},
    )


class ManualClock:
    """A clock the test moves by hand: call it for the time, set `now` to move it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# --- examples in the docs ----------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SOURCES = ("README.md", "schemas", "streams", "projections")
_FENCED_PYTHON = re.compile(r"^([ \t]*)```python\n(.*?)^\1```[ \t]*$", re.S | re.M)


@dataclass(frozen=True)
class DocExample:
    """A fenced ```python block of the README or of a docstring, ready to run."""

    where: str  # "README.md:113", "streams/sdk/client.py:AsyncClient"
    code: str

    def run(self, replace: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Execute the block as a script (each old text of `replace` swapped for its new one
        first, e.g. the broker address); returns its globals."""
        code = self.code
        for old, new in (replace or {}).items():
            if old not in code:
                raise AssertionError(f"{self.where}: the example no longer contains {old!r}")
            code = code.replace(old, new)
        namespace: dict[str, Any] = {"__name__": "__doc_example__"}
        exec(compile(code, self.where, "exec"), namespace)
        return namespace


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line of the opening fence, dedented code) of each fenced python block in `text`."""
    return [
        (text.count("\n", 0, match.start()) + 1, textwrap.dedent(match.group(2)))
        for match in _FENCED_PYTHON.finditer(text)
    ]


def _docstrings(path: Path) -> Iterator[tuple[str, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node, clean=True)
            if docstring:
                yield getattr(node, "name", "module"), docstring


def doc_examples(root: Path = ROOT) -> list[DocExample]:
    """Every fenced python block of the README and of the docstrings of the packages."""
    found: list[DocExample] = []
    for source in EXAMPLE_SOURCES:
        path = root / source
        if path.is_file():
            found += [
                DocExample(f"{source}:{line}", code)
                for line, code in python_blocks(path.read_text())
            ]
            continue
        for module in sorted(path.rglob("*.py")):
            name = module.relative_to(root).as_posix()
            for owner, docstring in _docstrings(module):
                found += [
                    DocExample(f"{name}:{owner}", code) for _, code in python_blocks(docstring)
                ]
    return found


def fake_openai(prompt_tokens: int = 1000, completion_tokens: int = 200) -> ModuleType:
    """A stand-in `openai` module: `chat.completions.create` answers with fixed usage."""

    def create(*, model: str, **_: Any) -> dict[str, Any]:
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        return {"model": model, "usage": usage}

    module = ModuleType("openai")
    module.chat = SimpleNamespace(completions=SimpleNamespace(create=create))  # type: ignore[attr-defined]
    return module
