import sys

from rctr.daemon import main

sys.exit(main())
