"""What a user who gets something wrong sees: one clear line, the right exit code, no
traceback, nothing left behind, and no long wait. Each console script as users run it."""

from __future__ import annotations

import socket

import pytest

from scripts.harness.processes import run_cli

pytestmark = pytest.mark.integration

TRACEBACK = "Traceback (most recent call last)"


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers: a hung MLflow."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize(
    "command",
    [
        ["petr4-ingest", "--tickers", "PETR4.SA", "--source", "synthetic"],
        ["petr4-train", "--ticker", "PETR4.SA"],
    ],
)
def test_a_dead_mlflow_is_one_line_at_once(command):
    done = run_cli(command, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, timeout=60)
    assert done.returncode == 1
    assert lines(done.stderr) == [
        f"{command[0]}: MLflow at http://127.0.0.1:9 is unreachable (Connection refused): "
        "is the server running, and is MLFLOW_TRACKING_URI right?"
    ]


@pytest.mark.parametrize("script", ["petr4-ingest", "petr4-train"])
def test_a_hung_mlflow_fails_within_the_timeout_setting(script, silent_server):
    done = run_cli(
        [script, "--mlflow-timeout-seconds", "2"],
        {"MLFLOW_TRACKING_URI": silent_server},
        timeout=60,
    )
    assert done.returncode == 1
    assert lines(done.stderr) == [
        f"{script}: MLflow at {silent_server} is unreachable (no answer within 2 s): "
        "is the server running, and is MLFLOW_TRACKING_URI right?"
    ]


