"""numeric.quiet() across threads: a thread leaving it does not take the filter away from a
thread still in it (catch_warnings alone restored the filters the first thread saved)."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

from csautomation.facts.numeric import quiet


def test_a_thread_leaving_quiet_leaves_another_thread_quiet() -> None:
    entered, left = threading.Event(), threading.Event()
    caught: list[BaseException] = []

    def second() -> None:
        with quiet():
            entered.set()
            left.wait(5)
            try:
                np.nanmax(np.array([np.nan]))  # all-NaN: a RuntimeWarning, an error here
            except BaseException as exc:  # noqa: BLE001 - the assertion below names it
                caught.append(exc)

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        t = threading.Thread(target=second)
        with quiet():
            t.start()
            assert entered.wait(5)
        left.set()  # the first thread has left; the second is still in
        t.join(5)
        assert caught == []
        with pytest.raises(RuntimeWarning):  # and once both have left, warnings are back
            np.nanmax(np.array([np.nan]))
