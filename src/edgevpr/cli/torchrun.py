"""What each process that ``edgevpr train --distributed torchrun`` starts runs: the same
command, its arguments handed over by environment (torchrun's parser would take them)."""

from edgevpr.cli.main import main
from edgevpr.train.distributed import arguments_from_environment

if __name__ == "__main__":
    main(args=arguments_from_environment(), prog_name="edgevpr")