@pytest.mark.parametrize(
    "command",
    [["petr4-ingest", "--dry-run"], ["petr4-train"], ["petr4-serve"]],
)
def test_no_tracking_uri_stops_and_says_so(command, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    done = run_cli(command, {}, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert lines(done.stderr) == [
        f"{command[0]}: MLFLOW_TRACKING_URI is not set: export "
        "MLFLOW_TRACKING_URI=http://HOST:5000 (the MLflow server), or pass --tracking-uri"
    ]
    assert list(tmp_path.iterdir()) == []  # no mlflow.db, no mlruns/


@pytest.mark.parametrize("script", ["petr4-ingest", "petr4-train", "petr4-serve"])
def test_every_help_names_the_tracking_uri(script):
    done = run_cli([script, "--help"], {}, timeout=60)
    assert done.returncode == 0
    assert "--tracking-uri" in done.stdout and "MLFLOW_TRACKING_URI" in done.stdout


@pytest.mark.parametrize("script", ["petr4-ingest", "petr4-train", "petr4-serve"])
def test_a_password_is_never_a_flag(script):
    """Flags are in the process list for any user of the host: the password comes from
    MLFLOW_TRACKING_PASSWORD or MLflow's credentials file only."""
    done = run_cli([script, "--help"], {}, timeout=60)
    assert done.returncode == 0 and "--tracking-password" not in done.stdout
    refused = run_cli([script, "--tracking-password", "hunter2"], {}, timeout=60)
    assert (
        refused.returncode == 2 and "unrecognized arguments: --tracking-password" in refused.stderr
    )
    assert "hunter2" not in refused.stderr.replace("--tracking-password hunter2", "")


def test_the_clients_help_keeps_its_examples_on_their_lines():
    done = run_cli(["petr4-forecast", "--help"], {}, timeout=60)
    assert "\npetr4-forecast info " in done.stdout and "\npetr4-forecast health " in done.stdout


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            ["petr4-forecast", "--timeout", "abc"],
            "petr4-forecast: error: argument --timeout: input should be a valid number, "
            "unable to parse string as a number (got 'abc')",
        ),
        (
            ["petr4-train", "--max-epochs", "-3"],
            "petr4-train: error: argument --max-epochs: input should be greater than or "
            "equal to 1 (got '-3')",
        ),
        (
            ["petr4-ingest", "--tickers", "petr4.sa"],
            "petr4-ingest: error: argument --tickers: ticker 'petr4.sa' is not spelled as "
            "Yahoo spells it: capital letters, digits, '.', '-' or '^', such as PETR4.SA",
        ),
        (
            ["petr4-train", "--tickers", "PETR4.SA", "vale3.sa"],
            "petr4-train: error: argument --tickers: ticker 'vale3.sa' is not spelled as "
            "Yahoo spells it: capital letters, digits, '.', '-' or '^', such as PETR4.SA",
        ),
        (
            ["petr4-train", "--tickers", "PETR4.SA", "VALE3.SA", "PETR4.SA"],
            "petr4-train: error: --tickers names PETR4.SA more than once",
        ),
        (
            ["petr4-train", "--ticker", "PETR4.SA", "--tickers", "VALE3.SA", "ITUB4.SA"],
            "petr4-train: error: give --ticker (one model for one ticker) or --tickers (one "
            "pooled model for the list), not both",
        ),
        (
            ["petr4-serve", "--tickers", "PETR4 SA;"],
            "petr4-serve: error: argument --tickers: ticker 'PETR4 SA;' is not spelled as "
            "Yahoo spells it: capital letters, digits, '.', '-' or '^', such as PETR4.SA",
        ),
    ],
)
def test_a_bad_flag_value_is_argparses_one_line(command, message):
    done = run_cli(command, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, timeout=60)
    assert done.returncode == 2
    assert lines(done.stderr)[-1] == message
    assert "pydantic" not in done.stderr and TRACEBACK not in done.stderr


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "partial.csv").write_text("Date,Open,High\n2024-01-02,1,2\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "garbage.csv").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "dates.csv").write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\nsoon,1,2,1,1,1,1\n"
    )
    (tmp_path / "folder.csv").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        (
            "partial.csv",
            "missing columns Low, Close, Volume; a Yahoo-format CSV has the columns "
            "Date, Open, High, Low, Close, Adj Close, Volume",
        ),
        ("empty.csv", "the file is empty"),
        ("garbage.csv", "not a text file"),
        ("dates.csv", "dates that are no dates: 'soon'"),
        ("folder.csv", "not a file"),
        ("missing.csv", "no such file"),
    ],
)
def test_a_bad_history_file_is_named_with_its_problem(bad_files, name, problem):
    done = run_cli(
        ["petr4-forecast", "--history-csv", str(bad_files / name), "--target", "127.0.0.1:9"],
        {},
        timeout=60,
    )
    assert done.returncode == 2
    assert lines(done.stderr) == [f"petr4-forecast: price file {bad_files / name}: {problem}"]


def test_training_on_a_bad_file_is_one_line(bad_files, mlflow_env):
    done = run_cli(["petr4-train", "--data", str(bad_files / "garbage.csv")], mlflow_env)
    assert done.returncode == 2
    assert lines(done.stderr) == [
        f"petr4-train: price file {bad_files / 'garbage.csv'}: not a text file"
    ]


def test_training_flags_are_checked_before_torch_or_mlflow_load():
    """A wrong flag is said at once: nothing heavy is imported before the flags are valid."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from trainer.main import main\n"
        "try:\n"
        "    main(['--max-epochs', '-3'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('torch', 'lightning', 'mlflow') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr


def test_a_pooled_training_names_every_ticker_without_a_snapshot(mlflow_env, experiment_name):
    done = run_cli(
        [
            *("petr4-train", "--tickers", "NOSNAP3.SA", "NOSNAP4.SA"),
            *("--prices-experiment", experiment_name),
        ],
        mlflow_env,
    )
    assert done.returncode == 2
    assert lines(done.stderr) == [
        f"petr4-train: no snapshot of NOSNAP3.SA, NOSNAP4.SA in MLflow experiment "
        f"'{experiment_name}': run petr4-ingest --tickers NOSNAP3.SA NOSNAP4.SA first"
    ]
