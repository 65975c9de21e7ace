"""Auto threads of the in-process vLLM engine on CPU follow other processes while a batch runs: a thread count
chosen in a busy moment (a grader warming up beside the engine) no longer holds for the whole batch. Real busy
processes and the engine's own thread logic; no vLLM engine is started (`_adjust_threads` runs between steps)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import torch

from evals.engines.vllm_engine import OthersBusyMeter, VLLMGenerator, VLLMSettings, auto_threads


def _hogs():
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in os.sched_getaffinity(0)]


def _stop(hogs):
    for h in hogs:
        h.kill()
        h.wait()


def test_the_meter_reads_other_processes_without_waiting():
    meter = OthersBusyMeter(min_window_s=0.3)
    t0 = time.perf_counter()
    assert meter.read() is None and time.perf_counter() - t0 < 0.05  # too short a window: no reading, no sleep
    hogs = _hogs()
    try:
        time.sleep(0.5)
        busy = meter.read()
    finally:
        _stop(hogs)
    assert busy is not None and busy > 0.5  # the busy processes are counted (this process's own time is not)
    assert meter.read() is None  # the window starts again at each reading


def test_a_thread_count_chosen_in_a_quiet_moment_gives_way_when_others_get_busy():
    engine = VLLMGenerator.__new__(VLLMGenerator)  # the thread logic only: no model, no vLLM engine
    engine.device, engine.settings, engine._max_threads = torch.device("cpu"), VLLMSettings(), 2
    caller = torch.get_num_threads()
    try:
        engine._set_threads(others_busy=0.0)  # the batch started while nothing else ran: every core
        assert engine.last_threads == min(2, len(os.sched_getaffinity(0)))
        engine._meter = OthersBusyMeter(min_window_s=0.3)
        hogs = _hogs()
        try:
            time.sleep(0.5)
            engine._adjust_threads()  # between two engine steps
        finally:
            _stop(hogs)
        assert engine.last_threads == 1 == torch.get_num_threads() == auto_threads(2, 1.0)
        fixed = VLLMGenerator.__new__(VLLMGenerator)
        fixed.device, fixed.settings, fixed._max_threads = torch.device("cpu"), VLLMSettings(threads=2), 2
        fixed._meter = None
        fixed._set_threads()
        assert fixed._meter is None  # a fixed count is never looked at again
        fixed._adjust_threads()
        assert fixed.last_threads == min(2, len(os.sched_getaffinity(0)))
    finally:
        torch.set_num_threads(caller)
