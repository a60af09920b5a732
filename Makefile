# The verbs everyone and CI use: run, test, lint, generate, bench.
SERVICES_WITH_API := identity catalog inventory cart orders payments notifications
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

.PHONY: run test lint generate bench build tools check-generated

run:
	go run ./cmd/mercato up

build:
	go build -o $(BIN)/mercato ./cmd/mercato

test:
	go test -race -count=1 -timeout 30m ./...

$(BIN)/buf: tools/go.mod tools/go.sum
	cd tools && go build -o $(BIN)/ \
		github.com/bufbuild/buf/cmd/buf \
		google.golang.org/protobuf/cmd/protoc-gen-go \
		google.golang.org/grpc/cmd/protoc-gen-go-grpc \
		github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway \
		github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2 \
		github.com/golangci/golangci-lint/v2/cmd/golangci-lint
	@touch $@

tools: $(BIN)/buf

# Each service's HTTP rules live in its own google.api.Service YAML, and the
# gateway plugins take one such file per run, hence one run per service.
generate: tools
	buf lint
	find internal/gen \( -name "*.pb.go" -o -name "*.pb.gw.go" -o -name "*.swagger.json" \) -delete 2>/dev/null || true
	@for svc in $(SERVICES_WITH_API); do \
		cfg=api/proto/$$svc/v1/$$svc.http.yaml; \
		buf generate --path api/proto/$$svc/v1 --template "{\"version\":\"v2\",\"plugins\":[\
{\"local\":\"protoc-gen-go\",\"out\":\"internal/gen\",\"opt\":[\"paths=source_relative\"]},\
{\"local\":\"protoc-gen-go-grpc\",\"out\":\"internal/gen\",\"opt\":[\"paths=source_relative\"]},\
{\"local\":\"protoc-gen-grpc-gateway\",\"out\":\"internal/gen\",\"opt\":[\"paths=source_relative\",\"grpc_api_configuration=$$cfg\"]},\
{\"local\":\"protoc-gen-openapiv2\",\"out\":\"internal/gen\",\"opt\":[\"grpc_api_configuration=$$cfg\",\"json_names_for_fields=false\",\"disable_default_errors=true\"]}]}" || exit 1; \
	done

# CI: regenerating must not change what is committed.
check-generated: generate
	git diff --exit-code -- internal/gen
	@test -z "$$(git status --porcelain -- internal/gen)" || (git status --porcelain -- internal/gen; exit 1)

lint: tools
	buf lint
	golangci-lint run ./...

# Starts the real system and prints figures (see docs/benchmarks.md).
# BENCH_FLAGS picks parts or tunes them, e.g. BENCH_FLAGS="-checkout -engines postgres".
BENCH_FLAGS ?=
bench: build
	go run ./test/bench -binary $(BIN)/mercato $(BENCH_FLAGS)
