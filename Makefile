# Reproduces every generated file. Needs protoc (Debian: protobuf-compiler)
# and protoc-gen-go (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12);
# protoc-gen-axon is built from this repository. Each .proto is compiled on
# its own: the codec's skew tests hold two versions of one package.
PROTOS := examples/echo/echo.proto $(sort $(wildcard plugins/codec-binary/internal/*/*.proto))
# Where generated files go; scripts/test.sh generates elsewhere and compares.
GEN_OUT ?= .

.PHONY: generate test interop demo swap-demo chaos
generate:
	go build -o bin/protoc-gen-axon ./cmd/protoc-gen-axon
	@for p in $(PROTOS); do \
		echo "protoc $$p"; \
		protoc -I . --plugin=protoc-gen-axon=bin/protoc-gen-axon \
			--go_out=$(GEN_OUT) --go_opt=module=github.com/axonrpc/axon \
			--axon_out=$(GEN_OUT) --axon_opt=module=github.com/axonrpc/axon $$p || exit 1; \
	done
	bash interop/conformance/generate.sh $(GEN_OUT)

test:
	bash scripts/test.sh

interop:
	bash scripts/interop.sh

demo:
	bash scripts/demo.sh

swap-demo:
	bash scripts/swap-demo.sh 2

chaos:
	bash scripts/chaos.sh
