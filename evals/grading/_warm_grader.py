"""Imported only by the verifier's forkserver (`evals.grading.verifier._mp_context`): speeds up and warms
math-verify's LaTeX parser there once, so that every grader worker, replacements for killed ones included,
forks from a warm one. It imports the verifier, never the reverse: a worker started without the forkserver
(spawn) warms itself in `evals.grading.verifier._init_worker`."""

from evals.grading.latex import warm_latex_parser
from evals.grading.verifier import _speed_up_math_verify

_speed_up_math_verify()
warm_latex_parser()
