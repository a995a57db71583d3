"""Benchmarks of prunescope's expensive stages, each against a reference measured in the
same run. Run them all with ``python -m bench`` (see ``python -m bench --help``)."""
