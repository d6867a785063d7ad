"""`python -m ttft_exporter`."""

from ttft_exporter.cli import main

main()
