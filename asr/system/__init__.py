"""The machine and the process: CPU features, GPU memory, thread counts, system info, console
logging and progress."""
