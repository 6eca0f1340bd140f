import sys

from rekko.cli import main

sys.exit(main())
