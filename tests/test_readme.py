"""The README's Python example and quick start must stay true."""
import re
import shlex

from conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_python_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "README has no Python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    # the example finds planted anomalies among its ten weirdest objects
    kinds = list(namespace["survey"].truth["anomaly_kind"][namespace["weirdest"]])
    assert sum(k != "normal" for k in kinds) >= 3, kinds
    assert namespace["seq"].order_.size == int(namespace["normal"].sum())


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    section = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [line for line in re.findall(r"```bash\n(.*?)```", section, re.S)[0].splitlines() if line.strip()]
    assert len(commands) == 2
    assert "serendip demo" in commands[0]
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1].strip() in ci.splitlines()


def test_every_cli_verb_in_the_readme_exists():
    from serendip.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    verbs_section = README.split("## Command-line verbs", 1)[1].split("\n## ", 1)[0]
    table_verbs = {shlex.split(m)[0] for m in re.findall(r"^\| `([a-z-]+)[^`]*` \|", verbs_section, re.M)}
    assert len(table_verbs) >= 12
    assert table_verbs and table_verbs <= set(sub.choices), table_verbs - set(sub.choices)
