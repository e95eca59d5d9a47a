# The two fresh-machine commands are `make demo` and `make test`; both install what they need first.
.PHONY: setup demo test lint bench

setup:
	@bash scripts/setup.sh

demo: setup
	uv run keyguard demo

# The whole gate CI runs: lint (Python and Rego) and every test.
test: lint
	uv run pytest

lint: setup
	uv run ruff check service tests infra bench policies/pulumi scripts
	uv run mypy
	uv run python scripts/gen_rule_catalogue.py --check
	uv run keyguard policy test
	cd lane && test -z "$$(gofmt -l .)" && go vet ./... && go test ./...

bench: setup
	uv run python -m bench
