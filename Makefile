# Reproduces every generated file. Needs protoc (Debian: protobuf-compiler)
# and protoc-gen-go (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12).
PROTOS := examples/echo/echo.proto

.PHONY: generate test demo
generate:
	protoc -I . --go_out=. --go_opt=module=github.com/axonrpc/axon $(PROTOS)

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh
