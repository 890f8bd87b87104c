"""The embedding guide's examples are real: they run, and their assertions hold."""
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "embedding.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_guide_has_its_examples():
    assert len(EXAMPLES) == 2  # in memory, then on a durable store


@pytest.mark.parametrize("number", range(len(EXAMPLES)))
def test_embedding_example_runs(number, monkeypatch):
    monkeypatch.chdir(DOC.parent.parent)
    exec(compile(EXAMPLES[number], str(DOC), "exec"), {"__name__": "embedding_example"})
