"""The module entry points: bad input exits 2 with one readable line."""

import os
import subprocess
import sys

import pytest

from tune_configs.cli import main

ENV = {**os.environ, "WANDB_MODE": "disabled", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "tune_configs", "nope"], "unknown preset 'nope' (known: testapp-ppo,"),
        (["-m", "tune_configs.testapp_ppo", "--set", "lr"], "--set 'lr': expected key=value"),
        (["-m", "tune_configs.testapp_ppo", "--wandb", "loud"], "invalid choice: 'loud'"),
    ],
)
def test_entry_point_rejects_bad_input(args, message):
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == "" and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_wrong_typed_hyperparameter_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--set", "lr=fast", "--stop-iters", "1"], preset="testapp-ppo")
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "hparams.lr: expected float" in err[0]
