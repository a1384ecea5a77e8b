import sys

from photozsom.cli import main

sys.exit(main())
