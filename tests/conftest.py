import os
import sys
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
# Tests are not benchmarks: one BLAS thread per process keeps the suite's timing steady when
# tests start worker processes of their own (rollouts) and results the same from run to run.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run_all.py at the top level
