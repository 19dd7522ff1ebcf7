"""StopSignal: real signals sent to this process become a polled stop request."""

import os
import signal

import pytest

from slac_robot.runtime.stop import Interrupted, StopSignal


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_is_recorded_and_raised_only_at_check(signum):
    with StopSignal() as stop:
        stop.check()  # nothing pending
        os.kill(os.getpid(), signum)
        assert stop.received == signum  # handled, nothing raised here
        with pytest.raises(Interrupted) as raised:
            stop.check()
    assert raised.value.exit_code == 128 + signum
    assert raised.value.signal_name == signal.Signals(signum).name


def test_a_second_signal_while_one_is_pending_raises_at_once():
    with StopSignal():
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_previous_handlers_come_back():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopSignal():
        assert signal.getsignal(signal.SIGINT) != before[signal.SIGINT]
    assert {s: signal.getsignal(s) for s in before} == before
