"""The README's one-file task example runs as written, and its Quick start names real commands."""
import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_new_task_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    example = next(block for block in python_blocks() if "TASKS.register" in block)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    records = namespace["records"]
    assert [r["labeled"] for r in records] == [20, 30, 40]
    assert (tmp_path / "runs" / "line-fit" / "pool.json").exists()


def test_quick_start_is_two_commands():
    quick = README.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [line for line in quick.splitlines() if line.strip()]
    assert len(lines) == 2
    assert "tools/train.py --task classification" in lines[0] and "pytest" in lines[1]


def test_python_usage_example_runs():
    example = next(block for block in python_blocks() if "build_loss_model" in block)
    smaller = (example.replace("train_size=5000, test_size=500", "train_size=600, test_size=20")
               .replace("epochs=5", "epochs=1").replace("budget=100, subset_size=2000", "budget=10, subset_size=50"))
    assert smaller != example
    namespace: dict = {}
    exec(compile(smaller, "README.md", "exec"), namespace)
    assert len(namespace["selection"].indices) == 10
    assert not set(namespace["selection"].indices) & set(range(500))
