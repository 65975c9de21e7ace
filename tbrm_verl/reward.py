"""verl's custom reward function: this suite's verifier, the same grader that scores `tbrm eval`.

verl calls ``compute_score(data_source=, solution_str=, ground_truth=, extra_info=, **reward_kwargs)`` once per
response from its reward loop (``reward.custom_reward_function.path=pkg://tbrm_verl.reward``), in executor
threads. All calls in a process share one ``evals.grading.verifier.Verifier``: a pool of grader processes with a per-answer
time limit (math-verify's own timeout uses signal.alarm, which does not work off the main thread).
"""

from __future__ import annotations

import atexit
import threading

_LOCK = threading.Lock()
_VERIFIERS: dict[tuple[float, bool], object] = {}


def _verifier(timeout_s: float, lenient: bool):
    from evals.grading.verifier import Verifier

    key = (float(timeout_s), bool(lenient))
    with _LOCK:
        if key not in _VERIFIERS:
            v = Verifier(timeout_s=timeout_s, lenient=lenient)
            atexit.register(v.close)
            _VERIFIERS[key] = v
        return _VERIFIERS[key]


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, *,
                  reward_correct: float = 1.0, reward_wrong: float = 0.0, lenient: bool = False,
                  timeout_s: float = 5.0, **unused) -> dict:
    """Reward of one response: `reward_correct` if the verifier judges it equal to `ground_truth`, else
    `reward_wrong` (also for unparsed and timed-out answers, as in this suite's own trainer).

    Returns verl's dict form: ``score`` is the reward; ``acc`` (1.0/0.0), ``unparsed`` and ``timeout`` are logged
    by verl as reward extra info.
    """
    from evals.grading.verifier import Outcome

    verdict = _verifier(timeout_s, lenient).verify_batch([(solution_str, str(ground_truth))])[0]
    return {
        "score": float(reward_correct if verdict.correct else reward_wrong),
        "acc": float(verdict.correct),
        "unparsed": float(verdict.outcome == Outcome.UNPARSED),
        "timeout": float(verdict.outcome == Outcome.TIMEOUT),
    }
