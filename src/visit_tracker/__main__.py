"""`python -m visit_tracker`: the same as the `visit-tracker` command."""

from visit_tracker.cli import main

main()
