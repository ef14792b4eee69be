"""The preemption flag in-process: each signal sets it (the run itself is tested with SIGTERM in test_resume.py),
a second Ctrl-C interrupts at once, and the previous handlers come back."""

from __future__ import annotations

import os
import signal

import pytest

from two_grpo.run.guards import PreemptionFlag


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT])
def test_signal_sets_the_flag_and_handlers_are_restored(sig, capsys):
    before = signal.getsignal(sig)
    flag = PreemptionFlag().install()
    try:
        assert not flag.requested
        os.kill(os.getpid(), sig)
        assert flag.requested and flag.signal_name == sig.name
        assert f"received {sig.name}" in capsys.readouterr().err
    finally:
        flag.restore()
    assert signal.getsignal(sig) == before


def test_second_ctrl_c_interrupts_at_once():
    flag = PreemptionFlag().install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        assert flag.signal_name == "SIGTERM"
    finally:
        flag.restore()
