"""docs/add-a-rule.md, followed from its own text in a scratch copy: the blocks marked ``file=PATH`` are
appended to those files and the blocks marked ``run=...`` are run with bash, as a newcomer would."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "add-a-rule.md"
BLOCK = re.compile(r"^```(\w+) (file|run)=(\S+)\n(.*?)^```$", re.S | re.M)


def blocks() -> list[tuple[str, str, str]]:
    return [(kind, target, body) for _, kind, target, body in BLOCK.findall(GUIDE.read_text(encoding="utf-8"))]


def test_a_newcomer_adds_mercaptopurine_with_methotrexate_from_the_guide(tmp_path: Path):
    for folder in ("service", "hooks", "rules", "fhir_mappers", "examples"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    cli = tmp_path / ".venv" / "bin" / "azathioprine-cds"
    cli.parent.mkdir(parents=True)
    cli.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "import sys; from service.cli import main; '
                   f'sys.exit(main(sys.argv[1:]))" "$@"\n', encoding="utf-8")
    cli.chmod(cli.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path), "HOME": str(tmp_path)}
    steps = blocks()
    assert [k for k, _, _ in steps] == ["file", "run", "file", "run"], steps
    outputs = {}
    for kind, target, body in steps:
        if kind == "file":
            path = tmp_path / target
            path.write_text(path.read_text(encoding="utf-8") + body, encoding="utf-8")
        else:
            outputs[target] = subprocess.run(["bash", "-e", "-c", body], cwd=tmp_path, env=env, capture_output=True,
                                             text=True, timeout=180)
    stop = outputs["expect-stop"]
    assert stop.returncode == 2 and "Traceback" not in stop.stderr, stop.stderr
    assert "interaction-methotrexate" in stop.stderr and "[others.methotrexate]" in stop.stderr, stop.stderr
    cards = outputs["cards"]
    assert cards.returncode == 0, cards.stderr
    block = cards.stdout.split("rule: interaction-methotrexate")
    assert len(block) == 2, cards.stdout
    card_head = block[0].rstrip().splitlines()[-1]
    assert card_head.startswith("[WARNING]") and "methotrexate" in card_head.lower(), cards.stdout
    assert block[1].splitlines()[0].strip().startswith("source: Mercaptopurine"), cards.stdout
    assert not os.path.exists(ROOT / "mtx.json")  # the checkout itself is untouched
