"""The benchmark: the paper's timings on any torch device, with sound statistics.

``run_bench(cfg) -> Results`` times the workloads (train-cnn, train-bnn, infer-cnn, generate,
simulate) over modes and sizes; ``compare(paths, out)`` draws the paper's figures with its
V100 and IPU numbers overlaid and writes ``report.md``. Modules: ``config`` (BenchConfig),
``timing`` (clocks, warm-up, statistics), ``modes`` (eager, compile, CUDA graph, bf16,
channels-last; the step wrapper ``cosmobench train --mode`` shares), ``hardware`` (what the
CPU and GPU can do natively, theoretical peaks), ``workloads`` / ``generation`` (what one
call is), ``peak`` (the roofline measured in the same run), ``meters`` (memory, energy),
``env`` (machine, versions, commit), ``maxbatch``, ``results`` (versioned schema),
``series`` / ``figures`` / ``report`` (compare), ``runner`` (the sweep); ``scaling`` /
``scaling_report`` (the scaling measurements of ``benchmarks/scaling.py`` and their projection).
"""

from cosmobench.bench.config import BenchConfig
from cosmobench.bench.report import compare
from cosmobench.bench.results import Record, Results, load_results
from cosmobench.bench.runner import run_bench

__all__ = ["BenchConfig", "Record", "Results", "compare", "load_results", "run_bench"]
