"""The fixed evaluator: reads the candidate's constants as data (it never imports the
candidate's code into its own process) and prints the summary block the engine reads."""

import ast
from pathlib import Path

from autoresearch.harness import print_summary


def constants(path: Path) -> dict[str, float]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, (int, float)):
                    out[target.id] = float(node.value.value)
    return out


if __name__ == "__main__":
    c = constants(Path("solution.py"))
    x, y = c.get("X", 0.0), c.get("Y", 0.0)
    print_summary({"loss": (x - 1.5) ** 2 + (y + 0.5) ** 2, "x": x, "y": y})
