"""README.md's Python blocks run, in order, in one namespace, in a temporary working folder and
home holding the files they name (random weights; tests/docs_namespace.py).  A block runs as
written, or at the small sizes that the ``<!-- readme-test: replace "A" "B"; ... -->`` comment
right above it states (each replacement must apply)."""

import os
import re
import time
from pathlib import Path

import pytest

from jaxretina.compilation_cache import CompileCount
from tests import docs_namespace

README = Path(__file__).resolve().parents[1] / "README.md"
_DIRECTIVE = re.compile(r"<!-- readme-test:(.*?)-->")
_REPLACE = re.compile(r'replace "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"')


def readme_blocks(text: str) -> list[tuple[int, str, list[tuple[str, str]]]]:
    """``(line, code, replacements)`` of every python block."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i + 1
            end = next(j for j in range(start, len(lines)) if lines[j].strip() == "```")
            above = lines[i - 1] if i else ""
            found = _DIRECTIVE.search(above)
            pairs = []
            if found:
                unescape = lambda t: t.encode().decode("unicode_escape")  # noqa: E731 - "\n" in a pattern
                pairs = [(unescape(a), unescape(b)) for a, b in _REPLACE.findall(found.group(1))]
            blocks.append((start, "\n".join(lines[start:end]), pairs))
            i = end
        i += 1
    return blocks


def make_more_files(root: Path) -> None:
    import torch
    import torchvision

    from tests.reference.driu_torch import random_driu_weights
    from tests.test_driu_conversion import deepdraw_state

    torch.save({"model": deepdraw_state(random_driu_weights("vessel", seed=2))}, root / "driu_deepdraw.pth")
    inception = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    torch.save(inception.state_dict(), root / "inception_v3_google-0cc3c7bd.pth")
    os.symlink(root / "inception_v3_google-0cc3c7bd.pth", root / "inception.pth")
    torch.save(torchvision.models.resnet101(num_classes=2).state_dict(), root / "resnet101.pth")


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = readme_blocks(README.read_text())
    assert len(blocks) >= 5
    docs_namespace.make_files(tmp_path)
    make_more_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    names: dict = {"__name__": "readme"}
    for line, code, pairs in blocks:
        for old, new in pairs:
            assert old in code, f"README.md line {line}: the readme-test replacement {old!r} does not apply"
            code = code.replace(old, new)
        t0 = time.perf_counter()
        try:
            with CompileCount() as count:
                exec(compile(code, f"README.md:{line}", "exec"), names)
        except Exception as err:
            raise AssertionError(f"README.md block at line {line} failed: {type(err).__name__}: {err}") from err
        print(f"README.md block at line {line}: {time.perf_counter() - t0:.1f} s, {count.programs} programs")
