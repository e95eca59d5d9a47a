"""Build docs/rules.md, the rule catalogue, from the METADATA of every Rego deny rule.

Run `uv run python scripts/gen_rule_catalogue.py` to rewrite docs/rules.md, or add `--check` to fail
(exit 1) when the committed catalogue no longer matches the policies. `load_rules` is importable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keyguard.errors import PolicyError
from keyguard.policy.bundle import resolve_bundle
from keyguard.policy.catalogue import load_rules, render_markdown, severities

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=Path, default=REPO_ROOT / "policies", help="policy directory")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "rules.md", help="catalogue file")
    parser.add_argument("--check", action="store_true", help="exit 1 if the catalogue file is out of date")
    args = parser.parse_args(argv)
    try:
        bundle = resolve_bundle(args.policies)
        text = render_markdown(load_rules(bundle), severities(bundle))
    except PolicyError as exc:
        print(f"gen_rule_catalogue: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run `uv run python scripts/gen_rule_catalogue.py`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
