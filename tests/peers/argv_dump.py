"""An exec notifier target: appends its argv (after the output path) and
its environment as one JSON line to the file named by its first argument."""

import json
import os
import sys

with open(sys.argv[1], "a", encoding="utf-8") as f:
    f.write(json.dumps({"argv": sys.argv[2:], "env": dict(os.environ)}) + "\n")
