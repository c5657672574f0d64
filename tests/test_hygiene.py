"""Import hygiene: the light commands start without torch or textual (their start-up budget,
bench/NOTES.md §5), and the engine (``core``) never reaches for a face (``tui``, textual, rich,
typer), neither at import nor inside a function."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FACES = ("prunetui.tui", "textual", "rich", "typer")


def _imported_after(argv: list[str], env: dict[str, str]) -> list[str]:
    code = ("import sys\n"
            f"sys.argv = ['prunetui', *{argv!r}]\n"
            "from prunetui.tui.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'textual', 'pydantic') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    return list(eval(out.stdout.strip().splitlines()[-1]))  # a printed list of names


def _store_with_a_run(root: Path) -> None:
    """A finished run written through the store alone (no engine, so no torch)."""
    from test_app import prepared_store

    prepared_store(root)


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["sweep", "--help"],
                                  ["runs"], ["runs", "--json"], ["export"],
                                  ["export", "--format", "csv"]])
def test_light_commands_import_neither_torch_nor_textual(tmp_path: Path,
                                                          argv: list[str]) -> None:
    _store_with_a_run(tmp_path / "results")
    env = {**os.environ, "PRUNETUI_RESULTS": str(tmp_path / "results")}
    assert _imported_after(argv, env) == []


def _core_imports() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if any(name == f or name.startswith(f + ".") for f in FACES):
                    found.append((str(path.relative_to(ROOT)), node.lineno, name))
    return found


def test_core_never_imports_a_face() -> None:
    assert _core_imports() == []


def test_the_core_import_check_sees_a_lazy_import(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The check reads every import statement, those inside functions too."""
    fake = tmp_path / "core"
    fake.mkdir()
    (fake / "x.py").write_text("def f():\n    from prunetui.tui.cli import app\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _core_imports() == [("core/x.py", 2, "prunetui.tui.cli")]


def test_importing_all_of_core_loads_no_face() -> None:
    code = ("import importlib, pkgutil, sys\n"
            "import prunetui.core as core\n"
            "for m in pkgutil.walk_packages(core.__path__, 'prunetui.core.'):\n"
            "    if m.name != 'prunetui.core.sweep.ray':\n"  # needs the optional ray
            "        importlib.import_module(m.name)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{('textual', 'rich', 'typer')!r} or m.startswith('prunetui.tui')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
