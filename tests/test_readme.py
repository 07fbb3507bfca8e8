"""The README's Python examples run as written."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def test_readme_python_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.DOTALL)
    assert blocks, "README has no Python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})
