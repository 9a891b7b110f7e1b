"""The README is the contract: its Python example runs and does what it says."""
import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs():
    text = README.read_text()
    code = re.search(r"## The Python API in a few lines\n\n```python\n(.*?)```", text, re.S).group(1)
    scope = {}
    exec(compile(code, str(README), "exec"), scope)
    # 8 restarts trained; the gradient check passed (it raises otherwise); losses per restart
    assert scope["result"].history["sigma2"].shape == (2000, 8)
    assert scope["loss"].shape == (8,) and np.all(np.isfinite(scope["loss"]))
    assert set(scope["grads"]) == set(scope["params"])


def test_readme_leads_with_the_two_commands():
    head = README.read_text().split("## The Python API")[0]
    assert "make test" in head and "make verify" in head
    assert "make test" in (README.parent / ".ci" / "run").read_text()
