#!/usr/bin/env python3
"""docs/api.yaml must name exactly the (method, path) pairs of gateway/routes.c's table."""
import re
import sys

root = sys.argv[1]
src = open(f"{root}/gateway/routes.c").read()
table = src[src.index("g_ant_routes[] = {"):src.index("};", src.index("g_ant_routes[] = {"))]
served = set()
for method, pattern in re.findall(r'\{"([A-Z]+)",\s*"([^"]+)"', table):
    served.add((method.lower(), re.sub(r"\{\*?\}", "{}", pattern)))

spec = set()
path = None
for line in open(f"{root}/docs/api.yaml"):
    m = re.match(r"^  (/\S*):\s*$", line)
    if m:
        path = re.sub(r"\{[^}]+\}", "{}", m.group(1))
        continue
    m = re.match(r"^    (get|put|post|delete|head|patch):\s*$", line)
    if m and path:
        spec.add((m.group(1), path))

missing = served - spec
extra = spec - served
for m, p in sorted(missing):
    print(f"served but not in docs/api.yaml: {m.upper()} {p}")
for m, p in sorted(extra):
    print(f"in docs/api.yaml but not served: {m.upper()} {p}")
print(f"{len(served)} routes served, {len(spec)} in the spec")
sys.exit(1 if missing or extra or not served else 0)
