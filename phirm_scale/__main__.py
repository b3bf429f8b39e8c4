"""``python -m phirm_scale`` = the ``phirm-scale`` command."""

from phirm_scale.cli import main

if __name__ == "__main__":
    main()
