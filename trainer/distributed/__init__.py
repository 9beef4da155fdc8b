"""Data-parallel training on several GPUs and machines: the launcher (launch.py) and each process's part (ranks.py)."""
