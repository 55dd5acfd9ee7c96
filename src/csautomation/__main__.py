"""`python -m csautomation`: the `csauto` command."""

from csautomation.cli import app

if __name__ == "__main__":
    app(prog_name="csauto")
