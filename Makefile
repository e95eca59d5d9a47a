# The two fresh-machine commands are `make demo` and `make test`; both install what they need first.
.PHONY: setup demo test lint policy-test bench

setup:
	@bash scripts/setup.sh

demo: setup
	uv run keyguard demo

test: setup
	uv run keyguard policy test
	uv run pytest

lint: setup
	uv run ruff check service tests infra bench policies/pulumi scripts
	uv run python scripts/gen_rule_catalogue.py --check
	.tools/bin/opa fmt --list --fail policies
	.tools/bin/opa check --strict --ignore schemas --ignore pulumi policies

bench: setup
	uv run python -m bench
