"""``python -m rctr.shim STATE_DIR --ready-fd N``, or ``--zygote SOCKET --ready-fd N``."""

import sys

if sys.argv[1:2] == ["--zygote"]:
    from ._zygote import serve

    if len(sys.argv) != 5 or sys.argv[3] != "--ready-fd" or not sys.argv[4].isdigit():
        sys.stderr.write("usage: python -m rctr.shim --zygote SOCKET --ready-fd N\n")
        sys.exit(2)
    sys.exit(serve(sys.argv[2], int(sys.argv[4])))

from ._lifecycle import main

sys.exit(main())
