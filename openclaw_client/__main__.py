"""`python -m openclaw_client`: the `openclaw` command."""

from openclaw_client.cli import main

if __name__ == "__main__":
    main()
