"""``python -m envstore``: the same CLI as the ``envstore`` console script."""

from envstore.cli.main import main

if __name__ == "__main__":
    main()
