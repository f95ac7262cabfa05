"""The ``modnas`` console script: every command mirrors its entry point, help needs no heavy import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from projects.cli import COMMANDS, main


def test_top_level_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_help_imports_neither_torch_nor_mlflow(name) -> None:
    """``modnas NAME --help`` in a fresh interpreter: the command's own usage, and torch / mlflow never
    imported (they cost ~5 s; the figure is in the README)."""
    code = (
        "import sys\nfrom projects.cli import main\n"
        f"try:\n    main([{name!r}, '--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = sorted(m for m in ('torch', 'mlflow', 'onnxruntime', 'pandas', 'sklearn') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert f"usage: modnas {name}" in out.replace("\n", " ")
    assert "HEAVY []" in out


def test_command_runs_the_entry_point_with_its_error_contract(capsys) -> None:
    assert main(["search", "--set", "no_such_field=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown config field 'no_such_field'")


def test_benchmark_alone_takes_the_tuned_benchmark_config(monkeypatch, tmp_path) -> None:
    """``-P benchmark=<table>`` with no config: search_nb201.yaml's settings (shortlist, rays), not the embedded
    job's; a config given explicitly is used as is."""
    import projects.search_job

    seen = []
    monkeypatch.setattr(projects.search_job, "run", lambda cfg: seen.append(cfg) or 0)
    table = tmp_path / "t.csv.gz"
    assert main(["search", "--benchmark", str(table)]) == 0
    assert main(["search", "--benchmark", str(table), "--config", "projects/configs/search.yaml"]) == 0
    tuned, embedded = seen
    assert tuned.search.mode == embedded.search.mode == "benchmark"
    assert tuned.search.benchmark.table == str(table)
    assert (tuned.search.shortlist.k, tuned.search.num_rays) == (8, 24)
    assert embedded.search.shortlist.k == 1
