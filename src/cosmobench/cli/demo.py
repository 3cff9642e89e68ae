"""CLI command ``demo``: the whole pipeline on built-in defaults, with a report folder.

Its options are the fields of :class:`cosmobench.demo.DemoConfig` (help and defaults from
there, :mod:`cosmobench.cli.options`).
"""

from __future__ import annotations

from typing import Any

from cosmobench.cli.app import app, console
from cosmobench.cli.options import command_with, config_options, given, option
from cosmobench.demo import DemoConfig


def _demo(values: dict[str, Any]) -> None:
    from cosmobench.demo import run_demo

    fields = given(values, DemoConfig)
    if values["device"]:
        fields["devices"] = tuple(values["device"])
    report = run_demo(DemoConfig.from_dict(fields), console)
    console.rule("done")
    console.print(f"Report: [bold]{report}[/] (figures beside it)")


_PARAMS = [
    *config_options(
        DemoConfig, skip=["batch_size", "devices"], flags={"bench_budget_s": "--bench-budget"}
    ),
    option("device", list[str], "Device to benchmark (repeatable); default: every device present."),
]
app.command("demo")(
    command_with(
        _PARAMS,
        _demo,
        "demo",
        """Simulate, train (CNN, BNN, VAE, flow), evaluate, generate, benchmark, and report.

    About 2.5 minutes on 2 idle CPU cores with the defaults (2 min 23 s measured).
    Rerunning the same command resumes a killed demo: finished stages are skipped.
    """,
    )
)
