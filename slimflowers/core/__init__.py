"""core: what every stage shares -- expected errors, the console (cli), files on any filesystem (fileio),
directory locks, devices and strategies, the run directory's contract (run_dir) and checkpoints.

Imports nothing from the other packages (ARCHITECTURE.md, "Packages")."""
