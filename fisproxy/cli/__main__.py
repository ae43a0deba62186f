"""`python -m fisproxy.cli`: the `fisproxy` command without its console script."""

from fisproxy.cli.main import main

main()
