"""`python -m grading SUBMISSION... [options]`: see grading.grade."""

import sys

from grading.grade import main

sys.exit(main())
