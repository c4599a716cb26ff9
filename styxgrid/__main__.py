"""`python -m styxgrid ...` is the `styxgrid` command."""

import sys

from .launch import main

sys.exit(main())
