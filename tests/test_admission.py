"""falcon.admission: a bound on requests working at once, which waiting requests step out of."""

from __future__ import annotations

import threading

import pytest

from falcon.admission import Admission


def test_stepping_out_frees_the_slot_and_takes_one_back():
    admission = Admission(1)
    with admission.admitted():
        assert not admission._slots.acquire(blocking=False)  # the one slot is taken
        with admission.stepped_out(), admission.admitted():  # another caller gets in meanwhile
            pass
        assert not admission._slots.acquire(blocking=False)  # taken again on the way back
    assert admission._slots.acquire(blocking=False)


def test_stepping_out_without_being_admitted_is_a_mistake_not_a_second_slot():
    admission = Admission(2)
    with pytest.raises(ValueError), admission.stepped_out():
        pass
    with pytest.raises(ValueError):
        Admission(0)


def test_a_slot_comes_back_when_the_work_fails():
    admission = Admission(1)
    with pytest.raises(RuntimeError), admission.admitted():
        raise RuntimeError("boom")
    done = threading.Event()
    with admission.admitted():
        done.set()
    assert done.is_set()
