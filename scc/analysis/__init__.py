"""What a policy does for every input, proved with z3 (`scc analyze`, `scc diff`, claims in `scc test`).

  encode.py     a checked policy as z3 terms: IEEE-754 doubles in z3's FP theory, exactly as the module
                computes them (docs/analysis.md, "Encoding"), driven by scc/operators.py's `smt` column
  solve.py      one query at a time with a time limit: proven, found (with a model) or unknown
  replay.py     every witness through the compiled module (and any other oracle) before it is shown
  checks.py     `scc analyze`: rules that never decide, the default's region, reachable faults, overlaps
  diff.py       `scc diff`: where two policies decide differently, per pair of verdicts
  claims.py     claims in NAME.test.json: proven, refuted with a counterexample, or unknown
  report.py     plain text, JSON and SARIF
  options.py    --timeout and --budget, shared by `scc analyze` and `scc diff`

The modules that solve import z3 at their top: only the commands that analyse import them, when they
run (scc/cli.py starts without it). options.py, which those commands import to build their parser,
imports nothing heavy.
"""
