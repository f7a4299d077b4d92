import sys

from lossnet.cli.main import main

sys.exit(main())
