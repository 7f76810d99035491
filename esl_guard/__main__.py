import sys

from esl_guard.cli import main

sys.exit(main())
