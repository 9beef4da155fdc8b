"""`trainer doctor`: the checks (checks.py) and the import probes they run as child processes (probe_*.py).

Nothing is imported here: a probe runs as `python -m trainer.doctor.probe_<name>`, which imports this package first."""
