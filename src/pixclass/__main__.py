"""`python -m pixclass`: the same as the `pixclass` command."""

from pixclass.cli.main import app

app()
