"""One file per post: `python -m minimal.demos.NAME [--quick] [--seed N]`."""
