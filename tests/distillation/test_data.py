"""The distillation.data package: the names other modules import, one text encoder, and no import cycle with pool."""

import ast
from pathlib import Path

import distillation.data as data

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "distillation" / "data"


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_names_other_modules_import_are_still_there():
    for name in (
        "DataError",
        "SketchPairs",
        "FOLDER_SUFFIXES",
        "folder_sketches",
        "list_images",
        "folder_summary",
        "prepare_folder",
        "prepare",
        "HED",
    ):
        assert hasattr(data, name), name
    assert set(data.__all__) <= set(dir(data))


def test_the_package_never_imports_pool_and_pool_never_imports_the_cli():
    for path in PACKAGE.glob("*.py"):
        if path.name != "cli.py":
            assert "distillation.pool" not in imports_of(path), path.name
    assert not any(name.startswith("distillation.data.cli") for name in imports_of(ROOT / "distillation" / "pool.py"))
    assert "distillation.data.cli" not in imports_of(PACKAGE / "__init__.py")


def test_one_text_encoder():
    for path in PACKAGE.glob("*.py"):
        assert "transformers" not in imports_of(path), path.name  # captions go through pipelines.text
