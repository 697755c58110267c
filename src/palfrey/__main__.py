"""``python -m palfrey``: the same command as the ``palfrey`` console script."""

from palfrey.cli import main

if __name__ == "__main__":
    main()
