"""``python -m cnnkit``: the ``cnnkit`` command, also as ``torchrun --nproc-per-node N -m cnnkit train ...``."""

from cnnkit.cli.main import main

if __name__ == "__main__":
    main()
