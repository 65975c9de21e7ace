"""Imported only by the verifier's forkserver (`evals.verifier._mp_context`): warms math-verify's LaTeX
parser there once, so that every grader worker, replacements for killed ones included, forks from a warm one."""

from evals.latex import warm_latex_parser

warm_latex_parser()
