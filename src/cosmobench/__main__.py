"""`python -m cosmobench` runs the CLI."""

from cosmobench.cli import main

main()
