"""The README is the contract: its Python example runs and does what it says."""
import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs():
    text = README.read_text()
    code = re.search(r"## The Python API in a few lines\n\n```python\n(.*?)```", text, re.S).group(1)
    scope = {}
    exec(compile(code, str(README), "exec"), scope)
    # 8 restarts trained; the gradient check passed (it raises otherwise); losses per restart
    assert scope["result"].history["sigma2"].shape == (500, 8)
    assert scope["loss"].shape == (8,) and np.all(np.isfinite(scope["loss"]))
    assert set(scope["grads"]) == set(scope["params"])


def test_readme_leads_with_the_two_commands():
    head = README.read_text().split("## The Python API")[0]
    assert "make test" in head and "make verify" in head
    assert "make test" in (README.parent / ".ci" / "run").read_text()


def test_readme_testing_example_runs_and_catches_a_wrong_backward_pass():
    text = README.read_text()
    code = re.search(r"### Property-based gradient tests for your own layers\n.*?```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, str(README), "exec"), {})                         # the correct layer passes
    broken = code.replace("return 2 * x", "return x")                    # the factor 2 forgotten
    assert broken != code
    with pytest.raises(AssertionError, match="gradient check"):
        exec(compile(broken, str(README), "exec"), {})


def test_every_readme_command_target_exists():
    text = README.read_text()
    makefile = (README.parent / "Makefile").read_text()
    for target in set(re.findall(r"^make ([a-z-]+)", text, re.M)):
        assert re.search(rf"^{target}:", makefile, re.M), f"README uses make {target}, which the Makefile lacks"
