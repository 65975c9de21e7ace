"""Grading: the verifier shared by evaluation and training rewards (`verifier`), our text rules where
Math-Verify errs (`extraction`), LaTeX helpers (`latex`), grading files made elsewhere (`grade`), the audit
against plain Math-Verify (`audit`) and the grader processes' warm-up (`_warm_grader`)."""
