"""The rap-hf CLI: score -> select on a local dataset, YAML --config, --help, errors, and the demo."""

import json
import subprocess
import sys

import datasets
import pytest

from rap_hf.cli import main
from rap_hf.demo.data import tiny_synthetic


def test_top_level_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "score" in out and "select" in out and "demo" in out
    assert main(["frobnicate"]) == 2


@pytest.mark.parametrize("command", ["score", "select", "demo"])
def test_subcommand_help(command):
    result = subprocess.run(
        [sys.executable, "-m", "rap_hf.cli", command, "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "--config" in result.stdout or "--output" in result.stdout
    if command == "score":
        assert "--num_rollouts" in result.stdout and "--lambda_c" in result.stdout


def test_score_then_select_with_yaml_config(tiny_model_dir, tmp_path):
    data_dir = tmp_path / "data"
    tiny_synthetic(4, seed=3).save_to_disk(str(data_dir))
    config = tmp_path / "score.yaml"
    config.write_text(
        f"model: {tiny_model_dir}\ndataset: {data_dir}\nnum_rollouts: 2\nmax_new_tokens: 6\nbatch_size: 2\n"
    )
    assert main(["score", "--config", str(config), "--output", str(tmp_path / "scores")]) == 0
    scored = datasets.load_from_disk(str(tmp_path / "scores"))
    assert len(scored) == 4 and all(len(c) == 2 for c in scored["rap_completions_mm"])
    metadata = json.loads((tmp_path / "scores" / "rap_scoring.json").read_text())
    assert metadata["rap_config"]["num_rollouts"] == 2 and metadata["rows"] == 4

    # lambda_c = -1 keeps every scored row in the CDE stage: a threshold flag must reach selection
    assert (
        main(
            [
                "select",
                "--scores",
                str(tmp_path / "scores"),
                "--output",
                str(tmp_path / "sel"),
                "--lambda_c",
                "-1",
                "--lambda_a",
                "1e9",
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "sel" / "report.json").read_text())
    assert report["counts"]["cde_rejected"] == 0 and report["config"]["lambda_c"] == -1
    selected = datasets.load_from_disk(str(tmp_path / "sel" / "selected"))
    assert len(selected) == report["selected"] and all(selected["rap_selected"])
    markdown = (tmp_path / "sel" / "report.md").read_text()
    assert "| kept |" in markdown
    # the report embeds its figures, and they exist next to it
    assert (
        "![stage_counts.png](stage_counts.png)" in markdown
        and "hist_by_stage_rap_cde.png" in report["figures"]
    )
    assert all((tmp_path / "sel" / name).stat().st_size > 1000 for name in report["figures"])


def test_score_parquet_file_and_max_rows(tiny_model_dir, tmp_path):
    tiny_synthetic(5).to_parquet(str(tmp_path / "data.parquet"))
    args = [
        "score",
        "--model",
        str(tiny_model_dir),
        "--dataset",
        str(tmp_path / "data.parquet"),
        "--output",
        str(tmp_path / "s"),
        "--num_rollouts",
        "1",
        "--max_new_tokens",
        "4",
        "--max_rows",
        "2",
        "--compute_ace",
        "false",
    ]
    assert main(args) == 0
    assert len(datasets.load_from_disk(str(tmp_path / "s"))) == 2


def test_score_errors_are_clear(tiny_model_dir, tmp_path, capsys):
    tiny_synthetic(2).save_to_disk(str(tmp_path / "d"))
    assert (
        main(
            [
                "score",
                "--model",
                str(tmp_path / "missing"),
                "--dataset",
                str(tmp_path / "d"),
                "--output",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    args = [
        "score",
        "--model",
        str(tiny_model_dir),
        "--dataset",
        str(tmp_path / "d"),
        "--output",
        str(tmp_path / "o"),
        "--prompt_column",
        "question",
    ]
    assert main(args) == 2
    assert "available columns" in capsys.readouterr().err
    assert (
        main(
            [
                "score",
                "--model",
                str(tiny_model_dir),
                "--dataset",
                str(tmp_path / "d"),
                "--output",
                str(tmp_path / "o"),
                "--num_rollouts",
                "0",
            ]
        )
        == 2
    )
    assert "num_rollouts must be an integer >= 1" in capsys.readouterr().err


def test_demo_runs_end_to_end_with_a_tiny_model(tmp_path, capsys):
    args = [
        "demo",
        "--output",
        str(tmp_path / "demo"),
        "--model",
        "tiny",
        "--dataset",
        "builtin:tiny-synthetic",
        "--split",
        "train",
        "--rows",
        "4",
        "--num_rollouts",
        "1",
        "--max_new_tokens",
        "4",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "report:" in out
    report = json.loads((tmp_path / "demo" / "selection" / "report.json").read_text())
    assert report["rows"] == 4 and sum(report["counts"].values()) == 4
