"""`python -m csautomation`: the `csauto` command."""

from csautomation.cli import main

if __name__ == "__main__":
    main()
