# Everyday recipes. `make test` is the README's test command and what CI runs.
.PHONY: all generate lint lint-config test run render check-config bench e2e check-deps

all: lint test

# The sample realm's NGINX configuration, from the same mapping as the Ingress annotations.
NGINX_CONFIG = cargo run --quiet --locked -p portcullis-operator -- nginx-config \
	-f config/samples/realm-full.yaml -f config/samples/ratelimitpolicy.yaml --out config/nginx/portcullis.conf

## generate: write the CRD YAML (crds/yaml and the CRD chart) from the Rust types, and the
## sample realm's NGINX configuration (config/nginx/portcullis.conf) from its policies
generate:
	cargo run --quiet --locked -p portcullis-operator -- crdgen
	$(NGINX_CONFIG)

## lint: formatting, clippy with warnings denied, stale generated files (CRDs, NGINX), one TLS stack,
## alert rules, Dockerfile and dashboard
lint: check-deps lint-config
	@# A toolchain without rustfmt or clippy skips that step loudly instead of failing CI.
	@if cargo fmt --version >/dev/null 2>&1; then cargo fmt --all -- --check; \
	else echo "SKIPPED cargo fmt --check: rustfmt is not installed (rustup component add rustfmt)" >&2; fi
	@if cargo clippy --version >/dev/null 2>&1; then cargo clippy --workspace --all-targets --locked -- -D warnings; \
	else echo "SKIPPED cargo clippy: clippy is not installed (rustup component add clippy)" >&2; fi
	cargo run --quiet --locked -p portcullis-operator -- crdgen --check
	$(NGINX_CONFIG) --check

## lint-config: promtool on the alert rules, hadolint on the Dockerfile, dashboard JSON
lint-config:
	scripts/lint-config.sh

## check-deps: no OpenSSL, native-tls or aws-lc anywhere in the dependency tree
check-deps:
	scripts/check-deps.sh

## test: the whole test suite (builds the binaries the black-box tests run)
test:
	scripts/test.sh

## run: the auth server on http://localhost:8080 with throwaway PostgreSQL and Redis
run:
	scripts/dev.sh

## render: what the operator would create for the full sample realm and its policies
render:
	cargo run --quiet --locked -p portcullis-operator -- render \
		-f config/samples/realm-full.yaml -f config/samples/ratelimitpolicy.yaml -f config/samples/retentionpolicy.yaml

## check-config: print the effective settings of the full sample realm and its policies
check-config:
	cargo run --quiet --locked -p portcullis-authserver -- check-config \
		--config config/samples/realm-full.yaml,config/samples/ratelimitpolicy.yaml,config/samples/retentionpolicy.yaml

## bench: login, health-under-load and refresh benchmarks, then OIDC client-credentials grants
## and introspections under wrk against Node's oidc-provider (release build; prints figures)
bench:
	scripts/bench.sh

## e2e: the cluster suites alone, against the cluster KUBECONFIG points at (kind, ...);
## make test runs them against the test control plane it starts
e2e:
	cargo build --locked --workspace --bins
	cargo test --locked -p portcullis-e2e --test cluster -- --nocapture
