# The two commands a new user needs (see README): `make run` and `make test`.
.PHONY: run test setup bench

run:
	./scripts/run

test:
	./scripts/test

setup:
	./scripts/setup

bench:
	./scripts/bench
