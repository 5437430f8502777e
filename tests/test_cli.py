"""The rap-hf CLI: score -> select on a local dataset, YAML --config, --help, errors, the launcher, the demo."""

import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml

from rap_hf.cli import main
from rap_hf.demo.data import tiny_synthetic
from rap_hf.errors import RAPUserError


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


@pytest.mark.filterwarnings("ignore::rap_hf.scoring.alarms.DegenerateScoresWarning")
def test_score_decisive_then_full_completes_the_run(tiny_model_dir, tmp_path, capsys):
    tiny_synthetic(3).to_parquet(str(tmp_path / "data.parquet"))
    args = ["score", "--model", str(tiny_model_dir), "--dataset", str(tmp_path / "data.parquet")]
    args += ["--output", str(tmp_path / "s"), "--num_rollouts", "2", "--max_new_tokens", "4"]
    assert main([*args, "--text_arm", "decisive"]) == 0
    # the random tiny model solves nothing: acc_mm = 0 < lambda_c, so decisive ran no text-only rollout
    assert datasets.load_from_disk(str(tmp_path / "s"))["rap_text_rollouts"] == [0.0] * 3
    capsys.readouterr()
    assert main(args) == 0
    assert "completed the decisive run: 6 text-only rollouts added to 3 rows" in capsys.readouterr().out
    assert datasets.load_from_disk(str(tmp_path / "s"))["rap_text_rollouts"] == [2.0] * 3


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


# ------------------------------------------------------------------------------------ dispatch and errors


def test_top_level_help_imports_no_command():
    """`rap-hf --help` stays fast: no command module, no trl/torch."""
    code = (
        "import sys; from rap_hf.cli import main; assert main(['--help']) == 0; "
        "loaded = [m for m in ('trl', 'torch', 'datasets', 'rap_hf.cli.score') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_old_names_are_still_importable():
    from rap_hf.cli import (
        DemoArguments,
        ScoreArguments,
        TrainArguments,
        demo,
        demo_main,
        score,
        score_main,
        select,
        select_main,
        train,
    )

    assert score_main is score.main and ScoreArguments is score.ScoreArguments
    assert select_main is select.main and demo_main is demo.main and DemoArguments is demo.DemoArguments
    assert TrainArguments is train.TrainArguments


def test_a_user_error_is_one_line_and_status_2(tmp_path, monkeypatch, capsys):
    assert main(["select", "--scores", str(tmp_path / "missing"), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --scores") and "does not exist" in err and "Traceback" not in err

    def refuse(args, config):
        raise RAPUserError("fix this flag")

    monkeypatch.setattr("rap_hf.cli.select.main", refuse)
    assert main(["select", "--scores", "s", "--output", "o"]) == 2
    assert capsys.readouterr().err == "error: fix this flag\n"


@pytest.mark.parametrize("error", [RuntimeError("a bug"), KeyError("rap_cde"), ValueError("library bug")])
def test_other_errors_keep_their_traceback(error, monkeypatch):
    """Only `RAPUserError` becomes a one-line message; anything else is a bug and propagates."""

    def broken(args, config):
        raise error

    monkeypatch.setattr("rap_hf.cli.select.main", broken)
    with pytest.raises(type(error)) as raised:
        main(["select", "--scores", "s", "--output", "o"])
    assert raised.value is error


def test_unknown_arguments_are_a_user_error(tmp_path, capsys):
    assert main(["select", "--scores", "s", "--output", "o", "--lambda_x", "1"]) == 2
    assert "unknown arguments ['--lambda_x', '1']" in capsys.readouterr().err
    config = tmp_path / "select.yaml"
    config.write_text("scores: s\noutput: o\nlamda_c: 0.5\n")
    assert main(["select", "--config", str(config)]) == 2
    assert "--lamda_c" in capsys.readouterr().err


def test_explore_takes_the_dataset_bare():
    from rap_hf.cli.explore import make_parser

    (args,) = make_parser().parse_args_and_config(["scores/", "--port", "7999"])
    assert args.dataset == "scores/" and args.port == 7999
    (args,) = make_parser().parse_args_and_config(["--dataset", "ORG/NAME"])
    assert args.dataset == "ORG/NAME"


# --------------------------------------------------------------------------------------------- launching


@pytest.fixture
def fake_accelerate(monkeypatch):
    """Replace accelerate's launch with a recorder of its arguments and of the --config YAML it was given."""
    launches = []

    def launch_command(args):
        config = Path(args.training_script_args[args.training_script_args.index("--config") + 1])
        launches.append({"args": args, "config": config, "values": yaml.safe_load(config.read_text())})

    monkeypatch.setattr("accelerate.commands.launch.launch_command", launch_command)
    return launches


def test_score_accelerate_config_launches_the_same_command(tmp_path, fake_accelerate, capsys):
    from rap_hf.accelerate_configs import resolve_accelerate_config

    argv = ["score", "--model", "m", "--dataset", "d", "--output", str(tmp_path / "o"), "--num_rollouts", "3"]
    assert main([*argv, "--accelerate_config", "single_gpu", "--num_processes", "2"]) == 0
    (launch,) = fake_accelerate
    args = launch["args"]
    assert args.config_file == str(resolve_accelerate_config("single_gpu")) and args.num_processes == 2
    assert args.module and args.training_script == "rap_hf" and args.training_script_args[0] == "score"
    values = launch["values"]
    assert values["model"] == "m" and values["output"] == str(tmp_path / "o") and values["num_rollouts"] == 3
    assert "accelerate_config" not in values and "num_processes" not in values  # launched processes score
    assert not launch["config"].exists()  # a temporary file, removed after the launch
    assert "launching: accelerate launch --config_file" in capsys.readouterr().out
    # every launched process parses that YAML back into the same arguments, and scores in place
    from rap_hf.cli.score import make_parser

    copy = tmp_path / "launched.yaml"
    copy.write_text(yaml.safe_dump(values))
    score_args, config = make_parser().parse_args_and_config(["--config", str(copy)])
    assert score_args.model == "m" and score_args.accelerate_config is None and config.num_rollouts == 3


def test_a_failed_launch_exits_with_its_status(tmp_path, monkeypatch, capsys):
    configs = []

    def launch_command(args):
        configs.append(Path(args.training_script_args[-1]))
        raise subprocess.CalledProcessError(3, ["python", "-m", "rap_hf"])

    monkeypatch.setattr("accelerate.commands.launch.launch_command", launch_command)
    argv = ["score", "--model", "m", "--dataset", "d", "--output", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--accelerate_config", "single_gpu"])
    assert exited.value.code == 3
    assert "exit status 3" in capsys.readouterr().err
    assert len(configs) == 1 and not configs[0].exists()  # the temporary --config is removed all the same


def test_an_unknown_accelerate_config_is_a_user_error(tmp_path, fake_accelerate, capsys):
    argv = ["score", "--model", "m", "--dataset", "d", "--output", str(tmp_path / "o")]
    assert main([*argv, "--accelerate_config", "zero9"]) == 2
    assert "shipped" in capsys.readouterr().err and not fake_accelerate
