"""The DVC stages: one module per `dvc.yaml` stage, each a thin command over the library.

A stage reads its required paths from its command line (dvc.yaml states them), its section of
params.yaml, makes one library call and writes exactly the outs dvc.yaml declares. Stages never
import each other, and library code never imports a stage (tests/test_layout.py).
"""
