import sys

from jaxretina.cli import main

sys.exit(main())
