"""Run state on disk and in git: the repository wrapper, the journal, checkpoints, the run lock.

The only package that uses git."""
