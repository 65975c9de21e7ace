"""Small LaTeX helpers shared by gold-answer loading and answer extraction, and the LaTeX parser warm-up."""

from __future__ import annotations

import re

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in `text`, matching nested braces.

    Returns None when there is no complete box. ``\\boxed 5`` (no braces) is also accepted, up to the next
    ``$`` or whitespace, as MATH solutions occasionally write it.
    """
    starts = [m.end() for m in _BOX_RE.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
    m = None
    for m in re.finditer(r"\\boxed ([^\s$]+)", text):
        pass
    if m is not None:
        return m.group(1).strip()
    return None


# Typical final answers, one per line, covering the LaTeX constructs graders meet. Parsing them once warms the
# LaTeX parser math-verify uses (latex2sympy2's ANTLR grammar caches its prediction DFA as it parses): the
# first few hundred parses of a fresh process cost 3-4x the later ones. The verifier's forkserver parses them
# (~1 s) before forking grader workers, so every worker starts warm.
WARMUP_ANSWERS = r"""
42
-7
3.75
0.5
\frac{1}{2}
-\frac{3}{4}
\dfrac{5}{12}
\frac{\sqrt{3}}{2}
2\sqrt{5}
3 + 2\sqrt{2}
\sqrt[3]{2}
\frac{1+\sqrt{5}}{2}
\pi
2\pi
\frac{\pi}{3}
\frac{3\pi}{4}
x^2 + 2x + 1
(x-1)(x+2)
2x^3 - 3x + 5
\frac{x+1}{x-1}
y = 2x + 3
x = 5
a = 3, b = 4
(3, 4)
(-1, \frac{1}{2})
\left( 3, \frac{\pi}{2} \right)
[0, 1)
(-\infty, 2] \cup [5, \infty)
(-\infty, -3) \cup (3, \infty)
\{1, 2, 3\}
1, 2, 3
-2, 5
x \in [1, 2]
k \geq 3
x < 5
-1 < x < 3
\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}
\begin{pmatrix} 1 \\ -2 \\ 3 \end{pmatrix}
\sin x
\cos^2 \theta
\tan \frac{\pi}{8}
\log_2 5
\ln 2
e^{2}
2^{10}
10^{-3}
3 \times 10^{8}
5!
\binom{10}{3}
\text{(C)}
\textbf{(A)}
\text{Evelyn}
10\%
90^\circ
5 \text{ cm}
\$18.90
1,000
\infty
\emptyset
|x - 3|
\lfloor x \rfloor
\sum_{k=1}^{n} k
\int_0^1 x^2 dx
f(x) = 3x - 1
\frac{a}{b}
i
3 + 4i
\overline{AB}
\angle ABC
\triangle ABC
\frac{d}{dx} x^2
\sqrt{x^2 + y^2}
n(n+1)/2
\frac{n(n+1)}{2}
2^{n} - 1
\mathrm{E}
\operatorname{lcm}(4, 6)
\gcd(12, 18)
"""


_warmed = False


def warm_latex_parser() -> None:
    """Parse `WARMUP_ANSWERS` with the parser math-verify calls, ignoring failures; once per process (a forked
    process inherits the warm parser and the flag)."""
    global _warmed
    if _warmed:
        return
    _warmed = True
    import math_verify.parser

    for line in WARMUP_ANSWERS.strip().splitlines():
        try:
            math_verify.parser.latex2sympy(line, normalization_config=None)
        except Exception:  # a construct this grammar version lacks; warming is best effort
            pass
